#!/usr/bin/env bash
# Download the pinned KubeRay release's CRDs (ray.io/v1 RayService, RayCluster,
# RayJob) for the offline strict CRD check (rayllm_cli.checks_crd).
#
#   ci/fetch-kuberay-crds.sh                  # -> <repo>/.tools/kuberay-crds/
#   KUBERAY_VERSION=v1.7.1 DEST=/some/dir ci/fetch-kuberay-crds.sh
#
# Then either leave them in .tools/kuberay-crds/ (found automatically) or
# export RAYLLM_KUBERAY_CRDS=<dir>. Needs network access to GitHub
# (raw.githubusercontent.com); the files are not vendored into the repo.
set -euo pipefail

# v1.7.x: the first releases after RayService gained spec.suspend (kuberay #4841,
# merged mid-2026), which the nightly scale-down patches. The shared test CRDs
# (KubeRay main, Aug 2026) have the field; its presence in the v1.7.1 tag was
# not checked from here (no network).
KUBERAY_VERSION="${KUBERAY_VERSION:-v1.7.1}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${DEST:-${RAYLLM_TOOLS_DIR:-$REPO_ROOT/.tools}/kuberay-crds}"
BASE_URL="${KUBERAY_CRD_BASE_URL:-https://raw.githubusercontent.com/ray-project/kuberay/${KUBERAY_VERSION}/ray-operator/config/crd/bases}"
FILES=(ray.io_rayservices.yaml ray.io_rayclusters.yaml ray.io_rayjobs.yaml)

fetch() {  # url -> file
  if command -v curl >/dev/null 2>&1; then
    curl --fail --silent --show-error --location --retry 3 --connect-timeout 20 -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then
    wget --quiet --tries=3 --timeout=20 -O "$2" "$1"
  else
    echo "error: got: neither curl nor wget; expected: one of them; do: install curl" >&2
    return 1
  fi
}

mkdir -p "$(dirname "$DEST")"
TMP="$(mktemp -d "$(dirname "$DEST")/.kuberay-crds.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

for f in "${FILES[@]}"; do
  if ! fetch "$BASE_URL/$f" "$TMP/$f"; then
    echo "error: got: download of $BASE_URL/$f failed; expected: KubeRay ${KUBERAY_VERSION}'s $f;" \
         "do: check network access to GitHub, or copy the CRDs from a KubeRay checkout" \
         "(ray-operator/config/crd/bases/) and set RAYLLM_KUBERAY_CRDS" >&2
    exit 1
  fi
  # Sanity: a CRD for the ray.io group that serves v1.
  if ! grep -q '^kind: CustomResourceDefinition' "$TMP/$f" \
     || ! grep -q '^  group: ray.io' "$TMP/$f" \
     || ! grep -Eq '^[ -]*name: v1$' "$TMP/$f"; then
    echo "error: got: $f from $BASE_URL is not a ray.io CRD serving v1; expected: a" \
         "CustomResourceDefinition; do: check KUBERAY_VERSION=${KUBERAY_VERSION}" >&2
    exit 1
  fi
done

{
  echo "KubeRay CRDs ${KUBERAY_VERSION}"
  echo "source: ${BASE_URL}"
  echo "fetched: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  (cd "$TMP" && sha256sum "${FILES[@]}")
} > "$TMP/VERSION"

# Replace the previous copy in one rename (readers never see a partial set).
if [ -d "$DEST" ]; then
  mv "$DEST" "$TMP/previous"
fi
mkdir "$TMP/out"
mv "$TMP"/*.yaml "$TMP/VERSION" "$TMP/out/"
mv "$TMP/out" "$DEST"
echo "KubeRay ${KUBERAY_VERSION} CRDs in $DEST"

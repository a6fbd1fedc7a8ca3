#!/bin/sh
# `helm ray-llm ...` -> `ray-llm ...` (the Python CLI). POSIX sh.
#
# Which CLI runs, first match wins:
#   1. $RAYLLM_CLI          a ray-llm executable (tests point it at a venv's ray-llm)
#   2. $RAYLLM_PYTHON       a python that has rayllm_cli installed (`python -m rayllm_cli.main`)
#   3. `ray-llm` on PATH
#   4. a private virtualenv: $RAYLLM_VENV, else $HELM_PLUGIN_DIR/.venv when writable,
#      else ${XDG_CACHE_HOME:-~/.cache}/ray-llm/venv; created on first use with
#      `python3 -m venv` and the project installed into it from the plugin's checkout
#      (the system Python is never modified).
#
# The checkout is found by resolving symlinks from this script (helm plugin install
# ./plugin symlinks the plugin dir on Helm 3) and walking up to the pyproject.toml of
# ray-llm; $RAYLLM_REPO overrides it (needed when Helm copied the plugin dir).
#
# Helm passes HELM_NAMESPACE, HELM_KUBECONTEXT, HELM_DEBUG, HELM_BIN, HELM_PLUGIN_DIR in
# the environment; the CLI reads them (`--debug` prints them; lint uses $HELM_BIN and
# $HELM_NAMESPACE). HELM_DEBUG=true also traces this script (set -x).
set -eu

case "${HELM_DEBUG:-}" in
  1|true|TRUE|True) set -x; RAYLLM_DEBUG=1 ;;
  *) RAYLLM_DEBUG= ;;
esac
export HELM_NAMESPACE="${HELM_NAMESPACE:-}" HELM_KUBECONTEXT="${HELM_KUBECONTEXT:-}"

say() { printf 'helm ray-llm: %s\n' "$*" >&2; }

resolve() {
  # print the physical path of $1 (readlink -f is not POSIX; fall back to a loop)
  target=$1
  if command -v readlink >/dev/null 2>&1 && readlink -f / >/dev/null 2>&1; then
    readlink -f "$target"
    return
  fi
  while [ -L "$target" ]; do
    link=$(ls -ld "$target" | sed 's/.* -> //')
    case "$link" in
      /*) target=$link ;;
      *) target=$(dirname "$target")/$link ;;
    esac
  done
  (cd "$(dirname "$target")" && printf '%s/%s\n' "$(pwd -P)" "$(basename "$target")")
}

find_repo() {
  if [ -n "${RAYLLM_REPO:-}" ]; then
    printf '%s\n' "$RAYLLM_REPO"
    return 0
  fi
  for start in "$(resolve "$0")" "${HELM_PLUGIN_DIR:+$(resolve "$HELM_PLUGIN_DIR")/bin/x}"; do
    [ -n "$start" ] || continue
    dir=$(dirname "$start")
    while [ "$dir" != "/" ] && [ -n "$dir" ]; do
      if [ -f "$dir/pyproject.toml" ] && grep -q 'name = "ray-llm"' "$dir/pyproject.toml" 2>/dev/null; then
        printf '%s\n' "$dir"
        return 0
      fi
      dir=$(dirname "$dir")
    done
  done
  return 1
}

# The CLI checks values against the chart of this plugin's checkout (a ray-llm
# installed from a wheel carries no chart of its own).
if [ -z "${RAYLLM_CHART:-}" ] && repo_for_chart=$(find_repo) && [ -f "$repo_for_chart/charts/ray-llm/Chart.yaml" ]; then
  export RAYLLM_CHART="$repo_for_chart/charts/ray-llm"
fi

if [ -n "${RAYLLM_CLI:-}" ]; then
  if [ -n "$RAYLLM_DEBUG" ]; then exec "$RAYLLM_CLI" --debug "$@"; fi
  exec "$RAYLLM_CLI" "$@"
fi
if [ -n "${RAYLLM_PYTHON:-}" ]; then
  if [ -n "$RAYLLM_DEBUG" ]; then exec "$RAYLLM_PYTHON" -m rayllm_cli.main --debug "$@"; fi
  exec "$RAYLLM_PYTHON" -m rayllm_cli.main "$@"
fi
if command -v ray-llm >/dev/null 2>&1; then
  if [ -n "$RAYLLM_DEBUG" ]; then exec ray-llm --debug "$@"; fi
  exec ray-llm "$@"
fi

# A private virtualenv.
if [ -n "${RAYLLM_VENV:-}" ]; then
  venv=$RAYLLM_VENV
elif [ -n "${HELM_PLUGIN_DIR:-}" ] && [ -w "$HELM_PLUGIN_DIR" ]; then
  venv=$HELM_PLUGIN_DIR/.venv
else
  venv=${XDG_CACHE_HOME:-$HOME/.cache}/ray-llm/venv
fi
# A venv cannot be moved after creation (its scripts name their path), so it is built in
# place and only counts once the marker file exists; a failed install is removed.
if [ ! -f "$venv/.rayllm-installed" ]; then
  if ! repo=$(find_repo); then
    say "cannot find the ray-llm checkout next to this plugin; expected the plugin inside a ray-llm repo;"
    say "set RAYLLM_REPO=/path/to/ray-llm, or RAYLLM_CLI=/path/to/ray-llm, or put ray-llm on PATH"
    exit 2
  fi
  py=$(command -v python3 || command -v python || true)
  if [ -z "$py" ]; then
    say "no python3 on PATH; expected Python >= 3.10; install it or set RAYLLM_CLI"
    exit 2
  fi
  say "creating $venv and installing ray-llm from $repo (first run only)"
  mkdir -p "$(dirname "$venv")"
  rm -rf "$venv"
  if ! "$py" -m venv "$venv" >&2 || \
     ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$repo" >&2; then
    rm -rf "$venv"
    say "installing ray-llm from $repo into $venv failed; see the output above"
    exit 1
  fi
  : > "$venv/.rayllm-installed"
fi
if [ -n "$RAYLLM_DEBUG" ]; then exec "$venv/bin/ray-llm" --debug "$@"; fi
exec "$venv/bin/ray-llm" "$@"

"""No literal credential in anything the chart renders.

Every values file and CI scenario (plus one that sets every secret-bearing
option) is rendered with real Helm and scanned: every manifest, every
ConfigMap entry, serveConfigV2 and the model files parsed from their strings.
Secrets may only appear as references (secretKeyRef, secretName,
imagePullSecrets). The scanner is shown to find each format it knows, where it
would hide, and planted literals in values are either refused by the chart
(without echoing them) or caught by the scanner.
"""

from __future__ import annotations

import base64
import copy
import json
import random
import string
from pathlib import Path
from typing import Callable, Dict, List

import pytest
import yaml

from ..conftest import CHART, CI_VALUES_FILES, VALUES_DIR, VALUES_FILES, docs_of, helm_template, rayservice_of, write_values
from .secret_scanner import FORMATS, ScanReport, scan_documents

HERE = Path(__file__).parent
SECRET_OPTIONS = HERE / "values" / "secret-options-values.yaml"

# --------------------------------------------------------------------------
# Fake credentials, made at run time so no token-shaped literal sits in the repo.
# --------------------------------------------------------------------------

_rng = random.Random(20240606)
ALNUM = string.ascii_letters + string.digits


def _rand(n: int, alphabet: str = ALNUM) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def _b64url(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _pem() -> str:
    body = "\n".join(_rand(64, ALNUM + "+/") for _ in range(4))
    return "-----BEGIN " + "RSA PRIVATE" + " KEY-----\n" + body + "\n-----END " + "RSA PRIVATE" + " KEY-----\n"


SAMPLES: Dict[str, str] = {
    "Hugging Face token": "hf" + "_" + _rand(34),
    "OpenAI-style API key": "sk" + "-proj-" + _rand(48, ALNUM + "_-"),
    "AWS access key id": "AK" + "IA" + _rand(16, string.ascii_uppercase + string.digits),
    "GitHub token": "gh" + "p_" + _rand(36),
    "JSON Web Token": ".".join([_b64url({"alg": "HS256", "typ": "JWT"}), _b64url({"sub": _rand(12), "iat": 1700000000}),
                                _rand(43, ALNUM + "_-")]),
    "PEM private key": _pem(),
    "Slack token": "xo" + "xb-" + _rand(12, string.digits) + "-" + _rand(24),
    "Google API key": "AI" + "za" + _rand(35, ALNUM + "_-"),
    "credentials in a URL": "https://svc-user:" + _rand(20) + "@models.example.com/org/model",
    "bearer token": "Bearer " + _rand(40),
}
RANDOM_PASSWORD = _rand(32, ALNUM + "+/")


def test_every_known_format_has_a_planted_sample():
    assert set(SAMPLES) == {kind for kind, _ in FORMATS}


# --------------------------------------------------------------------------
# The scanner, against planted samples (false negatives) and look-alikes.
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_docs(helm4) -> List[dict]:
    """A real render with every kind of place a literal could hide."""
    return docs_of(helm_template(helm4, [VALUES_DIR / "prod.yaml", SECRET_OPTIONS]).stdout)


def _first(docs: List[dict], pred: Callable[[dict], bool]) -> dict:
    return next(d for d in docs if pred(d))


def _model_cm(docs):
    return _first(docs, lambda d: d["kind"] == "ConfigMap" and d["metadata"]["labels"].get("app.kubernetes.io/component") == "model-config")


def _runtime_cm(docs):
    return _first(docs, lambda d: d["kind"] == "ConfigMap" and any(k.endswith(".py") for k in d.get("data", {})))


def plant(docs: List[dict], where: str, value: str, key: str = "EXTRA_SETTING") -> List[dict]:
    """A copy of docs with value put at one of the places a literal could hide."""
    docs = copy.deepcopy(docs)
    rs = rayservice_of(docs)
    if where == "env":
        container = rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
        container["env"].append({"name": key, "value": value})
    elif where == "serveConfigV2":
        serve = yaml.safe_load(rs["spec"]["serveConfigV2"])
        serve["applications"][-1].setdefault("args", {})["nested"] = {"deeper": [{key: value}]}
        rs["spec"]["serveConfigV2"] = yaml.safe_dump(serve)
    elif where == "model-file":
        cm = _model_cm(docs)
        name = sorted(cm["data"])[0]
        model = yaml.safe_load(cm["data"][name])
        model.setdefault("engine_kwargs", {})[key] = value
        cm["data"][name] = yaml.safe_dump(model)
    elif where == "runtime-source":
        cm = _runtime_cm(docs)
        name = sorted(k for k in cm["data"] if k.endswith(".py"))[0]
        cm["data"][name] += f"\n{key} = {json.dumps(value)}\n"
    elif where == "annotation":
        rs["metadata"].setdefault("annotations", {})[f"example.com/{key.lower()}"] = value
    else:  # pragma: no cover
        raise ValueError(where)
    return docs


PLACES = ["env", "serveConfigV2", "model-file", "runtime-source", "annotation"]
MARKERS = {
    "env": "containers[0].env",
    "serveConfigV2": "serveConfigV2.<parsed>.applications",
    "model-file": "ConfigMap/",
    "runtime-source": ".py",
    "annotation": "metadata.annotations",
}


def test_the_base_render_is_clean(base_docs):
    report = scan_documents(base_docs)
    assert report.findings == [], "\n".join(map(str, report.findings))


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_scanner_finds_each_format_wherever_it_is_planted(base_docs, kind):
    missed = []
    for where in PLACES:
        report = scan_documents(plant(base_docs, where, SAMPLES[kind]))
        hits = [f for f in report.findings if f.kind == kind and MARKERS[where] in f.where]
        if not hits:
            missed.append(where)
    assert missed == [], f"{kind} not found in {missed}"


@pytest.mark.parametrize("where", ["env", "serveConfigV2", "model-file"])
@pytest.mark.parametrize("key", ["DB_PASSWORD", "webhook_secret", "api_key", "auth_header", "signing_key"])
def test_scanner_flags_random_values_of_secret_named_keys(base_docs, where, key):
    report = scan_documents(plant(base_docs, where, RANDOM_PASSWORD, key=key))
    assert [f for f in report.findings if f.kind == f"high-entropy value of {key!r}"], report.findings


@pytest.mark.parametrize(
    "key, value",
    [
        ("model_id", RANDOM_PASSWORD),  # random, but not under a secret-named key
        ("DB_PASSWORD", "a" * 40),  # secret-named, but not random (below the entropy threshold)
        ("api_keys_path", "/home/ray/rayllm/secrets/api-keys"),  # a path, not a key
        ("auth_enabled", "true"),
    ],
)
def test_scanner_leaves_look_alikes_alone(base_docs, key, value):
    for where in ("env", "serveConfigV2"):
        report = scan_documents(plant(base_docs, where, value, key=key))
        assert report.findings == [], (where, [str(f) for f in report.findings])


def test_hits_inside_secret_references_are_exempt_and_reports_never_echo(base_docs):
    docs = copy.deepcopy(base_docs)
    rs = rayservice_of(docs)
    container = rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    sample = SAMPLES["Hugging Face token"]
    container["env"].append({"name": "X", "valueFrom": {"secretKeyRef": {"name": sample.lower(), "key": sample}}})
    report = scan_documents(docs)
    assert report.findings == []
    assert [f for f in report.exempt if "secretKeyRef" in f.where]
    planted = scan_documents(plant(base_docs, "serveConfigV2", sample))
    text = "\n".join(map(str, planted.findings))
    assert planted.findings and sample not in text and sample[3:] not in text


# --------------------------------------------------------------------------
# Every shipped values file and scenario renders without a literal.
# --------------------------------------------------------------------------

RENDER_CASES = [pytest.param([p], id=f"values/{p.name}") for p in VALUES_FILES]
RENDER_CASES += [pytest.param([p], id=f"ci/{p.name}") for p in CI_VALUES_FILES]
RENDER_CASES += [pytest.param([VALUES_DIR / "prod.yaml", SECRET_OPTIONS], id="prod+secret-options")]


@pytest.mark.parametrize("values", RENDER_CASES)
def test_rendered_manifests_hold_no_literal_credentials(helm4, values):
    docs = docs_of(helm_template(helm4, values).stdout)
    report = scan_documents(docs)
    assert report.findings == [], "\n".join(map(str, report.findings))
    # The scan really went inside serveConfigV2 and the ConfigMaps' files.
    assert report.documents == len(docs) and report.nested_documents >= 1
    assert report.exempt == []


def test_every_secret_option_renders_as_a_reference(helm4):
    docs = docs_of(helm_template(helm4, [VALUES_DIR / "prod.yaml", SECRET_OPTIONS]).stdout)
    report = scan_documents(docs)
    refs = "\n".join(report.references)
    for expected in (
        "env[2].valueFrom.secretKeyRef.name",  # HF_TOKEN
        "imagePullSecrets[0].name",
        "secret.secretName",  # secretMounts
        "spec.tls[0].secretName",  # Ingress TLS
    ):
        assert expected in refs, expected
    rs = rayservice_of(docs)
    worker = rs["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    small = next(g for g in worker if g["groupName"] == "small")["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in small["env"]}
    for name in ("HF_TOKEN", "WANDB_API_KEY", "AWS_SECRET_ACCESS_KEY"):
        assert set(env[name]) == {"name", "valueFrom"} and "secretKeyRef" in env[name]["valueFrom"], name
    serve = yaml.safe_load(rs["spec"]["serveConfigV2"])
    gateway = next(a for a in serve["applications"] if a["name"] == "gateway")
    assert gateway["args"]["auth"]["api_keys_path"].startswith("/home/ray/rayllm/secrets/")
    assert "api_keys" not in gateway["args"]["auth"]


# --------------------------------------------------------------------------
# Literals planted in values: refused by the chart, or caught by the scanner.
# --------------------------------------------------------------------------

GATEWAY = {
    "import_path": "rayllm_runtime.apps:build_gateway",
    "route_prefix": "/gateway",
    "args": {"upstreams": [{"model_ids": ["qwen2.5-0.5b-instruct"], "base_url": "http://127.0.0.1:8000/"}]},
}


def _values_with(path: str, value) -> dict:
    """ci/minimal-values.yaml plus the gateway app, with value set at a dotted path ([n] for list items)."""
    data = yaml.safe_load((CHART / "ci" / "minimal-values.yaml").read_text())
    data["customApps"] = {"gateway": copy.deepcopy(GATEWAY)}
    node = data
    parts = path.replace("[", ".[").split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        nxt = None if last else parts[i + 1]
        key = int(part[1:-1]) if part.startswith("[") else part
        if last:
            if isinstance(node, list):
                node.insert(key, value)
            else:
                node[key] = value
            break
        if isinstance(node, list):
            node = node[key]
        else:
            node = node.setdefault(key, [] if nxt and nxt.startswith("[") else {})
    return data


PLANTED = [
    # (values path, value, expected outcome, text the outcome must name)
    ("models.qwen-0-5b.runtime_env.env_vars.HF_TOKEN", SAMPLES["Hugging Face token"], "refused", "models.qwen-0-5b.runtime_env.env_vars"),
    ("tiers.small.env", [{"name": "HF_TOKEN", "value": SAMPLES["Hugging Face token"]}], "refused", "tiers.small.env[0]"),
    ("head.env", [{"name": "OPENAI_API_KEY", "value": SAMPLES["OpenAI-style API key"]}], "refused", "head.env[0]"),
    ("tiers.small.env", [{"name": "EXTRA_CONFIG", "value": SAMPLES["AWS access key id"]}], "refused", "tiers.small"),
    ("customApps.gateway.args.auth", {"enabled": True, "api_keys": [RANDOM_PASSWORD]}, "refused", "customApps.gateway.args"),
    ("customApps.gateway.args.upstreams[0].api_key", SAMPLES["OpenAI-style API key"], "refused", "customApps.gateway"),
    ("customApps.gateway.runtime_env", {"env_vars": {"GITHUB_TOKEN": SAMPLES["GitHub token"]}}, "refused", "customApps.gateway.runtime_env.env_vars"),
    ("models.qwen-0-5b.engine_kwargs.hf_token", SAMPLES["Hugging Face token"], "refused", "models.qwen-0-5b"),
    ("models.qwen-0-5b.engine_kwargs.hf_token", RANDOM_PASSWORD, "refused", "models.qwen-0-5b.engine_kwargs"),
    ("rayService.annotations", {"example.com/deploy-token": SAMPLES["JSON Web Token"]}, "refused", "rayService"),
    ("serve.ingress.annotations", {"example.com/key": SAMPLES["PEM private key"]}, "refused", "serve"),
    # The chart refuses every format the scanner knows (one list, rayllm_schemas.secret_patterns).
    ("models.qwen-0-5b.model_loading_config.model_source", SAMPLES["credentials in a URL"], "refused", "models.qwen-0-5b"),
    ("customApps.gateway.args.upstreams[0].headers", {"Authorization": SAMPLES["bearer token"]}, "refused", "customApps.gateway"),
    # What the chart lets through, the scanner must catch in the rendered output.
    ("head.rayStartParams.redis-password", RANDOM_PASSWORD, "caught", "headGroupSpec.rayStartParams"),
    ("customApps.gateway.args.webhook", {"auth_header": RANDOM_PASSWORD}, "caught", "serveConfigV2.<parsed>"),
]


def _secret_of(value) -> List[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _secret_of(v)]
    if isinstance(value, list):
        return [s for v in value for s in _secret_of(v)]
    return []


@pytest.mark.parametrize("path, value, expected, names", PLANTED, ids=[f"{p[0]}:{p[2]}" for p in PLANTED])
def test_planted_literal_is_refused_or_caught(helm4, tmp_path, path, value, expected, names):
    secrets = [s for s in _secret_of(value) if len(s) >= 16]
    assert secrets
    proc = helm_template(helm4, [write_values(tmp_path, "planted.yaml", _values_with(path, value))], check=False)
    if proc.returncode != 0:
        outcome = "refused"
        for s in secrets:
            for piece in (s, s[4:24]):  # neither the secret nor a slice of it
                assert piece not in proc.stderr and piece not in proc.stdout, "the error echoes the secret"
        assert names in proc.stderr, proc.stderr[-2000:]
        assert any(w in proc.stderr.lower() for w in ("secret", "credential")), proc.stderr[-2000:]
    else:
        report: ScanReport = scan_documents(docs_of(proc.stdout))
        assert report.findings, f"{path}: rendered and the scanner found nothing"
        assert any(names in f.where for f in report.findings), [str(f) for f in report.findings]
        outcome = "caught"
    assert outcome == expected

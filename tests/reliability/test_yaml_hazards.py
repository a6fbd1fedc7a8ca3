"""Hostile YAML in values files: each hazard gets one clear finding (or usage error),
in bounded time and memory, from the real ``ray-llm`` console script.

Limits and decisions (see ``rayllm_cli/yaml_helm.py``):

* files over 4 MiB are refused before they are read (Helm has no ``-f`` limit, but the release
  Secret holding the values and the manifests is capped at 1 MiB);
* nesting over 100 levels, more than 500,000 values, alias bombs (go-yaml's own rule, which makes
  Helm say "document contains excessive aliasing", plus a 100,000-copy cap), self-referencing
  anchors: refused with the file and line;
* duplicate keys: an error naming both lines (Helm silently keeps the last one, dropping the first
  entirely: almost always a paste mistake);
* YAML 1.1 booleans: Helm's go-yaml reads unquoted ``on/off/yes/no/y/n`` as booleans (also as
  map KEYS: a tier ``on:`` is named ``"true"``); an unquoted one as a key is an error, as a
  value a warning, each telling to quote it. The loader reads every plain scalar as Helm does
  (``test_scalars_read_like_helm`` checks that against the real helm binaries);
* tabs, control characters, binary / non-UTF-8 / UTF-16 input, a list or scalar at the top level,
  several documents in one file: one error each.

The safety bounds asserted here (10 s of CPU, 60 s wall, 500 MB peak RSS per run) are limits,
not targets; the measured numbers are printed (``pytest -s``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import pytest
import yaml

from ..cli.helpers import base

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

RAY_LLM = Path(sys.executable).parent / "ray-llm"
MAX_CPU_SECONDS = 10.0  # CPU time: the machine may be shared, wall time is only a hang detector
MAX_WALL_SECONDS = 60.0
MAX_RSS_MB = 500.0
MEASURED: Dict[str, str] = {}


class Run:
    def __init__(self, code: int, out: str, err: str, seconds: float, cpu: float, rss_mb: float) -> None:
        self.code, self.out, self.err = code, out, err
        self.seconds, self.cpu, self.rss_mb = seconds, cpu, rss_mb

    @property
    def findings(self) -> List[Dict[str, Any]]:
        return json.loads(self.out)["findings"]

    def errors(self) -> List[Dict[str, Any]]:
        return [f for f in self.findings if f["severity"] == "error"]


# A child's peak RSS (ru_maxrss) starts at its parent's RSS when forked: the pytest process may be
# hundreds of MB by now, so a small launcher process spawns the console script and reports that
# child's own numbers (wall time, CPU time, peak RSS from wait4).
_LAUNCHER = """
import json, os, subprocess, sys, threading, time
report, timeout, cmd = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
start = time.monotonic()
proc = subprocess.Popen(cmd)
timer = threading.Timer(timeout, proc.kill)
timer.start()
_, status, usage = os.wait4(proc.pid, 0)
timer.cancel()
proc.returncode = os.waitstatus_to_exitcode(status)
with open(report, "w") as fh:
    json.dump({"code": proc.returncode, "seconds": time.monotonic() - start,
               "cpu": usage.ru_utime + usage.ru_stime, "rss_kb": usage.ru_maxrss}, fh)
"""


def ray_llm(tmp_path: Path, label: str, args: Sequence[str], stdin: Optional[Path] = None,
            timeout: float = 120.0) -> Run:
    """The console script in a subprocess, measured (see _LAUNCHER); asserts the safety bounds."""
    out_path, err_path, report = (tmp_path / f"{label}.{ext}" for ext in ("out", "err", "json"))
    env = dict(os.environ, RAYLLM_VLLM_ARGS="shipped")
    with open(out_path, "wb") as out, open(err_path, "wb") as err, \
            (open(stdin, "rb") if stdin else open(os.devnull, "rb")) as inp:
        subprocess.run([sys.executable, "-c", _LAUNCHER, str(report), str(timeout), str(RAY_LLM), *args],
                       stdin=inp, stdout=out, stderr=err, env=env, check=True, timeout=timeout + 30)
    m = json.loads(report.read_text())
    run = Run(m["code"], out_path.read_text("utf-8", "replace"), err_path.read_text("utf-8", "replace"),
              m["seconds"], m["cpu"], m["rss_kb"] / 1024)
    MEASURED[label] = f"exit {run.code}, {run.seconds:.2f} s wall, {run.cpu:.2f} s CPU, {run.rss_mb:.0f} MB peak RSS"
    print(f"\n[{label}] {MEASURED[label]}")
    assert "Traceback" not in run.out + run.err and "internal error" not in run.err, run.err[-2000:]
    assert run.cpu < MAX_CPU_SECONDS, f"{label}: {run.cpu:.1f} s CPU"
    assert run.seconds < MAX_WALL_SECONDS, f"{label}: {run.seconds:.1f} s"
    assert run.rss_mb < MAX_RSS_MB, f"{label}: {run.rss_mb:.0f} MB"
    return run


def validate(tmp_path: Path, label: str, content: bytes, *extra: str) -> Run:
    path = tmp_path / f"{label}.yaml"
    path.write_bytes(content)
    return ray_llm(tmp_path, label, ["validate", "-f", str(path), "-o", "json", *extra])


def one_error(run: Run, *needles: str, path: str = "", line: Optional[int] = None) -> Dict[str, Any]:
    """Exit 1 and exactly one error finding, a one-liner naming the file (and line) and saying what to do."""
    assert run.code == 1, (run.code, run.out[-1000:], run.err[-1000:])
    errors = run.errors()
    assert len(errors) == 1, errors
    f = errors[0]
    text = " ".join(str(f[k]) for k in ("message", "expected", "fix"))
    for needle in needles:
        assert needle.lower() in text.lower(), (needle, f)
    assert "\n" not in f["message"] and f["expected"] and f["fix"], f
    assert f["path"] == path, f
    if line is not None:
        assert f["origin"].endswith(f".yaml:{line}"), f
    else:
        assert f["origin"], f
    return f


def dump(data: Any) -> bytes:
    return yaml.safe_dump(data, sort_keys=False).encode()


# ----------------------------------------------------------------------------- aliases


def _laughs(levels: int, width: int = 9) -> bytes:
    lines = ["lol0: &lol0 [" + ", ".join(['"lol"'] * width) + "]"]
    for i in range(1, levels + 1):
        lines.append(f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * width) + "]")
    return ("\n".join(lines) + "\n").encode()


def test_billion_laughs_is_refused_quickly(tmp_path):
    run = validate(tmp_path, "billion-laughs", _laughs(9))  # 9^10 = 3.5 billion strings if expanded
    one_error(run, "alias", "excessive aliasing")


def test_merge_key_bomb_is_refused(tmp_path):
    lines = ["m0: &m0 {a: 1, b: 2, c: 3}"]
    for i in range(1, 12):
        lines.append(f"m{i}: &m{i} {{" + ", ".join(f"k{j}: *m{i - 1}" for j in range(9)) + "}")
    lines.append("tiers: {small: {<<: *m11, acceleratorType: T4}}")
    one_error(validate(tmp_path, "merge-key-bomb", "\n".join(lines).encode() + b"\n"), "alias")


def test_one_big_list_aliased_many_times_is_refused(tmp_path):
    """Quadratic rather than exponential: 20,000 values copied 100 times (Helm refuses it too)."""
    text = "x: &big [" + ", ".join(["1"] * 20_000) + "]\ny: [" + ", ".join(["*big"] * 100) + "]\n"
    one_error(validate(tmp_path, "wide-alias", text.encode()), "alias")


def test_self_referencing_anchor_is_refused(tmp_path):
    one_error(validate(tmp_path, "recursive-anchor", b"global:\n  a: &a [1, *a]\n"), "contains itself", line=2)


def test_ordinary_anchors_and_merge_keys_still_work(tmp_path):
    text = dump(base()).decode().replace("  small:\n", "  small: &tier\n", 1)
    text = text.replace("  large:\n", "  large:\n    <<: *tier\n", 1)
    run = validate(tmp_path, "anchors-ok", text.encode())
    assert run.code == 0, run.out


# ----------------------------------------------------------------------------- size, depth, count


def test_50_mib_file_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "huge.yaml"
    chunk = (b"# " + b"x" * 1022 + b"\n") * 1024  # 1 MiB at a time: keep this process small
    with open(path, "wb") as fh:
        fh.write(dump(base()))
        for _ in range(50):
            fh.write(chunk)
    run = ray_llm(tmp_path, "50MiB-file", ["validate", "-f", str(path), "-o", "json"])
    f = one_error(run, "file too large", "50.0 MiB", "limit is 4 MiB")
    assert f["origin"] == str(path)
    assert run.rss_mb < 150, run.rss_mb  # never read: the interpreter's own footprint only


def test_50_mib_on_stdin_reads_only_up_to_the_limit(tmp_path):
    path = tmp_path / "huge-stdin.yaml"
    chunk = (b"# " + b"y" * 1022 + b"\n") * 1024
    with open(path, "wb") as fh:
        fh.write(b"nameOverride: x\n")
        for _ in range(50):
            fh.write(chunk)
    run = ray_llm(tmp_path, "50MiB-stdin", ["validate", "-f", "-", "-o", "json"], stdin=path)
    one_error(run, "file too large", "limit is 4 MiB")


def test_endless_device_is_refused(tmp_path):
    run = ray_llm(tmp_path, "dev-zero", ["validate", "-f", "/dev/zero", "-o", "json"])
    one_error(run, "file too large")


def test_dense_values_over_the_node_limit(tmp_path):
    content = b"global:\n  x: [" + b"1," * (2 * 1024 * 1024 - 20) + b"1]\n"  # ~2 million values in 4 MiB
    assert len(content) < 4 * 1024 * 1024
    one_error(validate(tmp_path, "dense-4MiB", content), "more than 500,000 values")


@pytest.mark.parametrize("label,content,line", [
    ("flow-nesting-100k", b"global:\n  x: " + b"[" * 100_000 + b"]" * 100_000 + b"\n", 2),
    ("block-nesting-500", b"global:\n" + b"".join(b"  " * i + b"k:\n" for i in range(1, 500)) + b"  " * 500 + b"v: 1\n",
     100),
])
def test_deep_nesting_is_refused_with_its_line(tmp_path, label, content, line):
    one_error(validate(tmp_path, label, content), "more than 100 levels", line=line)


def test_deep_set_expression_is_a_usage_error(tmp_path):
    expr = ".".join(["a"] * 500) + "=1"
    run = ray_llm(tmp_path, "deep-set", ["validate", "--set", expr, "-o", "json"])
    assert run.code == 2 and "more than 100 levels" in run.err and len(run.err.strip().splitlines()) == 1, run.err


# ----------------------------------------------------------------------------- duplicate keys


def test_duplicate_keys_name_both_lines(tmp_path):
    text = dump(base()) + b"tiers:\n  small: {acceleratorType: T4}\n"
    first = text.decode().splitlines().index("tiers:") + 1
    second = len(text.decode().splitlines()) - 1
    run = validate(tmp_path, "duplicate-key", text)
    f = next(f for f in run.errors() if f["rule"] == "yaml")
    assert f["path"] == "tiers" and f["origin"].endswith(f":{second}")
    assert f"line {first} and again on line {second}" in f["message"], f
    assert "silently keeps only the last one" in f["message"] and f["fix"], f


def test_duplicate_key_inside_a_tier(tmp_path):
    text = b"tiers:\n  small:\n    acceleratorType: T4\n    gpusPerWorker: 1\n    gpusPerWorker: 2\n"
    f = one_error(validate(tmp_path, "duplicate-nested", text), "line 4 and again on line 5",
                  path="tiers.small.gpusPerWorker", line=5)
    assert "Helm" in f["message"]


# ----------------------------------------------------------------------------- YAML 1.1 booleans


def test_yaml11_boolean_as_tier_name_is_an_error(tmp_path):
    text = b"tiers:\n  on:\n    acceleratorType: T4\n"
    f = one_error(validate(tmp_path, "tier-named-on", text), 'quote the key: "on":', path="tiers.true", line=2)
    assert "boolean true" in f["message"]


def test_quoted_tier_name_on_is_fine(tmp_path):
    v = base()
    v["tiers"]["on"] = v["tiers"].pop("small")
    v["models"]["qwen"]["tier"] = "on"
    run = validate(tmp_path, "tier-named-quoted-on", dump(v))  # safe_dump quotes 'on'
    assert run.code == 0, run.out


@pytest.mark.parametrize("word", ["no", "off", "y", "N", "Yes"])
def test_yaml11_boolean_value_where_a_string_is_expected(tmp_path, word):
    text = dump(base()).replace(b"acceleratorType: T4", b"acceleratorType: " + word.encode(), 1)
    run = validate(tmp_path, f"accelerator-{word}", text)
    assert run.code == 1
    found = [f for f in run.findings if f["path"] == "tiers.small.acceleratorType"]
    warn = next(f for f in found if f["severity"] == "warning")
    err = next(f for f in found if f["severity"] == "error")
    assert f"unquoted `{word}` is the boolean" in warn["message"] and f"'{word}'" in warn["fix"], warn
    assert "quote" in err["fix"], err


def test_yaml11_boolean_where_a_boolean_is_expected_is_a_warning_only(tmp_path):
    text = dump(base()).replace(b"acceleratorType: T4", b"acceleratorType: T4\n    spot: yes", 1)
    run = validate(tmp_path, "spot-yes", text)
    assert run.code == 0, run.out
    (warn,) = [f for f in run.findings if f["path"] == "tiers.small.spot"]
    assert warn["severity"] == "warning" and "write true" in warn["fix"]


# ----------------------------------------------------------------------------- tabs, bytes, shapes


def test_tab_indentation_names_the_line(tmp_path):
    one_error(validate(tmp_path, "tab-indent", b"tiers:\n  small:\n\tacceleratorType: T4\n"),
              "tab character at line 3", "spaces", line=3)


@pytest.mark.parametrize("label,content,needle", [
    ("elf-binary", b"\x7fELF\x02\x01\x01\x00\x00\x00\xff\xfe binary", "not UTF-8"),
    ("latin1", "nameOverride: caf\xe9\n".encode("latin-1"), "not UTF-8"),
    ("utf16", "nameOverride: x\n".encode("utf-16"), "UTF-16"),
    ("nul-bytes", b"nameOverride: x\x00\x00\n", "binary"),
    ("control-char", b"nameOverride: x\x1by\n", "control character"),
])
def test_binary_and_undecodable_input(tmp_path, label, content, needle):
    one_error(validate(tmp_path, label, content), needle)


@pytest.mark.parametrize("label,content,needle", [
    ("top-level-list", b"- tiers\n- models\n", "top level of the file is a list"),
    ("top-level-scalar", b"just a string\n", "top level of the file is a str"),
    ("top-level-number", b"42\n", "top level of the file is a int"),
    ("two-documents", b"tiers: {}\n---\nmodels: {}\n", "several YAML documents"),
])
def test_wrong_document_shapes(tmp_path, label, content, needle):
    one_error(validate(tmp_path, label, content), needle)


def test_trailing_empty_document_is_accepted(tmp_path):
    assert validate(tmp_path, "trailing-doc-marker", dump(base()) + b"---\n").code == 0


def test_missing_file_and_directory_are_usage_errors(tmp_path):
    for label, target in (("missing-file", tmp_path / "nope.yaml"), ("directory", tmp_path)):
        run = ray_llm(tmp_path, label, ["validate", "-f", str(target)])
        assert run.code == 2 and len(run.err.strip().splitlines()) == 1 and str(target) in run.err, run.err


# ----------------------------------------------------------------------------- parity with Helm


TRICKY = """\
keys:
  on: 1
  y: 2
  n: 3
  off: 4
  "no": quoted
  1.5: 5
  1e3: 6
  1e6: 7
  0x10: 8
  12345678.9: 9
  .nan: 10
  .inf: 11
  -.inf: 12
  1e400: 13
  18446744073709551616: 14
  -0.0001: 15
  0.00001: 16
values:
  a: no
  b: y
  c: N
  d: On
  e: 0o17
  f: 017
  g: 08
  h: 0x1F
  i: +5
  j: -0x1F
  k: 1.
  l: .5
  m: +.5
  n2: 1_0.5
  o: 0x_1F
  p: 1:20
  q: 0b101
  r: 0b
  s: 0x
  t: 1e400
  u: 1e-400
  v: 1e308
  w: 2001-12-14
  x: 2001-12-14 21:59:43.10 -5
  z: ~
  aa: Null
  ab:
  ac: !!str 12
  ad: !!binary aGVsbG8=
  ae: !foo bar
  af: !!float 1
  ag: !!bool y
  ah: "\\U0001F600"
  ai: 9007199254740992
  aj: '{<<: x}'
merged:
  base: &b {x: 1, y: 2}
  over: {<<: *b, x: 3}
  multi: {<<: [{a: 1, b: 1}, {a: 2, c: 2}], b: 3}
"""


def _helm_values(helm: Path, tmp_path: Path, values: Path) -> Any:
    chart = tmp_path / "probe-chart"
    (chart / "templates").mkdir(parents=True, exist_ok=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("{}\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\ndata:\n  v: {{ toJson .Values | quote }}\n")
    env = dict(os.environ, KUBECONFIG="/nonexistent", HELM_CACHE_HOME=str(tmp_path / "hc"),
               HELM_CONFIG_HOME=str(tmp_path / "hcfg"), HELM_DATA_HOME=str(tmp_path / "hd"))
    proc = subprocess.run([str(helm), "template", "probe", str(chart), "-f", str(values)],
                          capture_output=True, text=True, env=env, timeout=120)
    if proc.returncode != 0:
        return proc.stderr.strip()
    return json.loads(yaml.safe_load(proc.stdout)["data"]["v"])


@pytest.mark.parametrize("label", ["3.18", "4"])
def test_scalars_read_like_helm(tmp_path, helm_paths, label):
    """Our loader and the real helm agree on every tricky scalar and key."""
    from rayllm_cli.merge import load_yaml_tracked

    values = tmp_path / "tricky.yaml"
    values.write_text(TRICKY)
    theirs = _helm_values(helm_paths[label], tmp_path, values)
    ours, _, problems = load_yaml_tracked(TRICKY, str(values))
    assert isinstance(theirs, dict), theirs
    assert ours == theirs
    # and every YAML 1.1 word among them is flagged: keys as errors, values as warnings
    flagged = {(p.path, p.severity) for p in problems}
    assert {("keys.true", "error"), ("keys.false", "error"), ("values.a", "warning"), ("values.b", "warning"),
            ("values.c", "warning"), ("values.d", "warning")} <= flagged, flagged


@pytest.mark.parametrize("content", [
    "x: .nan\n", "x: -.inf\n", "a: &a [*a]\n", "x: !!int abc\n", "? [a, b]\n: 1\n", "~: c\n",
    "y:\n  <<: 5\n", 'x: "\\ud800"\n', "9223372036854775808: 1\n", "x: 18446744073709551617\n",
])
def test_what_helm_refuses_is_an_error_here(tmp_path, helm4, content):
    """Helm fails on these (or, for the last, silently rounds the number): we say so with an error."""
    from rayllm_cli.errors import RayLLMError
    from rayllm_cli.merge import load_yaml_tracked

    values = tmp_path / "refused.yaml"
    values.write_text(content)
    theirs = _helm_values(helm4, tmp_path, values)
    try:
        _, _, problems = load_yaml_tracked(content, str(values))
        errors = [p for p in problems if p.severity == "error"]
    except RayLLMError as exc:
        errors = exc.findings
    assert errors and all(e.expected and e.fix for e in errors), errors
    if "18446744073709551617" in content:
        assert theirs["x"] != 18446744073709551617  # rounded to a float64: we refuse to pretend otherwise
    else:
        assert isinstance(theirs, str) and "Error" in theirs, theirs


def test_print_measurements():
    """Shown with ``pytest -s``: what each hazard cost (the bounds above are the assertion)."""
    for label, text in sorted(MEASURED.items()):
        print(f"{label:28s} {text}")


# ----------------------------------------------------------------------------- rendered manifests


@pytest.mark.parametrize("label,text,needle", [
    ("manifest-laughs", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n"
     + "".join("  " + line + "\n" for line in _laughs(9).decode().splitlines()), "alias"),
    ("manifest-deep", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: " + "[" * 100_000 + "]" * 100_000,
     "levels deep"),
    ("manifest-recursive", "apiVersion: v1\nkind: List\nmetadata: {name: x}\nitems: &a [*a]\n", "contain itself"),
])
def test_manifest_splitter_refuses_hostile_yaml(label, text, needle):
    """``lint`` parses what helm rendered with the same limits (checks_common's duplicate-key loader)."""
    import tracemalloc

    from rayllm_cli.checks_common import ManifestParseError, split_manifests

    tracemalloc.start()
    started = time.process_time()
    try:
        with pytest.raises(ManifestParseError) as info:
            split_manifests("# Source: ray-llm/templates/x.yaml\n" + text)
        cpu = time.process_time() - started
        peak_mb = tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()
    MEASURED[label] = f"ManifestParseError, {cpu:.2f} s CPU, {peak_mb:.0f} MB traced peak"
    print(f"\n[{label}] {MEASURED[label]}")
    assert needle in str(info.value) and "templates/x.yaml" in str(info.value), info.value
    assert cpu < MAX_CPU_SECONDS and peak_mb < MAX_RSS_MB

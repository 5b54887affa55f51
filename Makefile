# berth: `make demo` runs the main job, `make test` installs everything and runs the tests.
# Both work on a fresh Debian 12 machine as root: they install what they need themselves.
SHELL := /bin/bash
PYTHON ?= /usr/bin/python3
VENV := .venv
# docker-compose 1.29.2 needs docker<7 (the main .venv keeps docker==7.2.0): a virtualenv of its own
COMPOSE_VENV := .venv-compose
COMPOSE_PIP := docker-compose==1.29.2 docker==6.1.3 requests==2.31.0
# its PyYAML 5.4.1 has no wheel for this Python and its sdist fails to build with Cython 3
COMPOSE_BUILD := Cython==0.29.37 wheel==0.48.0
APT_PACKAGES := python3 python3-venv python3-pip busybox-static runc libseccomp2 procps iproute2 util-linux containerd docker-registry skopeo openssl tini containernetworking-plugins iptables runsc libdevmapper1.02.1
# dockerd (Debian's docker.io, 20.10), the peer the parity tests compare berthd with: its programs
# unpacked into .peers/ and found there by the tests, not installed (no service enabled or
# started, no docker group, the machine's own docker CLI left alone). Without it (no package
# archive reachable) those tests skip.
PEERS := .peers

.PHONY: all deps install compose peers test demo bench clean

all: install

deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

install: deps $(VENV)/bin/python compose
	$(VENV)/bin/pip install -q --disable-pip-version-check '.[test]'
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps --force-reinstall .
	$(VENV)/bin/python tools/write_launchers.py

compose: $(COMPOSE_VENV)/bin/docker-compose

$(COMPOSE_VENV)/bin/docker-compose:
	$(PYTHON) -m venv $(COMPOSE_VENV)
	$(COMPOSE_VENV)/bin/pip install -q --disable-pip-version-check $(COMPOSE_BUILD)
	$(COMPOSE_VENV)/bin/pip install -q --disable-pip-version-check --no-build-isolation PyYAML==5.4.1
	$(COMPOSE_VENV)/bin/pip install -q --disable-pip-version-check $(COMPOSE_PIP)

peers: $(PEERS)/bin/dockerd

$(PEERS)/bin/dockerd:
	@rm -rf $(PEERS) && mkdir -p $(PEERS)/deb $(PEERS)/bin
	@cd $(PEERS)/deb && { apt-get download -qq docker.io 2>/dev/null || { apt-get update -qq && apt-get download -qq docker.io 2>/dev/null; }; } \
		&& dpkg-deb -x docker.io_*.deb ../root \
		&& ln -s ../root/usr/sbin/dockerd ../root/usr/sbin/docker-proxy ../root/usr/bin/docker-init ../bin/ \
		|| { echo "docker.io could not be fetched: the tests that compare with dockerd will skip"; rm -rf ../bin/*; }
	@rm -rf $(PEERS)/deb

test: install peers
	PATH="$(CURDIR)/$(PEERS)/bin:$$PATH" $(VENV)/bin/python -m pytest -q -p no:cacheprovider tests

demo: install
	bash scripts/demo.sh

bench: install
	$(VENV)/bin/python bench/runtime_run.py --runs 20

clean:
	rm -rf $(VENV) $(COMPOSE_VENV) $(PEERS) build *.egg-info

#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine, then run it.
# README's test command and .ci/run both run this script; keep it the one place for test setup.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1

# The cluster tests (pytest -m "slurm or ray") start a real Slurm (Debian slurm-wlm) and a real
# Ray cluster (the ray extra); see docs/clusters.md.
if ! command -v slurmctld >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurm-wlm >/dev/null
fi

# The real-accounting Slurm test starts slurmdbd (Debian slurmdbd) on a MariaDB server
# (mariadb-server) of its own. Installing them would also start (under systemd, enable) their
# packaged services; the fixtures run their own daemons, so while they install invoke-rc.d is
# told "no" (a policy-rc.d that exits 101, as Debian's container images ship) unless a policy
# is there already.
if ! command -v slurmdbd >/dev/null 2>&1 || ! command -v mariadbd >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  if [ -e /usr/sbin/policy-rc.d ]; then
    apt-get install -y -qq slurmdbd mariadb-server >/dev/null
  else
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    status=0
    apt-get install -y -qq slurmdbd mariadb-server >/dev/null || status=$?
    rm -f /usr/sbin/policy-rc.d
    [ "$status" -eq 0 ] || exit "$status"
  fi
fi

# The browser test (pytest -m browser) drives Debian's chromium through its chromedriver.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium chromium-driver >/dev/null
fi

python3 -m venv .venv
# ray: the Ray executor's tests; dashboard: `scaleout ui --optuna` against optuna-dashboard.
.venv/bin/pip install -q -c .ci/constraints.txt -e '.[test,ray,dashboard]'
# The nuScenes devkit is the reference the metric is checked against. It pins numpy<2 but its
# evaluation code runs on numpy 2; the test loads only those files (no cv2/matplotlib parts).
.venv/bin/pip install -q --no-deps nuscenes-devkit==1.2.0 pyquaternion==0.9.9

# Lint and format, as the project's pinned ruff sees them (notebooks included; the fixture
# configs mirror the real trainers' files and are excluded in pyproject.toml).
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .

exec .venv/bin/python -m pytest "$@"

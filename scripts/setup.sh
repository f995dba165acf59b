#!/usr/bin/env bash
# Set up ASCI on Debian 12: system packages, the Python virtual environment, and
# the search-engine launcher. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

APT_PACKAGES=(
  docker.io docker-registry          # Docker Engine 20.10 and the Distribution registry
  debootstrap busybox-static         # local base images: nothing is pulled from a hub
  iptables ca-certificates git
  wrk                                # load generator of bench/autobuild_intake.py
  rsyslog rsyslog-elasticsearch      # the side-by-side contender of bench/logging_throughput.py
  pkg-config gcc python3-dev python3-venv   # systemd-python compiles against libsystemd
  slapd ldap-utils                   # the test suite's own LDAP directory (tests/support/slapd.py)
  novnc python3-websockify websockify  # the browser viewer served under /novnc/; websockify for bench/
  tigervnc-standalone-server tigervnc-tools  # a host Xvnc (and vncpasswd) the proxy tests relay to
  chromium chromium-driver           # the browser test; installed with the pinned libsystemd-dev below
  xvfb xauth libgl1-mesa-dri         # the development 3DX (gpu.three_dx): Xvfb +extension GLX on Mesa llvmpipe
)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
# libsystemd-dev must match the installed libsystemd0, or apt upgrades systemd itself.
libsystemd=$(dpkg-query -W -f='${Version}' libsystemd0)
if [ "$(dpkg-query -W -f='${Version}' libsystemd-dev 2>/dev/null || true)" != "$libsystemd" ]; then
  missing+=("libsystemd-dev=$libsystemd")
fi
if ! command -v javac >/dev/null || ! command -v mvn >/dev/null; then
  missing+=(openjdk-17-jdk-headless maven)
fi
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
# Reinstall only when the declared dependencies changed.
stamp=.venv/.asci-pyproject.sha256
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  log "installing the asci distribution and its dependencies into .venv"
  .venv/bin/pip install -q -e '.[test]'
  echo "$want" > "$stamp"
fi

log "building the search-engine launcher (tools/search-engine)"
bash tools/search-engine/build.sh >&2
log "done: .venv/bin/asci is ready"

#!/usr/bin/env bash
# Installs everything vigil's build, tests and benchmarks need on a fresh
# Debian machine. Idempotent: safe to run again.
set -euo pipefail

need_apt=()
# rsyslog + rsyslog-gnutls + openssl: the real syslog receiver of the sink tests
# (scripts/rsyslog-test.sh runs a private instance; the system one is not used).
# nats-server: the real NATS/JetStream server of the fleet tests (tests/tests/fleet.rs).
for pkg in build-essential pkg-config zstd ripgrep jq python3-pip rsyslog rsyslog-gnutls openssl nats-server; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 2; }
rustup component add clippy rustfmt >/dev/null 2>&1 || true

# Elastic's reference EQL engine: the correlator benchmark's baseline and
# the same-alerts test (tests/tests/eql_parity.rs). Without it both say so
# and go on. Debian's own python3 refuses pip installs outside a venv
# (PEP 668) unless told that this is meant.
if ! python3 -c 'import eql' >/dev/null 2>&1; then
  python3 -m pip install --quiet 'eql==1.0.1' >/dev/null 2>&1 \
    || python3 -m pip install --quiet --user --break-system-packages 'eql==1.0.1' >/dev/null 2>&1 \
    || echo "setup: could not install python eql 1.0.1 (the eql benchmark row and tests/tests/eql_parity.rs will be skipped)" >&2
fi
echo "setup: ok"

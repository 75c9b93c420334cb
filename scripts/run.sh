#!/usr/bin/env bash
# The main job: build vigil and run the agent live on this machine with the
# shipped rules and an embedded spool, printing alerts as they happen.
# Needs root for the kernel sources (process connector, fanotify).
# Extra arguments go to `vigil run` (e.g. --config vigil.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
cargo build --release --locked -p vigil
state_dir="${VIGIL_STATE_DIR:-/var/lib/vigil}"
exec target/release/vigil run --source linux --state-dir "$state_dir" "$@"

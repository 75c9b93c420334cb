#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, then every test.
# Long soak and fuzz runs are opt-in: VIGIL_SOAK=1 scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# The shipped rules pass their fixtures through the real CLI too.
cargo run --quiet --locked -p vigil -- rules check
cargo run --quiet --locked -p vigil -- rules test

#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, every test, the
# shipped rules through the real CLI, the macOS type-check and the Debian
# package. Long soak and fuzz runs are opt-in: VIGIL_SOAK=1 scripts/test.sh
# For a quicker local loop: VIGIL_QUICK=1 skips the macOS check and the package.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# setup.sh installs python eql: the same-alerts tests must run, not skip.
export VIGIL_REQUIRE_EQL=1
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# The shipped rules pass their fixtures through the real CLI too.
cargo run --quiet --locked -p vigil -- rules check
cargo run --quiet --locked -p vigil -- rules test
if [ -z "${VIGIL_QUICK:-}" ]; then
  scripts/check-macos.sh
  packaging/linux/build-deb.sh --verify
fi
echo "test.sh: all checks passed"

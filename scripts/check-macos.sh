#!/usr/bin/env bash
# Type-checks the whole workspace for macOS (aarch64-apple-darwin and
# x86_64-apple-darwin) on Linux, so macOS-only code (Endpoint Security,
# libproc) cannot rot unseen. No Apple SDK or linker is needed: `cargo check`
# never links, and build scripts that compile C get a stand-in compiler.
#
# The rustup toolchain here cannot download Apple targets' std, so this uses
# Debian's rustc-web/cargo-web (same compiler, built from source) and its
# rust-web-src to build std for the target with -Zbuild-std.
#
#   scripts/check-macos.sh                 # both targets
#   TARGETS=aarch64-apple-darwin scripts/check-macos.sh
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=${TARGETS:-"aarch64-apple-darwin x86_64-apple-darwin"}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/macos-check}

# --- toolchain --------------------------------------------------------------
need=()
for pkg in rustc-web cargo-web rust-web-src; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null; then
    echo "check-macos: could not install ${need[*]}; apt-cache policy says:" >&2
    apt-cache policy "${need[@]}" >&2 || true
    exit 2
  fi
fi
# Debian's packages put their binaries in /usr/bin; rustup's shims usually
# come first on PATH, so name them explicitly.
DEB_CARGO=/usr/bin/cargo
DEB_RUSTC=/usr/bin/rustc
for bin in "$DEB_CARGO" "$DEB_RUSTC"; do
  [ -x "$bin" ] || { echo "check-macos: $bin missing after installing cargo-web/rustc-web" >&2; exit 2; }
done
sysroot=$("$DEB_RUSTC" --print sysroot)
[ -d "$sysroot/lib/rustlib/src/rust/library/std" ] \
  || { echo "check-macos: no std source under $sysroot/lib/rustlib/src (rust-web-src)" >&2; exit 2; }

# --- stand-in C toolchain ----------------------------------------------------
# Build scripts (zstd-sys, ...) compile C for the target. Nothing is linked
# by `cargo check`, so empty objects and archives are enough.
shim=$(mktemp -d /tmp/vigil-macos-shim.XXXXXX)
trap 'rm -rf "$shim"' EXIT
cat > "$shim/cc" <<'SH'
#!/bin/sh
# Stand-in C compiler: creates the requested output, compiles nothing.
out=""
prev=""
for a in "$@"; do
  [ "$prev" = "-o" ] && out=$a
  case $a in -o?*) out=${a#-o} ;; esac
  prev=$a
done
[ -n "$out" ] && : > "$out"
exit 0
SH
cat > "$shim/ar" <<'SH'
#!/bin/sh
# Stand-in archiver: `ar <ops> archive members...` -> an empty archive.
[ $# -ge 2 ] && [ ! -e "$2" ] && printf '!<arch>\n' > "$2"
exit 0
SH
chmod +x "$shim/cc" "$shim/ar"
for t in aarch64_apple_darwin x86_64_apple_darwin; do
  export "CC_$t=$shim/cc" "CXX_$t=$shim/cc" "AR_$t=$shim/ar"
done
# The cc crate asks for a deployment target; ES needs macOS 10.15+, vigil
# targets 13+.
export MACOSX_DEPLOYMENT_TARGET=${MACOSX_DEPLOYMENT_TARGET:-13.0}

# --- check -------------------------------------------------------------------
status=0
for target in $TARGETS; do
  echo "check-macos: cargo check --workspace --all-targets --target $target"
  start=$(date +%s)
  if RUSTC="$DEB_RUSTC" RUSTC_BOOTSTRAP=1 RUSTFLAGS="${RUSTFLAGS:-} -D warnings" \
      "$DEB_CARGO" check --locked --workspace --all-targets --target "$target" \
      -Zbuild-std=std,panic_abort; then
    echo "check-macos: $target ok ($(( $(date +%s) - start ))s)"
  else
    echo "check-macos: $target FAILED" >&2
    status=1
  fi
done
exit $status

#!/usr/bin/env bash
# Builds the Debian package with cargo-deb (metadata in agent/Cargo.toml,
# [package.metadata.deb]); prints the .deb path on stdout.
#
#   packaging/linux/build-deb.sh            # build
#   packaging/linux/build-deb.sh --verify   # build, install, check, remove
#
# --verify (root, CI): installs the package without starting it, checks
# that the unit validates with systemd-analyze, that the binary runs and
# the shipped config is valid, then removes the package again.
set -euo pipefail
cd "$(dirname "$0")/../.."
CARGO_DEB_VERSION=3.8.0

if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  echo "build-deb: installing cargo-deb $CARGO_DEB_VERSION" >&2
  cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION" >&2
fi
# --dbgsym: the release profile keeps debug info; it goes into a separate
# vigil-dbgsym .ddeb, so the package itself stays small. cargo-deb prints
# the path of each package it wrote, one per line.
deb=$(cargo deb --locked -p vigil --dbgsym | grep '/vigil_.*\.deb$' | tail -n1)
[ -f "$deb" ] || { echo "build-deb: cargo deb did not report a package" >&2; exit 1; }
echo "$deb"

[ "${1:-}" = "--verify" ] || exit 0
[ "$(id -u)" -eq 0 ] || { echo "build-deb: --verify needs root" >&2; exit 2; }
dpkg-deb --info "$deb" >&2
# Install without starting the service: deb-systemd-invoke asks
# policy-rc.d, and 101 means "not now".
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  own_policy=1
fi
# Purging deletes /var/lib/vigil (postrm): only purge what this run made.
purge=1
if [ -e /var/lib/vigil ] || dpkg -s vigil >/dev/null 2>&1; then
  purge=0
fi
cleanup() {
  if [ "$purge" = 1 ]; then dpkg -P vigil >/dev/null 2>&1 || true
  else dpkg -r vigil >/dev/null 2>&1 || true; fi
  if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi
}
trap cleanup EXIT
DEBIAN_FRONTEND=noninteractive dpkg -i "$deb" >&2 || { echo "build-deb: dpkg -i failed" >&2; exit 1; }
unit=/lib/systemd/system/vigil.service
[ -f "$unit" ] || unit=/usr/lib/systemd/system/vigil.service
systemd-analyze verify "$unit" >&2
/usr/bin/vigil --version >&2
/usr/bin/vigil run --config /etc/vigil/vigil.toml --print-config >/dev/null
echo "build-deb: $deb installs, its unit validates, its config loads" >&2

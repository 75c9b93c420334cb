#!/usr/bin/env bash
# Builds the signed, notarized installer package for macOS. Run on a Mac
# with Xcode command line tools, from the repository root:
#
#   VERSION=0.1.0 TEAM_ID=ABCDE12345 \
#   APP_IDENTITY="Developer ID Application: Example Corp (ABCDE12345)" \
#   INSTALLER_IDENTITY="Developer ID Installer: Example Corp (ABCDE12345)" \
#   PROVISIONING_PROFILE=~/vigil_Developer_ID.provisionprofile \
#   NOTARY_PROFILE=vigil-notary \
#   packaging/macos/build-pkg.sh
#
# Without the identities it builds an unsigned package (for local testing
# only: the ES client will then fail with ERR_NOT_ENTITLED, eslogger works).
# See packaging/macos/README.md for each step.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=packaging/macos

VERSION=${VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)}
TEAM_ID=${TEAM_ID:-}
APP_IDENTITY=${APP_IDENTITY:-}
INSTALLER_IDENTITY=${INSTALLER_IDENTITY:-}
PROVISIONING_PROFILE=${PROVISIONING_PROFILE:-}
NOTARY_PROFILE=${NOTARY_PROFILE:-}
OUT=${OUT:-target/pkg}

[ "$(uname -s)" = Darwin ] || { echo "build-pkg.sh: needs macOS (pkgbuild, codesign)" >&2; exit 2; }

# 1. A universal binary: one package for Apple silicon and Intel Macs.
cargo build --release --locked -p vigil --target aarch64-apple-darwin
cargo build --release --locked -p vigil --target x86_64-apple-darwin
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
lipo -create -output "$work/vigil" \
  target/aarch64-apple-darwin/release/vigil target/x86_64-apple-darwin/release/vigil

# 2. The payload, laid out as it lands on disk.
root=$work/root
app="$root/Library/Application Support/vigil/Vigil.app"
mkdir -p "$app/Contents/MacOS" "$root/Library/LaunchDaemons"
sed "s/@VERSION@/$VERSION/g" "$here/Info.plist" > "$app/Contents/Info.plist"
cp "$work/vigil" "$app/Contents/MacOS/vigil"
cp "$here/com.vigil.agent.plist" "$root/Library/LaunchDaemons/"
cp "$here/vigil.toml" "$root/Library/Application Support/vigil/vigil.toml.default"
if [ -n "$PROVISIONING_PROFILE" ]; then
  cp "$PROVISIONING_PROFILE" "$app/Contents/embedded.provisionprofile"
fi

# 3. Sign the app with the hardened runtime (required for notarization) and
#    the Endpoint Security entitlement.
if [ -n "$APP_IDENTITY" ]; then
  codesign --force --timestamp --options runtime \
    --entitlements "$here/vigil.entitlements" \
    --identifier com.vigil.agent \
    --sign "$APP_IDENTITY" "$app"
  codesign --verify --strict --verbose=2 "$app"
else
  echo "build-pkg.sh: APP_IDENTITY not set: the app is NOT signed" >&2
fi

# 4. Component package with the install scripts, then the product archive.
mkdir -p "$OUT"
pkgbuild --root "$root" \
  --identifier com.vigil.agent.pkg \
  --version "$VERSION" \
  --install-location / \
  --scripts "$here/scripts" \
  --ownership recommended \
  "$work/vigil-component.pkg"
pkg="$OUT/vigil-$VERSION.pkg"
sign=()
[ -n "$INSTALLER_IDENTITY" ] && sign=(--sign "$INSTALLER_IDENTITY" --timestamp)
# (the ${a[@]+...} form: macOS bash 3.2 calls an empty array unbound under set -u)
productbuild --package "$work/vigil-component.pkg" ${sign[@]+"${sign[@]}"} "$pkg"

# 5. Notarize and staple, so Gatekeeper accepts the package offline too.
if [ -n "$NOTARY_PROFILE" ] && [ -n "$INSTALLER_IDENTITY" ]; then
  xcrun notarytool submit "$pkg" --keychain-profile "$NOTARY_PROFILE" --wait
  xcrun stapler staple "$pkg"
  spctl --assess --type install --verbose "$pkg"
fi

# 6. The MDM profile for this team.
if [ -n "$TEAM_ID" ]; then
  sed "s/@TEAM_ID@/$TEAM_ID/g" "$here/vigil-pppc.mobileconfig" > "$OUT/vigil-pppc.mobileconfig"
fi
echo "build-pkg.sh: $pkg"

#!/bin/sh
# Removes vigil from a Mac: stops the daemon, deletes its files and the
# package receipt. Run as root. Keeps /var/db/vigil (history and alerts)
# unless --purge is given.
set -eu
LABEL=com.vigil.agent
[ "$(id -u)" -eq 0 ] || { echo "uninstall.sh: run as root" >&2; exit 2; }
/bin/launchctl bootout "system/$LABEL" 2>/dev/null || true
/bin/rm -f "/Library/LaunchDaemons/$LABEL.plist" /usr/local/bin/vigil
/bin/rm -rf "/Library/Application Support/vigil"
if [ "${1:-}" = "--purge" ]; then
  /bin/rm -rf /var/db/vigil /var/log/vigil.log
fi
/usr/sbin/pkgutil --forget com.vigil.agent.pkg >/dev/null 2>&1 || true
echo "vigil removed"

#!/usr/bin/env bash
# Run in a second terminal while `scripts/run.sh` is running: performs a
# harmless version of the seed attack chain, a process named `installer`
# running `sh -c "curl http://127.0.0.1:<port>/"` against a local listener,
# and the agent raises the installer-network alert.
set -euo pipefail
work=$(mktemp -d /tmp/vigil-demo.XXXXXX)
trap 'kill "$listener" 2>/dev/null || true; rm -rf "$work"' EXIT

# A local listener that holds each connection for a second, so the socket
# poller sees it (see README: short connections can be missed).
python3 - "$work/port" <<'PY' &
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(8)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
while True:
    c, _ = s.accept(); c.recv(4096); time.sleep(1.0)
    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n"); c.close()
PY
listener=$!
for _ in $(seq 50); do [ -s "$work/port" ] && break; sleep 0.1; done
port=$(cat "$work/port")

# A copy of bash named `installer` plays the package installer.
cp "$(command -v bash)" "$work/installer"
echo "demo: installer -> sh -> curl http://127.0.0.1:$port/"
# The trailing `true`s keep each shell from exec'ing its last command, so the
# tree is installer -> sh -> curl as three processes.
"$work/installer" -c "sh -c 'curl -s http://127.0.0.1:$port/; true'; true"
echo "demo: done; the agent should have printed an alert for rule macos-installer-child-network"

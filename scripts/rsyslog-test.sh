#!/usr/bin/env bash
# Runs a private rsyslog (Debian's rsyslogd) as a test receiver for vigil's
# syslog sink: RFC 5424 over plain TCP on 127.0.0.1:TCP_PORT and over TLS on
# 127.0.0.1:TLS_PORT, each written to its own file in DIR. It uses its own
# config, work directory and pid file in DIR, loads no system inputs
# (no /dev/log, no klog) and never touches the system rsyslog.
#
#   scripts/rsyslog-test.sh DIR TCP_PORT TLS_PORT
#
# Creates DIR/ca.pem (the CA to give the sink as ca_file), a server
# certificate for 127.0.0.1/localhost, DIR/rsyslog.conf, then execs
# rsyslogd in the foreground (stop it with SIGTERM). Received messages go to
# DIR/tcp.log and DIR/tls.log, one line each: FACILITY.SEVERITY, APP-NAME,
# MSGID, STRUCTURED-DATA and MSG separated by tabs.
set -euo pipefail

if [ $# -ne 3 ]; then
  echo "usage: $0 DIR TCP_PORT TLS_PORT" >&2
  exit 2
fi
dir=$(cd "$1" && pwd)
tcp_port=$2
tls_port=$3

RSYSLOGD=${RSYSLOGD:-/usr/sbin/rsyslogd}
if [ ! -x "$RSYSLOGD" ]; then
  echo "rsyslog-test: $RSYSLOGD not found: run scripts/setup.sh (installs rsyslog and rsyslog-gnutls)" >&2
  exit 3
fi
if [ ! -e /usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so ] && ! ls /usr/lib/*/rsyslog/lmnsd_gtls.so >/dev/null 2>&1; then
  echo "rsyslog-test: rsyslog's TLS driver (rsyslog-gnutls) is missing: run scripts/setup.sh" >&2
  exit 3
fi

mkdir -p "$dir/work"
"$(dirname "$0")/test-certs.sh" "$dir"
cd "$dir"

cat > rsyslog.conf <<EOF
global(
  workDirectory="$dir/work"
  maxMessageSize="1m"
  defaultNetstreamDriverCAFile="$dir/ca.pem"
  defaultNetstreamDriverCertFile="$dir/server.pem"
  defaultNetstreamDriverKeyFile="$dir/server.key"
)
module(load="imtcp" maxSessions="20")
template(name="fields" type="string" string="%syslogfacility-text%.%syslogseverity-text%\t%app-name%\t%msgid%\t%structured-data%\t%msg%\n")
ruleset(name="plain") {
  action(type="omfile" file="$dir/tcp.log" template="fields")
}
ruleset(name="tls") {
  action(type="omfile" file="$dir/tls.log" template="fields")
}
input(type="imtcp" address="127.0.0.1" port="$tcp_port" ruleset="plain")
input(type="imtcp" address="127.0.0.1" port="$tls_port" ruleset="tls"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
EOF

exec "$RSYSLOGD" -n -f "$dir/rsyslog.conf" -i "$dir/rsyslogd.pid"

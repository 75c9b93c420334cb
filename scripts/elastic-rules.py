#!/usr/bin/env python3
"""Extract Elastic's public macOS EQL rules into vigil rule files.

    scripts/elastic-rules.py --out DIR [--detection-rules GITDIR]
                             [--protections-artifacts GITDIR]

Reads two git mirrors (bare repositories, no work tree needed; the files of
HEAD are read with `git ls-tree` and `git cat-file`):

  * elastic/detection-rules (SIEM rules): every TOML under rules/macos/, and
    the TOMLs under rules/cross-platform/ and rules_building_block/ whose
    `rule.tags` contain "OS: macOS". Only `rule.language == "eql"` rules are
    converted; the others (kuery, esql, lucene, machine learning) are counted
    as skipped, with their language as the reason.
  * elastic/protections-artifacts (Elastic Defend behaviour rules): every TOML
    under behavior/rules/macos/, and those under behavior/rules/cross-platform/
    whose `rule.os_list` contains "macos". These are all EQL.

Each EQL rule becomes DIR/<repo>/<rule id>.rhai, one `rule(#{...})` call with
the id, name, description, severity, risk, MITRE ids (techniques,
sub-techniques, then the tactic, per `threat` entry), tags and the query
verbatim. The behaviour rules carry no severity or risk score: they get
"medium" and 47 (vigil's default risk for medium), said in a comment in each
file. Tags are the rule's own (detection-rules) or "OS: ..." from `os_list`
and "Tactic: ..." from `threat` (protections-artifacts), plus
"Source: elastic/<repo>". DIR/summary.json has the counts per repository
(TOML files selected, EQL rules written, sequences, skipped with reasons,
and failures: TOML that did not parse, with tomllib's message and position).
Old .rhai files in DIR/<repo>/ are removed first.

The rules are Elastic's, under the Elastic License 2.0: they are for local
evaluation only and must NOT be shipped in the vigil binary or its packages.
"""

import argparse
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

DEFAULT_DETECTION_RULES = "/work/.mirror/elastic+detection-rules/repo"
DEFAULT_PROTECTIONS_ARTIFACTS = "/work/.mirror/elastic+protections-artifacts/repo"

MACOS_TAG = "OS: macOS"
SEVERITIES = ("low", "medium", "high", "critical")
DEFAULT_SEVERITY = "medium"
DEFAULT_RISK = 47  # vigil's (and Elastic's) default risk for "medium"
OS_TAGS = {"macos": "OS: macOS", "linux": "OS: Linux", "windows": "OS: Windows"}
LICENSE_NOTE = "Elastic License 2.0"
PA_SEVERITY_COMMENT = (
    "// Severity: protections-artifacts rules carry no severity or risk score;\n"
    f'// "{DEFAULT_SEVERITY}" and {DEFAULT_RISK} are this script\'s defaults, not Elastic\'s.\n'
)

# A query is a sequence if, after whitespace and EQL comments, it starts so.
LEADING_NOISE = re.compile(r"(?:\s+|//[^\n]*(?:\n|$)|/\*.*?\*/)*", re.S)
SEQUENCE_WORD = re.compile(r"sequence\b")
UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]")


class Skip(Exception):
    """A selected rule that is deliberately not converted (not EQL)."""


class RuleProblem(Exception):
    """A selected rule that could not be converted."""


# --- reading a bare git repository -------------------------------------------


class GitTree:
    """The files of HEAD in a git directory, read through one
    `git cat-file --batch` process."""

    def __init__(self, git_dir):
        self.git_dir = str(git_dir)
        self.commit = self._git("rev-parse", "HEAD").decode().strip()
        self._cat = subprocess.Popen(
            ["git", "--git-dir", self.git_dir, "cat-file", "--batch"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def _git(self, *args):
        return subprocess.run(
            ["git", "--git-dir", self.git_dir, *args], check=True, capture_output=True
        ).stdout

    def files(self, prefix):
        """(path, blob id) of every file under prefix, sorted by path."""
        out = self._git("ls-tree", "-r", "-z", self.commit, "--", prefix)
        entries = []
        for record in out.split(b"\0"):
            if not record:
                continue
            meta, path = record.split(b"\t", 1)
            _mode, kind, blob = meta.split()
            if kind == b"blob":
                entries.append((path.decode(), blob.decode()))
        return sorted(entries)

    def read(self, blob):
        self._cat.stdin.write(blob.encode() + b"\n")
        self._cat.stdin.flush()
        header = self._cat.stdout.readline().split()
        if len(header) != 3:
            raise RuntimeError(f"git cat-file: unexpected answer {header!r} for {blob}")
        size = int(header[2])
        data = self._cat.stdout.read(size)
        self._cat.stdout.read(1)  # the newline after the contents
        return data

    def close(self):
        self._cat.stdin.close()
        self._cat.wait()

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.close()


# --- selection ----------------------------------------------------------------


def has_macos_tag(doc):
    return MACOS_TAG in doc.get("rule", {}).get("tags", [])


def has_macos_os(doc):
    return "macos" in doc.get("rule", {}).get("os_list", [])


def select_all(_doc):
    return True


def sources(detection_rules, protections_artifacts):
    """What to read from each repository: (name, short name, git dir,
    [(folder, predicate on the parsed TOML)], converter)."""
    return [
        (
            "elastic/detection-rules",
            "detection-rules",
            detection_rules,
            [
                ("rules/macos/", select_all),
                ("rules/cross-platform/", has_macos_tag),
                ("rules_building_block/", has_macos_tag),
            ],
            convert_detection_rule,
        ),
        (
            "elastic/protections-artifacts",
            "protections-artifacts",
            protections_artifacts,
            [
                ("behavior/rules/macos/", select_all),
                ("behavior/rules/cross-platform/", has_macos_os),
            ],
            convert_behavior_rule,
        ),
    ]


# --- conversion -----------------------------------------------------------------


def required_text(table, key):
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RuleProblem(f"`rule.{key}` missing or not a string")
    return value


def mitre_ids(threats):
    """Technique, sub-technique and tactic ids of `threat` entries, in order,
    without repeats."""
    ids = []
    for threat in threats or []:
        for technique in threat.get("technique", []):
            ids.append(technique.get("id"))
            ids.extend(sub.get("id") for sub in technique.get("subtechnique", []))
        ids.append(threat.get("tactic", {}).get("id"))
    return list(dict.fromkeys(i for i in ids if isinstance(i, str) and i))


def tactic_tags(threats):
    names = (t.get("tactic", {}).get("name") for t in threats or [])
    return list(dict.fromkeys(f"Tactic: {n}" for n in names if n))


def convert_detection_rule(doc):
    rule = doc.get("rule", {})
    language = rule.get("language") or rule.get("type") or "unknown"
    if language != "eql":
        raise Skip(language)
    severity = rule.get("severity")
    if severity not in SEVERITIES:
        raise RuleProblem(f"severity {severity!r} is not one of {', '.join(SEVERITIES)}")
    risk = rule.get("risk_score")
    if not isinstance(risk, int) or isinstance(risk, bool) or not 0 <= risk <= 100:
        raise RuleProblem(f"risk_score {risk!r} is not a whole number from 0 to 100")
    return {
        "id": required_text(rule, "rule_id"),
        "name": required_text(rule, "name").strip(),
        "description": required_text(rule, "description").strip(),
        "severity": severity,
        "risk": risk,
        "mitre": mitre_ids(rule.get("threat")),
        "tags": [t for t in rule.get("tags", []) if isinstance(t, str)],
        "query": required_text(rule, "query"),
        "license": rule.get("license"),
        "comment": "",
    }


def convert_behavior_rule(doc):
    rule = doc.get("rule", {})
    language = rule.get("language", "eql")
    if language != "eql":
        raise Skip(language)
    # `threat` is a top-level array of tables in these files, not rule.threat.
    threats = doc.get("threat", rule.get("threat"))
    os_tags = [OS_TAGS.get(os, f"OS: {os}") for os in rule.get("os_list", [])]
    return {
        "id": required_text(rule, "id"),
        "name": required_text(rule, "name").strip(),
        "description": required_text(rule, "description").strip(),
        "severity": DEFAULT_SEVERITY,
        "risk": DEFAULT_RISK,
        "mitre": mitre_ids(threats),
        "tags": os_tags + tactic_tags(threats),
        "query": required_text(rule, "query"),
        "license": rule.get("license"),
        "comment": PA_SEVERITY_COMMENT,
    }


def is_sequence(query):
    rest = query[LEADING_NOISE.match(query).end():]
    return SEQUENCE_WORD.match(rest) is not None


# --- rhai output ---------------------------------------------------------------


def rhai_string(text):
    """A double-quoted rhai string literal. rhai (1.27) knows the escapes
    \\\\ \\" \\n \\t \\r \\xHH \\uHHHH \\UHHHHHHHH (no \\0, and \\' only inside
    '...'); other control characters become \\uHHHH."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif code < 0x20 or 0x7F <= code <= 0x9F or ch in "\u2028\u2029\ufeff":
            out.append(f"\\u{code:04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def rhai_list(items):
    return "[" + ", ".join(rhai_string(i) for i in items) + "]"


def render_rule(repo, path, rule, extra_tags):
    tags = list(dict.fromkeys(rule["tags"] + extra_tags))
    return (
        f"// Source: {repo} {path} ({LICENSE_NOTE})\n"
        f"{rule['comment']}"
        "rule(#{\n"
        f"    id: {rhai_string(rule['id'])},\n"
        f"    name: {rhai_string(rule['name'])},\n"
        f"    description: {rhai_string(rule['description'])},\n"
        f"    severity: {rhai_string(rule['severity'])},\n"
        f"    risk: {rule['risk']},\n"
        f"    mitre: {rhai_list(rule['mitre'])},\n"
        f"    tags: {rhai_list(tags)},\n"
        f"    query: {rhai_string(rule['query'])},\n"
        "});\n"
    )


def file_stem(rule_id):
    stem = UNSAFE_ID_CHARS.sub("_", rule_id).lstrip(".")
    if not stem:
        raise RuleProblem(f"rule id {rule_id!r} gives no usable file name")
    return stem


# --- one repository --------------------------------------------------------------


def parse_toml(tree, blob):
    return tomllib.loads(tree.read(blob).decode("utf-8"))


def extract_repo(repo, short, git_dir, folders, convert, out_dir):
    """Write one repository's rules; returns its summary."""
    target = out_dir / short
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob("*.rhai"):
        old.unlink()

    summary = {
        "repository": repo,
        "git_dir": str(git_dir),
        "commit": None,
        "folders": {},
        "selected": 0,
        "eql_written": 0,
        "sequences": 0,
        "skipped": {},
        "skipped_files": {},
        "failures": [],
        "other_licenses": [],
        "rules": {},
    }
    seen_ids = {}
    with GitTree(git_dir) as tree:
        summary["commit"] = tree.commit
        for folder, wanted in folders:
            counts = {"toml_files": 0, "selected": 0, "eql_written": 0, "sequences": 0}
            summary["folders"][folder] = counts
            for path, blob in tree.files(folder):
                if not path.endswith(".toml"):
                    continue
                counts["toml_files"] += 1
                try:
                    doc = parse_toml(tree, blob)
                except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
                    # Whether it would have been selected is unknown: count it.
                    counts["selected"] += 1
                    # tomllib's message ends with "(at line L, column C)".
                    summary["failures"].append({"file": path, "error": str(err)})
                    continue
                if not wanted(doc):
                    continue
                counts["selected"] += 1
                try:
                    rule = convert(doc)
                    stem = file_stem(rule["id"])
                    if rule["id"] in seen_ids:
                        raise RuleProblem(f"duplicate rule id {rule['id']} (first in {seen_ids[rule['id']]})")
                    if stem in summary["rules"].values():
                        raise RuleProblem(f"file name {stem}.rhai already written for another id")
                except Skip as skip:
                    reason = str(skip)
                    summary["skipped"][reason] = summary["skipped"].get(reason, 0) + 1
                    summary["skipped_files"].setdefault(reason, []).append(path)
                    continue
                except RuleProblem as problem:
                    summary["failures"].append({"file": path, "error": str(problem)})
                    continue
                seen_ids[rule["id"]] = path
                text = render_rule(repo, path, rule, [f"Source: {repo}"])
                (target / f"{stem}.rhai").write_text(text, encoding="utf-8", newline="\n")
                summary["rules"][path] = stem
                counts["eql_written"] += 1
                if is_sequence(rule["query"]):
                    counts["sequences"] += 1
                if rule["license"] != "Elastic License v2":
                    summary["other_licenses"].append({"file": path, "license": rule["license"]})
    for key in ("selected", "eql_written", "sequences"):
        summary[key] = sum(c[key] for c in summary["folders"].values())
    return summary


def one_line(short, s):
    skipped = sum(s["skipped"].values())
    reasons = ", ".join(f"{r} {n}" for r, n in sorted(s["skipped"].items()))
    return (
        f"{short} @ {s['commit'][:12]}: {s['selected']} TOML selected, "
        f"{s['eql_written']} EQL rules written ({s['sequences']} sequences), "
        f"{skipped} skipped" + (f" ({reasons})" if reasons else "")
        + f", {len(s['failures'])} failures"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Extract Elastic's macOS EQL rules into vigil rule files "
        "(Elastic License 2.0: never ship them in the binary)."
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--detection-rules", default=DEFAULT_DETECTION_RULES, type=Path,
                        help="git dir of elastic/detection-rules (default: %(default)s)")
    parser.add_argument("--protections-artifacts", default=DEFAULT_PROTECTIONS_ARTIFACTS,
                        type=Path, help="git dir of elastic/protections-artifacts (default: %(default)s)")
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    summaries = {}
    for repo, short, git_dir, folders, convert in sources(
        args.detection_rules, args.protections_artifacts
    ):
        try:
            summaries[short] = extract_repo(repo, short, git_dir, folders, convert, args.out)
        except subprocess.CalledProcessError as err:
            print(f"{short}: cannot read {git_dir}: {err.stderr.decode().strip()}", file=sys.stderr)
            return 2
        print(one_line(short, summaries[short]))
        for failure in summaries[short]["failures"]:
            print(f"  failed: {failure['file']}: {failure['error']}", file=sys.stderr)

    ids = {}
    for short, s in summaries.items():
        for path in s["rules"]:
            ids.setdefault(s["rules"][path], []).append(f"{short}:{path}")
    collisions = {i: where for i, where in ids.items() if len(where) > 1}
    total = {
        "eql_written": sum(s["eql_written"] for s in summaries.values()),
        "sequences": sum(s["sequences"] for s in summaries.values()),
        "cross_repository_id_collisions": collisions,
    }
    (args.out / "summary.json").write_text(
        json.dumps({"license": LICENSE_NOTE, "total": total, "repositories": summaries},
                   indent=2, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    print(f"total: {total['eql_written']} EQL rules ({total['sequences']} sequences) in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

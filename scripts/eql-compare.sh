#!/usr/bin/env bash
# Same alerts? Runs `vigil replay` and Elastic's reference EQL engine (python
# eql with exact translations of the shipped rules: scripts/eql_reference.py)
# on the same events, and prints per-rule alert counts of both and "same
# alerts: yes" or the alerts only one of them raised.
#   scripts/eql-compare.sh            the translations against the rules vigil
#                                     loads, every rule fixture (each its own
#                                     stream), random streams that hit every
#                                     rule (eql_reference.py --generate), and
#                                     synthetic streams (vigil synthetic)
#   scripts/eql-compare.sh FILE...    these ECS NDJSON files, each its own stream
# Environment: VIGIL_BIN (default: target/release/vigil, built if missing),
# N (synthetic events per stream, 200000), PLANT_EVERY (10000),
# SEEDS (synthetic and random seeds, "1 2 3"), RANDOM_N (20000).
# Exit status: 0 same alerts everywhere, 1 a difference, 3 python eql missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ref=scripts/eql_reference.py

if ! python3 -c 'import eql' >/dev/null 2>&1; then
  echo "eql-compare: skipped: python eql not installed (scripts/setup.sh installs it)" >&2
  exit 3
fi
vigil=${VIGIL_BIN:-target/release/vigil}
if [ ! -x "$vigil" ]; then
  cargo build --release --locked -p vigil >/dev/null
fi
export VIGIL_BIN=$vigil

if [ $# -gt 0 ]; then
  exec python3 "$ref" --compare --per-file --vigil "$vigil" "$@"
fi

N=${N:-200000}
PLANT_EVERY=${PLANT_EVERY:-10000}
SEEDS=${SEEDS:-1 2 3}
RANDOM_N=${RANDOM_N:-20000}
work=$(mktemp -d /tmp/eql-compare.XXXXXX)
trap 'rm -rf "$work"' EXIT
status=0

python3 "$ref" --check-rules --vigil "$vigil" || status=1

echo
echo "== rule fixtures"
python3 "$ref" --compare --brief --per-file --vigil "$vigil" dsl/rules/fixtures/*/*/events.ndjson || status=1

for seed in $SEEDS; do
  echo
  echo "== random stream: eql_reference.py --generate $RANDOM_N --seed $seed"
  python3 "$ref" --generate "$RANDOM_N" --seed "$seed" > "$work/random-$seed.ndjson"
  python3 "$ref" --compare --vigil "$vigil" "$work/random-$seed.ndjson" || status=1
done

for seed in $SEEDS; do
  echo
  echo "== synthetic stream: vigil synthetic --events $N --plant-every $PLANT_EVERY --plant all --seed $seed"
  "$vigil" synthetic --events "$N" --plant-every "$PLANT_EVERY" --plant all --seed "$seed" > "$work/synthetic-$seed.ndjson"
  python3 "$ref" --compare --vigil "$vigil" "$work/synthetic-$seed.ndjson" || status=1
  rm -f "$work/synthetic-$seed.ndjson"
done

echo
if [ "$status" = 0 ]; then
  echo "eql-compare: same alerts: yes (every stream)"
else
  echo "eql-compare: same alerts: NO (see above)"
fi
exit "$status"

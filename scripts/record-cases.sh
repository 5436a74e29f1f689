#!/usr/bin/env bash
# Records conformance cases from real Flink 2.3 through the oracle of the
# shared checkout (../shared/oracle/flink, or $FERROCEP_ORACLE_DIR).
#
#   scripts/record-cases.sh stage-within [COUNT] [SEED]
#       random cases with per-stage `within` (PREVIOUS_AND_CURRENT) on 60 %
#       of the later stages, into conformance/cases/stage-within/
#   scripts/record-cases.sh rerun CASE.json...
#       reruns hand-written cases through Flink and fills in `expected`
#       (in place; the `expected` already there is ignored)
#
# Each oracle run takes ~4 s (JVM and mini cluster). Never edit `expected`
# by hand: rerun this.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
shared="${FERROCEP_SHARED_DIR:-$here/../shared}"
oracle="${FERROCEP_ORACLE_DIR:-$shared/oracle/flink}"
gen="$shared/conformance/gen_random.py"
[ -x "$oracle/run.sh" ] || { echo "error: no oracle at $oracle (set FERROCEP_ORACLE_DIR)" >&2; exit 2; }

case "${1:-}" in
  stage-within)
    count="${2:-40}"
    seed="${3:-16}"
    out="$here/conformance/cases/stage-within"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    python3 "$gen" generate --out "$tmp" --seed "$seed" --count "$count" \
      --jobs "${JOBS:-2}" --stage-within 0.6 --oracle "$oracle/run.sh" --log "$tmp/log.jsonl"
    mkdir -p "$out"
    for f in "$tmp"/rand-*.json; do
      cp "$f" "$out/sw-s$seed-$(basename "$f")"
    done
    echo "recorded $(ls "$tmp"/rand-*.json | wc -l) cases into $out"
    ;;
  rerun)
    shift
    for f in "$@"; do
      python3 "$oracle/cases.py" conform "$f" > "$f.tmp"
      mv "$f.tmp" "$f"
      echo "recorded $f"
    done
    ;;
  *)
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac

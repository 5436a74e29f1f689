#!/usr/bin/env bash
# Records conformance cases from real Flink 2.3 through the oracle of the
# shared checkout (../shared/oracle/flink, or $FERROCEP_ORACLE_DIR).
#
#   scripts/record-cases.sh stage-within [COUNT] [SEED]
#       random cases with per-stage `within` (PREVIOUS_AND_CURRENT) on 60 %
#       of the later stages, into conformance/cases/stage-within/
#   scripts/record-cases.sh order-by [SEED]
#       the `time.order_by` cases (scripts/order-by-cases.py) into
#       crates/ferrocep/tests/cases/order-by/, through a copy of the oracle
#       patched with scripts/oracle/order-by.patch: the stock oracle has no
#       `order_by`; the patch gives Flink the fields as an EventComparator
#       (CEP.pattern(input, pattern, comparator)), in its own class cache
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
  order-by)
    seed="${2:-16}"
    out="$here/crates/ferrocep/tests/cases/order-by"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    cp -r "$oracle" "$tmp/oracle"
    (cd "$tmp/oracle" && patch -s -p1 < "$here/scripts/oracle/order-by.patch")
    # The jars of the stock oracle's cache, if there; classes of our own.
    cache="${CEP_ORACLE_CACHE:-$HOME/.cache/cep-oracle}"
    mkdir -p "$tmp/cache"
    for d in wheels flink-2.3.0; do
      [ -e "$cache/$d" ] && ln -s "$cache/$d" "$tmp/cache/$d"
    done
    export CEP_ORACLE_CACHE="$tmp/cache"
    rm -rf "$out" && mkdir -p "$out"
    python3 "$here/scripts/order-by-cases.py" "$out" "$seed"
    for f in "$out"/*.json; do
      python3 "$tmp/oracle/cases.py" conform "$f" > "$f.tmp"
      mv "$f.tmp" "$f"
      echo "recorded $f"
    done
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
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac

#!/usr/bin/env bash
# Memory of ferrocep: bytes per pending order, and RSS over a long steady stream.
#
#   bench/memory.sh                       # 1M pending orders; 20M-event steady run
#   bench/memory.sh --orders 10000000     # the full size (10M pending orders)
#   bench/memory.sh --steady-events 0     # skip the steady run
#
# 1. pending (crates/ferrocep-bench/src/bin/pending.rs): N creates with distinct order_ids,
#    in event time, never paid, through Spec::ingest_with -> CepOperator (the path of
#    `ferrocep match`), the watermark after every event but never reaching the 10m window.
#    Bytes per pending order = (VmRSS after - VmRSS before - bytes of the stored event text) / N.
#    `pending --events-only` holds the N events alone, as the engine stores them (handle and
#    text allocation): "the stored event itself"; the bytes beyond it are reported too.
# 2. The same N create lines through the `ferrocep match --end-of-input stop` binary under
#    /usr/bin/time -v: (max RSS - max RSS on an empty input - line bytes) / N.
# 3. steady (bench/lib/steady.py): gen_orders.py --events M --seed 1 piped into
#    `ferrocep match` with the 10m order-timeout spec; VmRSS sampled every second.
# Options: --orders N (default 1000000), --steady-events M (default 20000000; 0 skips it).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ORACLE="${FERROCEP_ORACLE_DIR:-$ROOT/../shared/oracle/flink}"
SPEC="$ORACLE/order-timeout.json"
orders=1000000
steady=20000000
while [ $# -gt 0 ]; do
    case "$1" in
        --orders) orders="$2"; shift 2 ;;
        --steady-events) steady="$2"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "memory.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
step() { printf '== %s\n' "$*" >&2; }

step "cargo build --release -p ferrocep -p ferrocep-bench"
(cd "$ROOT" && cargo build --release -p ferrocep -p ferrocep-bench)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
WORK="$ROOT/target/bench/memory"
mkdir -p "$WORK"

step "pending: $orders stored events alone (the stored event itself)"
"$BIN/pending" --orders "$orders" --spec "$SPEC" --events-only | tee "$WORK/events-only.txt"
stored="$(sed -n 's/^stored_event_bytes_per_order: //p' "$WORK/events-only.txt")"

step "pending: $orders pending orders, in process"
"$BIN/pending" --orders "$orders" --spec "$SPEC" | tee "$WORK/pending.txt"
awk -v s="$stored" '/^bytes_per_order_total:/ {printf "in process: %.0f B/order beyond the stored event (%.0f B)\n", $2 - s, s}' "$WORK/pending.txt"

step "pending: the same $orders creates through ferrocep match --end-of-input stop"
lines="$WORK/creates-$orders.jsonl"
[ -s "$lines" ] || "$BIN/pending" --orders "$orders" --write "$lines"
: > "$WORK/empty.jsonl"
/usr/bin/time -v -o "$WORK/empty.time" "$BIN/ferrocep" match --spec "$SPEC" --input "$WORK/empty.jsonl" --end-of-input stop > /dev/null
/usr/bin/time -v -o "$WORK/pending.time" "$BIN/ferrocep" match --spec "$SPEC" --input "$lines" --end-of-input stop > /dev/null
python3 - "$WORK/empty.time" "$WORK/pending.time" "$lines" "$orders" "$stored" <<'PY'
import os, re, sys
def rss(p): return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(p).read()).group(1)) * 1024
def wall(p):
    t = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", open(p).read()).group(1)
    s = 0.0
    for part in t.split(":"): s = s * 60 + float(part)
    return s
base, full, n = rss(sys.argv[1]), rss(sys.argv[2]), int(sys.argv[4])
text = os.path.getsize(sys.argv[3]) - n  # without the newlines
print(f"cli: max RSS {full / 2**20:.1f} MiB (empty input {base / 2**20:.1f} MiB), {wall(sys.argv[2]):.2f} s; "
      f"event text {text / n:.1f} B/order; {(full - base) / n:.0f} B/order, "
      f"{(full - base - text) / n:.0f} B/order beyond the event text, "
      f"{(full - base) / n - float(sys.argv[5]):.0f} B/order beyond the stored event "
      f"({float(sys.argv[5]):.0f} B)")
PY

if [ "$steady" -gt 0 ]; then
    step "steady: gen_orders.py --events $steady --seed 1 | ferrocep match (10m window)"
    python3 "$ROOT/bench/lib/steady.py" --ferrocep "$BIN/ferrocep" --spec "$SPEC" \
        --gen "$ORACLE/gen_orders.py" --events "$steady" --csv "$WORK/steady-rss.csv"
fi

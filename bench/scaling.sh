#!/usr/bin/env bash
# Multi-core scaling of `ferrocep match --workers N`, against N independent processes.
#
#   bench/scaling.sh                      # 5M events, 2 workers (or nproc), 5 interleaved repeats
#   bench/scaling.sh --events 1000000 --repeat 3 --record
#
# For the workload (gen_orders.py --events N --seed 1, cached in target/bench/data/ as
# compare.sh does) and each repeat, one after the other, under /usr/bin/time -v:
#   w1      ferrocep match --workers 1 --spec order-timeout.json --input FILE
#   wN      ferrocep match --workers N ...
#   split   N independent `ferrocep match --workers 1` processes at once, each on the lines of
#           its share of the keys (the input split by order_id beforehand): key-partitioned
#           matching with no shared reading, parsing or hand-over at all. On a machine whose
#           cores slow each other down (shared caches, memory bandwidth, a busy host), this,
#           not N x w1, is the reference for N workers (not a bound: N processes also pay
#           for N address spaces, and since d07d8e9 two workers beat it on this VM).
# and bench/lib/scaling_report.py prints medians of wall and CPU time and the ratios
# w1 / wN (the speed-up), w1 / split (the reference's) and split / wN (the workers' speed
# against the reference's). It checks that the outputs of wN and of the split runs together equal
# w1's as multisets (sorted lines). Exit status 1 if a check fails.
#
# Options:
#   --events N      workload size (default 5000000)
#   --workers N     workers (default: nproc)
#   --repeat R      interleaved repeats (default 5)
#   --record [DIR]  also write the run to DIR (default bench/runs/<date>-<machine>-scaling/):
#                   summary.md (command, machine, versions, table) and raw.csv
#   --machine NAME  machine name for --record (default: hostname)
# Environment: FERROCEP_ORACLE_DIR (default ../shared/oracle/flink). Needs Python 3 and GNU time.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$ROOT/bench/lib/common.sh"
SPEC="$ORACLE/order-timeout.json"

events=5000000
workers="$(nproc)"
repeat=5
while [ $# -gt 0 ]; do
    case "$1" in
        --events) events="$2"; shift 2 ;;
        --workers) workers="$2"; shift 2 ;;
        --repeat) repeat="$2"; shift 2 ;;
        *) common_option "$@" || { echo "scaling.sh: unknown argument '$1' (see --help)" >&2; exit 2; }; shift "$SHIFT_BY" ;;
    esac
done
[ "$workers" -ge 2 ] || { echo "scaling.sh: --workers must be at least 2" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "scaling.sh: /usr/bin/time (GNU time) is required (apt-get install time)" >&2; exit 2; }

step "cargo build --release -p ferrocep"
(cd "$ROOT" && cargo build --release -p ferrocep)
FERROCEP="${CARGO_TARGET_DIR:-$ROOT/target}/release/ferrocep"
DATA="$ROOT/target/bench/data"
RUN="$ROOT/target/bench/scaling-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$DATA" "$RUN"
step "results in $RUN"
{
    machine_lines "$machine"
    echo "rustc: $(rustc --version)"
    echo "command: bench/scaling.sh${orig_args:+ $orig_args}"
} > "$RUN/machine.txt"

input="$(workload "$events")"
parts=()
for i in $(seq 0 $((workers - 1))); do parts+=("$DATA/orders-$events-seed1.part$i-of-$workers.jsonl"); done
if [ ! -s "${parts[0]}" ] || [ "$input" -nt "${parts[0]}" ]; then
    step "split $input by order_id into $workers parts"
    python3 - "$input" "$workers" "${parts[@]}" <<'PY'
import json, sys, zlib
src, n, outs = sys.argv[1], int(sys.argv[2]), [open(p, "w") for p in sys.argv[3:]]
with open(src) as f:
    for line in f:
        key = json.loads(line).get("order_id")
        outs[zlib.crc32(json.dumps(key).encode()) % n].write(line)
for o in outs:
    o.close()
PY
fi

# The split run: the N parts at once, one `--workers 1` process each.
{
    echo 'pids=()'
    i=0
    for p in "${parts[@]}"; do
        printf '%q match --workers 1 --spec %q --input %q > %q &\n' "$FERROCEP" "$SPEC" "$p" "$RUN/split-$i.out"
        echo 'pids+=($!)'
        i=$((i + 1))
    done
    echo 'status=0; for p in "${pids[@]}"; do wait "$p" || status=1; done; exit "$status"'
} > "$RUN/split.sh"

for r in $(seq 1 "$repeat"); do
    step "[run $r/$repeat] --workers 1"
    timed "w1-$r" "$FERROCEP" match --workers 1 --spec "$SPEC" --input "$input" > "$RUN/w1.out"
    step "[run $r/$repeat] --workers $workers"
    timed "wN-$r" "$FERROCEP" match --workers "$workers" --spec "$SPEC" --input "$input" > "$RUN/wN.out"
    step "[run $r/$repeat] $workers split processes at once"
    timed "split-$r" bash "$RUN/split.sh"
done

step "cross-check: sorted outputs"
sort -S 1G "$RUN/w1.out" | md5sum | cut -d' ' -f1 > "$RUN/w1.md5"
sort -S 1G "$RUN/wN.out" | md5sum | cut -d' ' -f1 > "$RUN/wN.md5"
cat "$RUN"/split-*.out | sort -S 1G | md5sum | cut -d' ' -f1 > "$RUN/split.md5"
wc -l < "$RUN/w1.out" > "$RUN/w1.lines"

step "report"
status=0
python3 "$ROOT/bench/lib/scaling_report.py" "$RUN" "$events" "$workers" | tee "$RUN/summary.md" || status=$?
rm -f "$RUN"/*.out

if [ -n "$record" ]; then
    [ "$record" = auto ] && record="$ROOT/bench/runs/$(date +%Y-%m-%d)-$machine-scaling"
    # One summary and one CSV per recorded run; the raw per-process files stay in $RUN.
    mkdir -p "$record"
    python3 "$ROOT/bench/lib/scaling_report.py" --readme "$RUN" > "$record/summary.md"
    cp "$RUN"/raw.csv "$record/"
    step "recorded in $record"
fi
exit "$status"

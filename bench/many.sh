#!/usr/bin/env bash
# K patterns over one stream: one `ferrocep match` with K specs against K separate runs.
#
#   bench/many.sh                         # 200k events, 100 specs, 1 worker (~2 minutes)
#   bench/many.sh --specs 10 --events 50000
#   bench/many.sh --threshold --record    # overlapping specs; write bench/runs/<date>-<machine>-many/
#
# The specs: `cargo run --release -p ferrocep --example many_specs -- K DIR` writes K variants of
# the order-timeout job (create then pay of the same order within 10m), spec i taking only the
# orders whose amount lies in its own band (the bands split 5..500, gen_orders.py's amounts, so
# each order falls in exactly one band; with --threshold spec i takes every amount >= its lower
# bound, so the specs overlap and the outputs add up to about K/2 times the reference job's).
# The workload: gen_orders.py --events N --seed 1 (cached in target/bench/data/, as compare.sh).
# Then, each under /usr/bin/time -v and with --workers W:
#   target/release/ferrocep match --spec DIR/*.json --input FILE     (combined: one process)
#   target/release/ferrocep match --spec DIR/orders-NNN.json ...      (separate: K processes)
#   target/release/ferrocep match --spec order-timeout.json ...       (reference: the unfiltered
#                                                                      job, for scale)
# bench/lib/many_report.py checks that the combined output, with its "pattern" labels
# (`{"kind":"match","pattern":"orders-042",...}`) taken out, equals the union of the separate
# outputs as a multiset, each line attributed to the spec that produced it, and that the
# specs' outputs differ; then prints wall time, CPU time (user+sys) and peak RSS of the combined
# run, of the K separate runs summed (peak RSS: the largest), of one single-spec run (the median
# separate run) and the ratios: separate/combined (what running them together saves) and
# combined/single (what K patterns cost relative to one).
# Exit status 1 if the cross-check fails.
#
# Options:
#   --events N      workload size (default 200000)
#   --specs K       number of specs (default 100)
#   --workers W     `ferrocep match --workers W` for every run (default 1: ratios per core)
#   --threshold     overlapping specs (amount >= lo) instead of disjoint bands
#   --record [DIR]  also write the run to DIR (default bench/runs/<date>-<machine>-many/):
#                   summary.md (command, machine, versions, table) and raw.csv
#   --machine NAME  machine name for --record (default: hostname)
# Environment: FERROCEP_ORACLE_DIR (default ../shared/oracle/flink: gen_orders.py and
# order-timeout.json). Needs Python 3 and GNU time (/usr/bin/time).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$ROOT/bench/lib/common.sh"
REF_SPEC="$ORACLE/order-timeout.json"

events=200000
nspecs=100
workers=1
threshold=""
while [ $# -gt 0 ]; do
    case "$1" in
        --events) events="$2"; shift 2 ;;
        --specs) nspecs="$2"; shift 2 ;;
        --workers) workers="$2"; shift 2 ;;
        --threshold) threshold="--threshold"; shift ;;
        *) common_option "$@" || { echo "many.sh: unknown argument '$1' (see --help)" >&2; exit 2; }; shift "$SHIFT_BY" ;;
    esac
done
[ "$nspecs" -ge 2 ] || { echo "many.sh: --specs must be at least 2" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "many.sh: /usr/bin/time (GNU time) is required (apt-get install time)" >&2; exit 2; }

step "cargo build --release -p ferrocep --bin ferrocep --example many_specs"
(cd "$ROOT" && cargo build --release -p ferrocep --bin ferrocep --example many_specs)
# CARGO_TARGET_DIR, when set, moves the binaries out of target/.
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$ROOT/$target" ;; esac
BIN="$target/release"
FERROCEP="$BIN/ferrocep"

DATA="$ROOT/target/bench/data"
RUN="$ROOT/target/bench/many-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$DATA" "$RUN/specs" "$RUN/separate"
step "results in $RUN"

{
    machine_lines "$machine"
    echo "rustc: $(rustc --version)"
    echo "python: $(python3 --version 2>&1)"
    echo "events: $events"
    echo "specs: $nspecs${threshold:+ (threshold: overlapping)}"
    echo "workers: $workers"
    echo "command: bench/many.sh${orig_args:+ $orig_args}"
} > "$RUN/machine.txt"

input="$(workload "$events")"

step "many_specs $threshold $nspecs"
"$BIN/examples/many_specs" $threshold "$nspecs" "$RUN/specs" >&2
specs=("$RUN"/specs/*.json)
[ ${#specs[@]} -eq "$nspecs" ] || { echo "many.sh: expected $nspecs specs in $RUN/specs, found ${#specs[@]}" >&2; exit 2; }


step "combined: one ferrocep match --workers $workers with $nspecs specs"
timed combined "$FERROCEP" match --workers "$workers" --spec "${specs[@]}" --input "$input" > "$RUN/combined.out"

step "separate: $nspecs runs of ferrocep match --workers $workers with one spec each"
for spec in "${specs[@]}"; do
    name="$(basename "$spec" .json)"
    timed "separate/$name" "$FERROCEP" match --workers "$workers" --spec "$spec" --input "$input" > "$RUN/separate/$name.out"
done

step "reference: the unfiltered order-timeout job"
timed reference "$FERROCEP" match --workers "$workers" --spec "$REF_SPEC" --input "$input" > "$RUN/reference.out"

step "report"
status=0
python3 "$ROOT/bench/lib/many_report.py" "$RUN" || status=$?

if [ -n "$record" ]; then
    [ "$record" = auto ] && record="$ROOT/bench/runs/$(date +%Y-%m-%d)-$machine-many"
    # One summary and one CSV per recorded run; the raw per-process files stay in $RUN.
    mkdir -p "$record"
    cp "$RUN"/raw.csv "$record/"
    python3 "$ROOT/bench/lib/many_report.py" --readme "$RUN" > "$record/summary.md"
    step "recorded in $record"
fi
exit "$status"

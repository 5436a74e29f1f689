#!/usr/bin/env bash
# ferrocep against real Flink CEP on the same input, in one run.
#
#   bench/compare.sh                    # 200k events (under 2 minutes), outputs cross-checked
#   bench/compare.sh --full             # 1M and 5M events (several minutes)
#   bench/compare.sh --events 500000 --repeat 3 --record
#
# For each size: gen_orders.py --events N --seed 1 writes the workload (cached under
# target/bench/), then, each under /usr/bin/time -v:
#   target/release/ferrocep match --spec order-timeout.json --input FILE > out
#   target/release/ferrocep match --workers 1 ...   (one thread parses and matches; when the
#                                                    binary has --workers)
#   target/release/ceiling FILE out   (the issue's hand-specialised single-job program, one
#                                      thread: crates/ferrocep-bench/src/bin/ceiling.rs; with
#                                      GLIBC_TUNABLES=glibc.malloc.hugetlb=1, as ferrocep's
#                                      large buffers are on huge pages)
#   ../shared/oracle/flink/run.sh bench --spec order-timeout.json --input FILE   (counts only)
#   ../shared/oracle/flink/run.sh match ...   (full output; sizes <= --flink-match-max)
# and bench/lib/report.py prints the table: events/s (ferrocep: events / process wall time;
# Flink: events / its net job runtime, and events / process wall time), events per CPU-second
# (user+sys of the whole process), peak RSS, the ratios to Flink and ferrocep's share of the
# ceiling. It checks that ferrocep's match /
# timeout / late counts (and the ceiling's) equal Flink bench's, and, where Flink's match output exists, that the
# two outputs are equal as multisets (compared as conformance/check.py does).
# Exit status 1 if a cross-check fails.
#
# Options:
#   --events N           one size (default 200000); may be given several times
#   --full               sizes 1000000 and 5000000
#   --repeat R           run each engine R times, interleaved (default 1); the table shows medians
#   --flink-match-max N  run Flink's `match` (slow: it prints every line) only up to N events
#                        (default 1000000); larger sizes are cross-checked on counts only
#   --record [DIR]       also write the run to DIR (default bench/runs/<date>-<machine>/)
#   --machine NAME       machine name for --record (default: hostname)
#   --keep-outputs       keep every engine's output in the run's directory (by default they
#                        are removed after the cross-check: 600 MB each at 5M events)
# Environment: FERROCEP_ORACLE_DIR (default ../shared/oracle/flink), and the oracle's own
# CEP_ORACLE_HEAP / CEP_ORACLE_GC / CEP_ORACLE_JAVA_OPTS (see its README). Flink's
# java.io.tmpdir is a directory of the run, removed at the end: Flink unpacks a ~20 MB RPC jar
# there on every start and never removes it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$ROOT/bench/lib/common.sh"
SPEC="$ORACLE/order-timeout.json"

sizes=()
repeat=1
match_max=1000000
keep_outputs=
while [ $# -gt 0 ]; do
    case "$1" in
        --events) sizes+=("$2"); shift 2 ;;
        --full) sizes+=(1000000 5000000); shift ;;
        --repeat) repeat="$2"; shift 2 ;;
        --flink-match-max) match_max="$2"; shift 2 ;;
        --keep-outputs) keep_outputs=1; shift ;;
        *) common_option "$@" || { echo "compare.sh: unknown argument '$1' (see --help)" >&2; exit 2; }; shift "$SHIFT_BY" ;;
    esac
done
[ ${#sizes[@]} -gt 0 ] || sizes=(200000)
[ -x /usr/bin/time ] || { echo "compare.sh: /usr/bin/time (GNU time) is required (apt-get install time)" >&2; exit 2; }

step "Flink oracle setup ($ORACLE/setup.sh)"
"$ORACLE/setup.sh"
step "cargo build --release -p ferrocep -p ferrocep-bench --bin ferrocep --bin ceiling"
(cd "$ROOT" && cargo build --release -p ferrocep -p ferrocep-bench --bin ferrocep --bin ceiling)
FERROCEP="${CARGO_TARGET_DIR:-$ROOT/target}/release/ferrocep"
CEILING="${CARGO_TARGET_DIR:-$ROOT/target}/release/ceiling"
# Variants: name and extra arguments. The default uses as many workers as cores.
variants=("ferrocep|")
if "$FERROCEP" match --help 2>/dev/null | grep -q -- '--workers'; then
    variants+=("ferrocep-w1|--workers 1")
fi

DATA="$ROOT/target/bench/data"
RUN="$ROOT/target/bench/run-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$DATA" "$RUN" "$RUN/java-tmp"
step "results in $RUN"
export CEP_ORACLE_JAVA_OPTS="${CEP_ORACLE_JAVA_OPTS:+$CEP_ORACLE_JAVA_OPTS }-Djava.io.tmpdir=$RUN/java-tmp"
cleanup() {
    rm -rf "$RUN/java-tmp"
    [ -n "$keep_outputs" ] || rm -f "$RUN"/*.out
}
trap cleanup EXIT

# Machine and versions, for the report.
{
    machine_lines "$machine"
    echo "ferrocep_variants: $(printf '%s;' "${variants[@]}")"
    echo "rustc: $(rustc --version)"
    echo "flink: $(ls "${CEP_ORACLE_CACHE:-$HOME/.cache/cep-oracle}" | sed -n 's/^flink-//p' | head -n1) (oracle, parallelism 1, heap ${CEP_ORACLE_HEAP:-4g}, ${CEP_ORACLE_GC:--XX:+UseParallelGC})"
    echo "java: $(java -version 2>&1 | head -n1)"
    echo "python: $(python3 --version 2>&1)"
    echo "command: bench/compare.sh${orig_args:+ $orig_args}"
} > "$RUN/machine.txt"
printf '%s ' "${sizes[@]}" > "$RUN/sizes.txt"


for n in "${sizes[@]}"; do
    input="$(workload "$n")"
    for r in $(seq 1 "$repeat"); do
        for v in "${variants[@]}"; do
            name="${v%%|*}"
            read -r -a extra <<< "${v#*|}"
            step "[$n events, run $r/$repeat] ferrocep match ${extra[*]}"
            timed "$n-$name-$r" "$FERROCEP" match "${extra[@]}" --spec "$SPEC" --input "$input" > "$RUN/$n-$name.out"
        done
        step "[$n events, run $r/$repeat] hand-specialised ceiling"
        # With glibc's huge pages for all its memory: ferrocep's own allocator puts its large
        # buffers on huge pages, and the ceiling must not lose to that alone.
        timed "$n-ceiling-$r" env GLIBC_TUNABLES=glibc.malloc.hugetlb=1 "$CEILING" "$input" "$RUN/$n-ceiling.out" 2> /dev/null
        step "[$n events, run $r/$repeat] Flink bench"
        timed "$n-flink-bench-$r" "$ORACLE/run.sh" bench --spec "$SPEC" --input "$input" > "$RUN/$n-flink-bench-$r.txt"
    done
    if [ "$n" -le "$match_max" ]; then
        step "[$n events] Flink match (full output, for the cross-check)"
        timed "$n-flink-match" "$ORACLE/run.sh" match --spec "$SPEC" --input "$input" > "$RUN/$n-flink.out"
    fi
done

step "report"
status=0
python3 "$ROOT/bench/lib/report.py" "$RUN" || status=$?

if [ -n "$record" ]; then
    [ "$record" = auto ] && record="$ROOT/bench/runs/$(date +%Y-%m-%d)-$machine"
    # One summary and one CSV per recorded run; the raw per-process files stay in $RUN.
    mkdir -p "$record"
    cp "$RUN"/raw.csv "$record/"
    python3 "$ROOT/bench/lib/report.py" --readme "$RUN" > "$record/summary.md"
    step "recorded in $record"
fi
exit "$status"

#!/usr/bin/env bash
# One core of ferrocep against the issue's ceiling and Flink, side by side in one run.
#
#   bench/side.sh                         # 1M events, 5 rounds
#   bench/side.sh --events 1000000 --repeat 7 --record
#   bench/side.sh --no-flink --repeat 9   # ferrocep and the ceiling only
#
# Each round runs, one after the other and in a rotating order, under /usr/bin/time -v:
#   ferrocep match --workers 1 --spec order-timeout.json --input FILE > /dev/null
#   ceiling full FILE          (../shared/bench/ceiling: reads the file in one go, serde_json
#                               into a borrowed struct, a hash map and a FIFO of deadlines,
#                               writes the same output to /dev/null)
#   ../shared/oracle/flink/run.sh bench --spec order-timeout.json --input FILE
# FILE is gen_orders.py --events N --seed 1 (cached in target/bench/data/). bench/lib/side_report.py
# prints the medians (events/s = events / wall time of the process; Flink also by its net job
# runtime), the median of each round's own ratios, and checks that ferrocep's match and timeout
# counts equal the ceiling's and Flink's.
#
# Options: --events N (1000000), --repeat R (5), --no-flink, --record [DIR] (default
# bench/runs/<date>-<machine>-side/), --machine NAME.
# Environment: CARGO_TARGET_DIR (where the release binaries are built), FERROCEP_ORACLE_DIR,
# FERROCEP_CEILING_DIR (default ../shared/bench/ceiling).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$ROOT/bench/lib/common.sh"
SPEC="$ORACLE/order-timeout.json"
CEILING_DIR="${FERROCEP_CEILING_DIR:-$ROOT/../shared/bench/ceiling}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"

n=1000000
repeat=5
flink=1
while [ $# -gt 0 ]; do
    case "$1" in
        --events) n="$2"; shift 2 ;;
        --repeat) repeat="$2"; shift 2 ;;
        --no-flink) flink=; shift ;;
        *) common_option "$@" || { echo "side.sh: unknown argument '$1' (see --help)" >&2; exit 2; }; shift "$SHIFT_BY" ;;
    esac
done
[ -x /usr/bin/time ] || { echo "side.sh: /usr/bin/time (GNU time) is required" >&2; exit 2; }

step "cargo build --release -p ferrocep; the ceiling"
(cd "$ROOT" && cargo build --release -p ferrocep --bin ferrocep)
cargo build --release --manifest-path "$CEILING_DIR/Cargo.toml" --target-dir "$TARGET/ceiling"
FERROCEP="$TARGET/release/ferrocep"
CEILING="$TARGET/ceiling/release/ceiling"
[ -z "$flink" ] || "$ORACLE/setup.sh"

DATA="$ROOT/target/bench/data"
RUN="$ROOT/target/bench/side-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$DATA" "$RUN" "$RUN/java-tmp"
export CEP_ORACLE_JAVA_OPTS="${CEP_ORACLE_JAVA_OPTS:+$CEP_ORACLE_JAVA_OPTS }-Djava.io.tmpdir=$RUN/java-tmp"
trap 'rm -rf "$RUN/java-tmp"' EXIT
input="$(workload "$n")"
step "results in $RUN"
{
    machine_lines "$machine"
    echo "rustc: $(rustc --version)"
    echo "events: $n"
    echo "command: bench/side.sh${orig_args:+ $orig_args}"
} > "$RUN/machine.txt"

# The counts, once and untimed: the timed runs write to /dev/null, as the ceiling does.
step "ferrocep match --workers 1: output counts"
"$FERROCEP" match --workers 1 --spec "$SPEC" --input "$input" \
    | python3 -c 'import sys, collections
c = collections.Counter(l[9:l.index(b"\"", 9)] for l in sys.stdin.buffer)
print(" ".join(f"{k.decode()}={v}" for k, v in sorted(c.items())))' > "$RUN/ferrocep.counts"

engines=(ferrocep ceiling)
[ -z "$flink" ] || engines+=(flink)
for r in $(seq 1 "$repeat"); do
    k=${#engines[@]}
    for j in $(seq 0 $((k - 1))); do
        e="${engines[$(((j + r) % k))]}"
        step "round $r/$repeat: $e"
        case "$e" in
            ferrocep) timed "ferrocep-$r" "$FERROCEP" match --workers 1 --spec "$SPEC" --input "$input" > /dev/null ;;
            ceiling) timed "ceiling-$r" "$CEILING" full "$input" 2> "$RUN/ceiling-$r.txt" ;;
            flink) timed "flink-$r" "$ORACLE/run.sh" bench --spec "$SPEC" --input "$input" > "$RUN/flink-$r.txt" ;;
        esac
    done
done
python3 "$ROOT/bench/lib/side_report.py" "$RUN" | tee "$RUN/summary.md"
if [ -n "$record" ]; then
    [ "$record" = auto ] && record="$ROOT/bench/runs/$(date +%Y-%m-%d)-$machine-side"
    mkdir -p "$record"
    cp "$RUN/summary.md" "$RUN/raw.csv" "$record/"
    step "recorded in $record"
fi

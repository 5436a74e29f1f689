#!/usr/bin/env bash
# The order-timeout job from topic to topic against a plain consume-and-produce pipe with the same
# client settings, side by side on one local broker (crates/ferrocep-bench/src/bin/kafka_bench.rs
# says how each is run and timed).
#
#   bench/kafka.sh                                  # 1M events, 3 partitions, 1 instance, 5 rounds
#   bench/kafka.sh --events 200000 --instances 1,2,3 --repeat 3
#   bench/kafka.sh --record                         # also write bench/runs/<date>-<machine>-kafka/
#
# The broker: nisshi from scripts/kafka-broker.sh (installed and cached), with its in-memory store
# (FERROCEP_NISSHI_STORAGE=memory: its SQLite store stalls consumers of topics beyond ~10k records),
# on a free port, stopped at the end. The workload: gen_orders.py --events N --seed 1 (cached in
# target/bench/data/, as compare.sh). The broker runs on the same cores as both pipelines: the
# ratio is what this machine shows, not a broker-free figure.
#
# Options:
#   --events N          workload size (default 1000000)
#   --partitions P      partitions of the input and output topics (default 3)
#   --instances LIST    instance counts, e.g. 1,2,3 (default 1)
#   --repeat R          rounds per instance count (default 5)
#   --scale-out         scale_out: true also with one instance (always with several)
#   --record [DIR]      also write summary.md and raw.csv to DIR
#   --machine NAME      machine name for --record (default: hostname)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$ROOT/bench/lib/common.sh"

events=1000000 partitions=3 instances=1 repeat=5 scale=()
while [ $# -gt 0 ]; do
    if common_option "$@"; then shift "$SHIFT_BY"; continue; fi
    case "$1" in
        --events) events="$2"; shift 2 ;;
        --partitions) partitions="$2"; shift 2 ;;
        --instances) instances="$2"; shift 2 ;;
        --repeat) repeat="$2"; shift 2 ;;
        --scale-out) scale=(--scale-out); shift ;;
        *) echo "bench/kafka.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
DATA="$ROOT/target/bench/data"
mkdir -p "$DATA"
step "cargo build --release -p ferrocep -p ferrocep-bench"
(cd "$ROOT" && cargo build --release -q -p ferrocep --bin ferrocep -p ferrocep-bench --bin kafka_bench)
input="$(workload "$events")"
"$ROOT/scripts/kafka-broker.sh" install >/dev/null

work="$(mktemp -d)"
trap '"$ROOT/scripts/kafka-broker.sh" stop "$work/broker" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
FERROCEP_NISSHI_STORAGE=memory "$ROOT/scripts/kafka-broker.sh" start "$port" "$work/broker"

step "kafka_bench: $events events, $partitions partitions, instances $instances, $repeat rounds"
"$TARGET/release/kafka_bench" --brokers "127.0.0.1:$port" --input "$input" \
    --ferrocep "$TARGET/release/ferrocep" --spec "$ROOT/examples/order-timeout.yaml" \
    --partitions "$partitions" --instances "$instances" --repeat "$repeat" --quiet 6 \
    --csv "$work/raw.csv" ${scale[@]+"${scale[@]}"} | tee "$work/table.md"

if [ -n "$record" ]; then
    [ "$record" != auto ] || record="$ROOT/bench/runs/$(date -u +%Y-%m-%d)-$machine-kafka"
    mkdir -p "$record"
    {
        echo "# bench/kafka.sh $orig_args"
        echo
        echo '```text'
        machine_lines "$machine"
        echo "broker: nisshi $("$ROOT/scripts/kafka-broker.sh" path | sed 's#.*/nisshi-\([^/]*\)/.*#\1#') (memory store)"
        echo '```'
        echo
        cat "$work/table.md"
    } >"$record/summary.md"
    cp "$work/raw.csv" "$record/raw.csv"
    echo "recorded in $record" >&2
fi

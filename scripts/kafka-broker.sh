#!/usr/bin/env bash
# The Kafka-protocol broker that the kafka tests (and the README's quick
# start) run on this machine: `nisshi`, a Rust broker installed by cargo,
# because no Apache Kafka or Redpanda build is reachable from the package
# registries these machines can use (see README, "Kafka").
#
#   scripts/kafka-broker.sh install          build it once (about 11 min on
#                                            2 cores), cached; prints its path
#   scripts/kafka-broker.sh path             prints its path (exit 1 if absent)
#   scripts/kafka-broker.sh start PORT DIR   starts it on 127.0.0.1:PORT with
#                                            its data and log in DIR; returns
#                                            once the port accepts connections
#   scripts/kafka-broker.sh stop DIR         stops the broker started in DIR
#
# FERROCEP_NISSHI_STORAGE=memory keeps the log in memory instead of SQLite
# (bench/kafka.sh: nisshi's SQLite store stalls consumers of topics of more
# than about 10k records; the memory store loses everything at a stop).
# FERROCEP_NISSHI names another binary; FERROCEP_NISSHI_ROOT another cache.
set -euo pipefail

VERSION=0.7.0-pre.2
ROOT="${FERROCEP_NISSHI_ROOT:-$HOME/.cache/ferrocep/nisshi-$VERSION}"
BIN="${FERROCEP_NISSHI:-$ROOT/bin/nisshi}"

die() {
    echo "kafka-broker.sh: $*" >&2
    exit 1
}

install() {
    if [ -x "$BIN" ]; then
        echo "$BIN"
        return
    fi
    [ -z "${FERROCEP_NISSHI:-}" ] || die "FERROCEP_NISSHI=$FERROCEP_NISSHI is not an executable file"
    mkdir -p "$ROOT"
    # One build at a time: a second caller waits for the first, then finds
    # the binary.
    exec 9>"$ROOT.lock"
    flock 9
    if [ ! -x "$BIN" ]; then
        echo "kafka-broker.sh: building nisshi $VERSION into $ROOT (about 11 minutes on 2 cores, once)" >&2
        cargo install nisshi --version "$VERSION" --locked \
            --no-default-features --features dynostore,libsql --root "$ROOT" >&2
    fi
    echo "$BIN"
}

path() {
    [ -x "$BIN" ] || die "nisshi is not installed at $BIN: run scripts/kafka-broker.sh install"
    echo "$BIN"
}

start() {
    local port="${1:-}" dir="${2:-}"
    [ -n "$port" ] && [ -n "$dir" ] || die "usage: start PORT DIR"
    path >/dev/null
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    if [ -f "$dir/broker.pid" ] && kill -0 "$(cat "$dir/broker.pid")" 2>/dev/null; then
        die "a broker already runs from $dir (pid $(cat "$dir/broker.pid"))"
    fi
    # In DIR: nisshi reads the path of a sqlite:// URL relative to its
    # working directory.
    local storage="sqlite://nisshi.db"
    [ "${FERROCEP_NISSHI_STORAGE:-}" != memory ] || storage="memory://nisshi/"
    (cd "$dir" && exec "$BIN" broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine "$storage" \
        >>broker.log 2>&1 </dev/null) &
    local pid=$!
    echo "$pid" >"$dir/broker.pid"
    for _ in $(seq 1 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$dir/broker.log" >&2 || true
            die "the broker exited at start (log: $dir/broker.log)"
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "kafka-broker.sh: broker pid $pid on 127.0.0.1:$port (log: $dir/broker.log)" >&2
            return
        fi
        sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    die "the broker did not accept connections on 127.0.0.1:$port within 30 s (log: $dir/broker.log)"
}

stop() {
    local dir="${1:-}"
    [ -n "$dir" ] || die "usage: stop DIR"
    [ -f "$dir/broker.pid" ] || die "no broker.pid in $dir"
    local pid
    pid="$(cat "$dir/broker.pid")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$dir/broker.pid"; return; }
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/broker.pid"
}

case "${1:-}" in
install) install ;;
path) path ;;
start) shift; start "$@" ;;
stop) shift; stop "$@" ;;
*) die "usage: $0 install | path | start PORT DIR | stop DIR" ;;
esac

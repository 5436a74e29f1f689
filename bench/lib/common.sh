# Pieces shared by bench/compare.sh, bench/many.sh and bench/scaling.sh (sourced right after
# they set ROOT; DATA and RUN are set before the functions below are called).

# Set up by sourcing (the scripts set ROOT first): the oracle directory, the options every
# script has (--record [DIR], --machine NAME, --help) and the arguments as given.
ORACLE="${FERROCEP_ORACLE_DIR:-$ROOT/../shared/oracle/flink}"
ORACLE="$(cd "$ORACLE" && pwd)"
orig_args="$*"
record=""
machine="$(hostname -s 2>/dev/null || echo unknown)"

# common_option ARGS...: takes a common option off the front of ARGS (sets SHIFT_BY to the
# number of words it used); status 1 if the first word is not one.
common_option() {
    case "$1" in
        --record)
            if [ $# -gt 1 ] && [ "${2#--}" = "$2" ]; then record="$2"; SHIFT_BY=2; else record=auto; SHIFT_BY=1; fi ;;
        --machine) machine="$2"; SHIFT_BY=2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) return 1 ;;
    esac
}

step() { printf '== %s\n' "$*" >&2; }

# The lines of machine.txt every run has: date, machine ($1), CPU, memory, kernel, ferrocep
# commit.
machine_lines() {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "machine: $1"
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "kernel: $(uname -sr)"
    echo "ferrocep: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$ROOT" && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && echo ' (with uncommitted changes)' || true)"
}

# workload N: the path of gen_orders.py --events N --seed 1, generated into $DATA unless cached.
workload() {
    local input="$DATA/orders-$1-seed1.jsonl"
    if [ ! -s "$input" ] || [ "$ORACLE/gen_orders.py" -nt "$input" ]; then
        step "gen_orders.py --events $1 --seed 1"
        python3 "$ORACLE/gen_orders.py" --events "$1" --seed 1 -o "$input.tmp" >&2
        mv "$input.tmp" "$input"
    fi
    echo "$input"
}

timed() { # timed NAME CMD...   (stdout of CMD is redirected by the caller)
    local name="$1"; shift
    cut -d' ' -f1-3 /proc/loadavg > "$RUN/$name.load"
    /usr/bin/time -v -o "$RUN/$name.time" "$@"
}

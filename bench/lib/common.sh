# Pieces shared by bench/compare.sh and bench/many.sh (sourced; they set ROOT, ORACLE, DATA
# and RUN first).

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

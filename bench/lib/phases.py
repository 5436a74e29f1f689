#!/usr/bin/env python3
"""Groups a flat `perf report` into the phases of bench/README.md's profile table.

    perf record -e cpu-clock -F 2000 -o perf.data BIN ARGS...
    perf report -i perf.data -n --no-children --sort symbol --stdio | python3 bench/lib/phases.py [EVENTS [HZ]]

Each symbol goes to the first phase whose pattern it matches (self time only: inlined code
counts where it was inlined, so "NFA" includes the shared-buffer calls the compiler merged
into it; the ceiling's `main` has its whole loop inlined). With EVENTS (and the sampling
frequency HZ, default 2000), also prints CPU nanoseconds per event: samples / HZ / EVENTS.
"""
import re
import sys

PHASES = [
    ("reading", r"\[k\]|input::|TextLines|ChunkReader|memchr|read_to|fs::read|run_with|Blocks::|replay::"),
    ("JSON", r"event::fast|event::json|Extractor|from_utf8|serde_json|Deserializer|deserialize|parse_int|span_value|ingest"),
    ("conditions", r"condition|expr::|build::cond|Conditions::|Bits::|with_line"),
    ("keys", r"memcmp|KeyIndex|lookup|hash_one|insert_key|drop_if_idle|slot_or_skip|process_in_slot|key::|hashbrown|HashMap|ahash"),
    ("shared buffer", r"nfa::buffer|Slots<|Edges::|extract"),
    ("timers", r"TimerQueue|EventQueue|CepOperator<K,E>::advance_time|VecDeque"),
    ("NFA", r"nfa::|dewey|JavaPq|NfaState|Counters|drop_in_place<.*Run|SmallVec"),
    ("output", r"output::|write_|BufWriter|Write|itoa|memmove|memcpy|prefetch_text"),
    ("matcher", r"matcher::|CepOperator"),
    ("ceiling's inlined loop", r"ceiling::main"),
]


def main():
    events = int(sys.argv[1]) if len(sys.argv) > 1 else None
    hz = float(sys.argv[2]) if len(sys.argv) > 2 else 2000.0
    totals = {name: [0.0, 0] for name, _ in PHASES}
    totals["other"] = [0.0, 0]
    for line in sys.stdin:
        m = re.match(r"\s+([0-9.]+)%\s+(\d+)\s+(.*)$", line)
        if not m:
            continue
        pct, n, sym = float(m.group(1)), int(m.group(2)), m.group(3)
        for name, pat in PHASES:
            if re.search(pat, sym):
                break
        else:
            name = "other"
        totals[name][0] += pct
        totals[name][1] += n
    print("| phase | share |" + (" ns per event |" if events else ""))
    print("|---|---:|" + ("---:|" if events else ""))
    for name, (pct, n) in totals.items():
        if pct == 0:
            continue
        extra = f" {n / hz / events * 1e9:.0f} |" if events else ""
        print(f"| {name} | {pct:.1f} % |{extra}")
    if events:
        n = sum(v[1] for v in totals.values())
        print(f"| total | 100 % | {n / hz / events * 1e9:.0f} |")


if __name__ == "__main__":
    main()

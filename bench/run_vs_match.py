#!/usr/bin/env python3
"""`ferrocep run` (file source -> file sinks) against `ferrocep match`, side by
side on the same events: alternating runs, medians, the ratio of events/s.

    cargo build --release -p ferrocep
    python3 bench/run_vs_match.py --input EVENTS.jsonl [--spec SPEC] [--repeat 5]

Both run `--workers N` matching threads (default 1) with the same spec; `match` writes stdout to a file, `run` writes
match/timeout/late outputs to three file sinks (each line also carries
`pattern` and `id`). Prints a markdown table; `--csv FILE` writes the raw
timings.
"""
import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(cmd, stdout):
    start = time.perf_counter()
    subprocess.run(cmd, stdout=stdout, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    ap.add_argument("--spec", default=os.path.join(ROOT, "examples/order-timeout.yaml"))
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/ferrocep"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--workers", type=int, default=1, help="for both commands")
    ap.add_argument("--csv")
    a = ap.parse_args()
    events = sum(1 for _ in open(a.input, "rb"))
    work = tempfile.mkdtemp(prefix="run-vs-match-")
    config = os.path.join(work, "pipe.yaml")
    with open(config, "w") as f:
        f.write(
            f"name: bench\npatterns: [{os.path.abspath(a.spec)}]\n"
            f"source: {{type: file, path: {os.path.abspath(a.input)}}}\n"
            "outputs:\n"
            "  match: [{type: file, path: out/match.jsonl}]\n"
            "  timeout: [{type: file, path: out/timeout.jsonl}]\n"
            "  late: [{type: file, path: out/late.jsonl}]\n"
            "  error: [{type: file, path: out/error.jsonl}]\n"
            "state: {dir: data}\n"
        )
    rows = []
    for i in range(a.repeat):
        for which in ("match", "run") if i % 2 == 0 else ("run", "match"):
            shutil.rmtree(os.path.join(work, "out"), ignore_errors=True)
            shutil.rmtree(os.path.join(work, "data"), ignore_errors=True)
            if which == "match":
                with open(os.path.join(work, "match-out.jsonl"), "wb") as out:
                    t = timed([a.bin, "match", "--workers", str(a.workers), "--spec", a.spec, "--input", a.input], out)
                lines = sum(1 for _ in open(os.path.join(work, "match-out.jsonl"), "rb"))
            else:
                t = timed([a.bin, "run", "--config", config, "--workers", str(a.workers), "--no-progress", "--log-level", "warn"], subprocess.DEVNULL)
                lines = sum(
                    sum(1 for _ in open(os.path.join(work, "out", f), "rb"))
                    for f in ("match.jsonl", "timeout.jsonl", "late.jsonl")
                    if os.path.exists(os.path.join(work, "out", f))
                )
            rows.append((i, which, t, lines))
            print(f"repeat {i} {which}: {t:.3f} s, {events / t / 1e3:.0f} k events/s, {lines} outputs", file=sys.stderr)
    med = {w: statistics.median(r[2] for r in rows if r[1] == w) for w in ("match", "run")}
    outs = {w: rows[-1 if rows[-1][1] == w else -2][3] for w in ("match", "run")}
    print(f"| command | median wall time | events/s | outputs |\n|---|---:|---:|---:|")
    for w in ("match", "run"):
        print(f"| `{w}` | {med[w]:.3f} s | {events / med[w] / 1e3:.0f} k | {outs[w]} |")
    print(f"\n`run` at {med['match'] / med['run'] * 100:.0f} % of `match`'s events/s "
          f"({events} events, --workers {a.workers}, {a.repeat} alternating repeats, medians)")
    if outs["match"] != outs["run"]:
        print(f"WARNING: output counts differ: {outs}", file=sys.stderr)
    if a.csv:
        with open(a.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["repeat", "command", "seconds", "outputs"])
            w.writerows(rows)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

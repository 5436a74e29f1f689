#!/usr/bin/env python3
"""What periodic checkpoints cost `ferrocep run`: the same run (file source ->
file sinks) with `state.checkpoint_interval: 1s` against `1h` (no checkpoint
but the final one), alternating, medians, the ratio of events/s.

    cargo build --release -p ferrocep
    python3 bench/checkpoint_overhead.py --input EVENTS.jsonl [--spec SPEC] [--repeat 5]

Each run starts on an empty data directory and empty outputs; `run` reads
the file source to its end, writes match/timeout/late outputs to three file
sinks, takes its final checkpoint and exits. The number of checkpoints a
run committed is read from `data/state/LAST` (the last checkpoint id; ids
count from 1). Prints a markdown table; `--csv FILE` writes the raw timings.
"""
import argparse
import csv
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INTERVALS = ("1h", "1s")


def write_config(path, spec, events, interval):
    with open(path, "w") as f:
        f.write(
            f"name: bench\npatterns: [{os.path.abspath(spec)}]\n"
            f"source: {{type: file, path: {os.path.abspath(events)}}}\n"
            "outputs:\n"
            "  match: [{type: file, path: out/match.jsonl}]\n"
            "  timeout: [{type: file, path: out/timeout.jsonl}]\n"
            "  late: [{type: file, path: out/late.jsonl}]\n"
            "  error: [{type: file, path: out/error.jsonl}]\n"
            f"state: {{dir: data, checkpoint_interval: {interval}}}\n"
        )


def last_checkpoint(work):
    try:
        with open(os.path.join(work, "data", "state", "LAST"), "rb") as f:
            return struct.unpack("<Q", f.read(12)[:8])[0]
    except (OSError, struct.error):
        return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    ap.add_argument("--spec", default=os.path.join(ROOT, "examples/order-timeout.yaml"))
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/ferrocep"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--csv")
    a = ap.parse_args()
    events = sum(1 for _ in open(a.input, "rb"))
    work = tempfile.mkdtemp(prefix="checkpoint-overhead-")
    configs = {}
    for iv in INTERVALS:
        configs[iv] = os.path.join(work, f"pipe-{iv}.yaml")
        write_config(configs[iv], a.spec, a.input, iv)
    rows = []
    for i in range(a.repeat):
        for iv in INTERVALS if i % 2 == 0 else INTERVALS[::-1]:
            shutil.rmtree(os.path.join(work, "out"), ignore_errors=True)
            shutil.rmtree(os.path.join(work, "data"), ignore_errors=True)
            start = time.perf_counter()
            subprocess.run(
                [a.bin, "run", "--config", configs[iv], "--no-progress", "--log-level", "warn"],
                stdout=subprocess.DEVNULL,
                check=True,
            )
            t = time.perf_counter() - start
            lines = sum(
                sum(1 for _ in open(os.path.join(work, "out", f), "rb"))
                for f in ("match.jsonl", "timeout.jsonl", "late.jsonl")
                if os.path.exists(os.path.join(work, "out", f))
            )
            cps = last_checkpoint(work)
            rows.append((i, iv, t, lines, cps))
            print(
                f"repeat {i} interval {iv}: {t:.3f} s, {events / t / 1e3:.0f} k events/s, "
                f"{lines} outputs, {cps} checkpoints",
                file=sys.stderr,
            )
    med = {iv: statistics.median(r[2] for r in rows if r[1] == iv) for iv in INTERVALS}
    cps = {iv: statistics.median(r[4] for r in rows if r[1] == iv) for iv in INTERVALS}
    outs = {iv: sorted({r[3] for r in rows if r[1] == iv}) for iv in INTERVALS}
    print("| `checkpoint_interval` | median wall time | events/s | checkpoints (median) | outputs |")
    print("|---|---:|---:|---:|---:|")
    for iv in INTERVALS:
        print(
            f"| `{iv}` | {med[iv]:.3f} s | {events / med[iv] / 1e3:.0f} k | {cps[iv]:.0f} | "
            f"{', '.join(map(str, outs[iv]))} |"
        )
    per_repeat = [
        next(r[2] for r in rows if r[0] == i and r[1] == "1h")
        / next(r[2] for r in rows if r[0] == i and r[1] == "1s")
        for i in range(a.repeat)
    ]
    print(
        f"\nwith checkpoints every 1 s: {med['1h'] / med['1s'] * 100:.0f} % of the events/s "
        f"without (ratio of medians; median of the repeats' own ratios "
        f"{statistics.median(per_repeat) * 100:.0f} %); {events} events, {a.repeat} alternating repeats"
    )
    if len(set(outs["1h"] + outs["1s"])) != 1:
        print(f"WARNING: output counts differ: {outs}", file=sys.stderr)
    if a.csv:
        with open(a.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["repeat", "interval", "seconds", "outputs", "checkpoints"])
            w.writerows(rows)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

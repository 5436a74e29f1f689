#!/usr/bin/env python3
"""Steady-state memory of `ferrocep match`: RSS sampled every second while a long stream runs.

  steady.py --ferrocep BIN --spec SPEC --gen GEN_ORDERS.py [--events N] [--interval S] [--csv FILE]

Runs `python3 GEN_ORDERS.py --events N --seed 1 | BIN match --spec SPEC --input - > /dev/null`,
relaying the generator's output to ferrocep (counting lines on the way) and sampling ferrocep's
VmRSS from /proc/PID/status every --interval seconds. Prints the samples and a summary: peak
RSS, RSS after the first quarter of the input and at the end, and the spread after warm-up.
With the default generator rate (100 orders/s) and a 10m window, about 60,000 orders are in
flight at any time, so the state (and RSS) should stop growing once the first window has passed.
"""
import argparse
import os
import subprocess
import sys
import threading
import time


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ferrocep", required=True)
    p.add_argument("--spec", required=True)
    p.add_argument("--gen", required=True)
    p.add_argument("--events", type=int, default=20_000_000)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--csv")
    a = p.parse_args(argv)

    gen = subprocess.Popen([sys.executable, a.gen, "--events", str(a.events), "--seed", "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    fc = subprocess.Popen([a.ferrocep, "match", "--spec", a.spec, "--input", "-"],
                          stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    relayed = [0]  # lines handed to ferrocep so far
    done = threading.Event()

    def relay():
        src, dst = gen.stdout.fileno(), fc.stdin
        while True:
            chunk = os.read(src, 1 << 20)
            if not chunk:
                break
            dst.write(chunk)
            relayed[0] += chunk.count(b"\n")
        dst.close()
        done.set()

    t = threading.Thread(target=relay, daemon=True)
    start = time.monotonic()
    t.start()
    samples = []  # (seconds, events relayed, rss KiB)
    while fc.poll() is None:
        r = rss_kib(fc.pid)
        if r is not None:
            samples.append((time.monotonic() - start, relayed[0], r))
        time.sleep(a.interval)
    t.join()
    gen.wait()
    elapsed = time.monotonic() - start
    if fc.returncode != 0:
        print(f"steady: ferrocep exited with status {fc.returncode}", file=sys.stderr)
        return 1
    if a.csv:
        with open(a.csv, "w") as f:
            f.write("seconds,events_relayed,rss_kib\n")
            for s, e, r in samples:
                f.write(f"{s:.1f},{e},{r}\n")

    print(f"steady: {relayed[0]:,} events in {elapsed:.0f} s "
          f"({relayed[0] / elapsed / 1e3:.0f} k events/s, bound by the Python generator)")
    print("   seconds     events   RSS MiB")
    step = max(1, len(samples) // 20)
    for s, e, r in samples[::step] + ([samples[-1]] if samples and (len(samples) - 1) % step else []):
        print(f"  {s:8.0f} {e:10,} {r / 1024:9.1f}")
    if samples:
        quarter = [x for x in samples if x[1] >= relayed[0] // 4] or samples
        after = [x[2] for x in quarter]
        peak = max(x[2] for x in samples)
        print(f"steady: peak RSS {peak / 1024:.1f} MiB; after the first quarter of the input "
              f"RSS {min(after) / 1024:.1f}..{max(after) / 1024:.1f} MiB "
              f"(at 25 %: {quarter[0][2] / 1024:.1f} MiB, at the end: {samples[-1][2] / 1024:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

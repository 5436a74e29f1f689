#!/usr/bin/env python3
"""Report of a bench/scaling.sh run directory.

  scaling_report.py RUN_DIR EVENTS WORKERS

RUN_DIR holds, per repeat r: {w1,wN,split}-r.time (GNU `/usr/bin/time -v` output) and
{w1,wN,split}-r.load, and w1.md5, wN.md5, split.md5 (md5 of the sorted outputs of the last
repeat), w1.lines. Prints a markdown table; exit status 1 if a check fails.
"""
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import fmt_rate, parse_time_v  # noqa: E402

RUNS = [("w1", "`--workers 1`"), ("wN", "`--workers {n}`"),
        ("split", "{n} split processes at once (the reference)")]


def repeats(run, name):
    out, r = [], 1
    while os.path.exists(os.path.join(run, f"{name}-{r}.time")):
        t = parse_time_v(os.path.join(run, f"{name}-{r}.time"))
        t["load"] = open(os.path.join(run, f"{name}-{r}.load")).read().split()[0]
        out.append(t)
        r += 1
    return out


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    run, events, workers = argv[0], int(argv[1]), int(argv[2])
    ok = True
    rows, med, walls_of = [], {}, {}
    for name, label in RUNS:
        ts = repeats(run, name)
        if any(t["exit"] != 0 for t in ts):
            ok = False
        walls = [t["wall_s"] for t in ts]
        walls_of[name] = walls
        cpus = [t["user_s"] + t["sys_s"] for t in ts]
        med[name] = (statistics.median(walls), statistics.median(cpus))
        rows.append(f"| {label.format(n=workers)} | {med[name][0]:.2f} | "
                    f"{fmt_rate(events / med[name][0])} | {med[name][1]:.2f} | "
                    f"{' '.join(f'{w:.2f}' for w in walls)} | {', '.join(t['load'] for t in ts)} |")
    (w1, w1c), (wn, wnc), (sp, spc) = med["w1"], med["wN"], med["split"]
    # A repeat's runs follow one another within seconds, so they share the machine's phase
    # (this VM's speed drifts by up to 1.5x over minutes): each repeat's own ratio is the
    # fairer comparison, and their median the figure to quote.
    paired = [a / b for a, b in zip(walls_of["w1"], walls_of["wN"])]
    paired_bound = [a / b for a, b in zip(walls_of["w1"], walls_of["split"])]
    md5 = {k: open(os.path.join(run, f"{k}.md5")).read().strip() for k in ("w1", "wN", "split")}
    lines = open(os.path.join(run, "w1.lines")).read().strip()
    checks = []
    for k, label in (("wN", f"--workers {workers}"), ("split", "the split runs together")):
        same = md5[k] == md5["w1"]
        ok &= same
        checks.append(f"{'ok  ' if same else 'FAIL'} {label}: sorted output "
                      f"{'equals' if same else 'differs from'} --workers 1's ({lines} lines)")
    print(f"""{events:,} events, medians of {len(repeats(run, 'w1'))} interleaved repeats:

| run | wall s (median) | events/s | CPU s (median) | wall s, each repeat | load before each |
|---|---:|---:|---:|---|---|
{chr(10).join(rows)}

- speed-up of `--workers {workers}` over `--workers 1`, median of each repeat's own ratio:
  **{statistics.median(paired):.2f}x** (each repeat: {' '.join(f'{x:.2f}' for x in paired)})
- the same from the medians above: {w1 / wn:.2f}x (CPU {wnc / w1c:.2f}x one worker's)
- the reference, {workers} independent processes on the key split: {w1 / sp:.2f}x
  (each repeat: {' '.join(f'{x:.2f}' for x in paired_bound)})
- `--workers {workers}` runs at **{100 * sp / wn:.0f} %** of the reference's speed

```text
{chr(10).join(checks)}
```""")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

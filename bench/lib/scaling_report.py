#!/usr/bin/env python3
"""Report of a bench/scaling.sh run directory.

  scaling_report.py RUN_DIR EVENTS WORKERS   print the table and checks; write RUN_DIR/raw.csv
  scaling_report.py --readme RUN_DIR         print the summary.md of bench/runs/<...>-scaling/
                                             (machine.txt and the table's summary.md)

RUN_DIR holds, per repeat r: {w1,wN,split}-r.time (GNU `/usr/bin/time -v` output) and
{w1,wN,split}-r.load, and w1.md5, wN.md5, split.md5 (md5 of the sorted outputs of the last
repeat), w1.lines. Prints a markdown table; exit status 1 if a check fails.
"""
import csv
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import fmt_rate, parse_time_v  # noqa: E402

RUNS = [("w1", "`--workers 1`"), ("wN", "`--workers {n}`"),
        ("split", "{n} split processes at once (the reference)")]


def repeats(run, name, full_load=False):
    out, r = [], 1
    while os.path.exists(os.path.join(run, f"{name}-{r}.time")):
        t = parse_time_v(os.path.join(run, f"{name}-{r}.time"))
        load = open(os.path.join(run, f"{name}-{r}.load")).read()
        t["load"] = load.strip() if full_load else load.split()[0]
        out.append(t)
        r += 1
    return out


def write_raw(run, names):
    """raw.csv: one row per process run, in the order they ran."""
    with open(os.path.join(run, "raw.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "repeat", "wall_s", "user_s", "sys_s", "max_rss_kib", "exit",
                    "loadavg_1_5_15_before"])
        per = {name: repeats(run, name, full_load=True) for name in names}
        for r in range(max(len(ts) for ts in per.values())):
            for name in names:
                if r < len(per[name]):
                    t = per[name][r]
                    w.writerow([name, r + 1, t["wall_s"], t["user_s"], t["sys_s"],
                                t["rss_bytes"] // 1024, t["exit"], t["load"]])


def readme(run):
    machine = open(os.path.join(run, "machine.txt")).read().rstrip()
    info = dict(line.split(": ", 1) for line in machine.splitlines() if ": " in line)
    summary = open(os.path.join(run, "summary.md")).read().rstrip()
    print(f"""# bench/scaling.sh — {info.get('date', '?')[:10]}, {info.get('machine', '?')}, \
ferrocep {info.get('ferrocep', '?')}

Command (from the repository root):

```sh
{info.get('command', 'bench/scaling.sh')}
```

Machine and versions:

```text
{machine}
```

## Results

{summary}

`raw.csv`: one row per process run (wall, user and sys time, peak RSS, exit status, load average
before it).""")
    return 0


def main(argv):
    if len(argv) == 2 and argv[0] == "--readme":
        return readme(argv[1])
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
    write_raw(run, [name for name, _ in RUNS])
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

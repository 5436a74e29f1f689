#!/usr/bin/env python3
"""The report of bench/side.sh: medians, per-round ratios, count cross-checks.

Reads RUN/{ferrocep,ceiling,flink}-R.time (GNU time -v), RUN/ceiling-R.txt (the ceiling's
stderr line), RUN/flink-R.txt (the oracle's `bench` lines), RUN/ferrocep.counts and
RUN/machine.txt; prints Markdown and writes RUN/raw.csv. Exit status 1 if the counts differ.
"""
import csv
import glob
import os
import re
import statistics
import sys


def time_v(path):
    text = open(path).read()

    def field(name):
        return re.search(re.escape(name) + r": (.+)", text).group(1).strip()

    wall = 0.0
    for part in field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":"):
        wall = wall * 60 + float(part)
    return {
        "wall_s": wall,
        "cpu_s": float(field("User time (seconds)")) + float(field("System time (seconds)")),
        "rss_mib": int(field("Maximum resident set size (kbytes)")) / 1024,
    }


def kv(path):
    text = open(path).read() if os.path.exists(path) else ""
    return dict(re.findall(r"\b(\w+)=([0-9.]+)", text))


def main(run):
    meta = dict(l.split(": ", 1) for l in open(os.path.join(run, "machine.txt")).read().splitlines() if ": " in l)
    n = int(meta["events"])
    rounds = sorted({int(re.search(r"-(\d+)\.time$", p).group(1)) for p in glob.glob(os.path.join(run, "*-*.time"))})
    rows = {}
    for e in ("ferrocep", "ceiling", "flink"):
        for r in rounds:
            p = os.path.join(run, f"{e}-{r}.time")
            if os.path.exists(p):
                t = time_v(p)
                t["load"] = open(os.path.join(run, f"{e}-{r}.load")).read().split()[0]
                if e == "flink":
                    t.update(kv(os.path.join(run, f"flink-{r}.txt")))
                if e == "ceiling":
                    t.update(kv(os.path.join(run, f"ceiling-{r}.txt")))
                rows.setdefault(e, {})[r] = t
    med = lambda xs: statistics.median(xs) if xs else float("nan")

    print(f"# One core side by side ({meta.get('date')}, {meta.get('ferrocep')})\n")
    print(f"`{meta.get('command')}`; {n:,} events of `gen_orders.py --seed 1`; machine {meta.get('machine')}, "
          f"{meta.get('cpu')}, {meta.get('nproc')} vCPUs; {meta.get('rustc')}. {len(rounds)} rounds, "
          "the engines in turn (order rotated per round); medians.\n")
    print("| engine | wall s | events/s | CPU s | events per CPU-s | peak RSS MiB | wall s, each round |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for e, rs in rows.items():
        walls = [rs[r]["wall_s"] for r in sorted(rs)]
        w, c = med(walls), med([t["cpu_s"] for t in rs.values()])
        print(f"| {e} | {w:.2f} | {n / w / 1e3:,.0f} k | {c:.2f} | {n / c / 1e3:,.0f} k | "
              f"{med([t['rss_mib'] for t in rs.values()]):,.0f} | {' '.join(f'{x:.2f}' for x in walls)} |")
    if "flink" in rows:
        jr = [float(t["job_runtime_s"]) for t in rows["flink"].values() if "job_runtime_s" in t]
        if jr:
            print(f"| flink, net job runtime | {med(jr):.2f} | {n / med(jr) / 1e3:,.1f} k | | | | "
                  f"{' '.join(f'{x:.2f}' for x in jr)} |")
    print()

    def ratios(a, b, key=lambda t: t["wall_s"]):
        return [key(rows[b][r]) / key(rows[a][r]) for r in rounds if r in rows.get(a, {}) and r in rows.get(b, {})]

    print("| ratio (events/s) | median of the rounds' own | of the medians |")
    print("|---|---:|---:|")
    if "ceiling" in rows and "ferrocep" in rows:
        own = ratios("ferrocep", "ceiling")
        of = med([t["wall_s"] for t in rows["ceiling"].values()]) / med([t["wall_s"] for t in rows["ferrocep"].values()])
        print(f"| ferrocep ÷ ceiling | **{med(own) * 100:.0f} %** | {of * 100:.0f} % |")
        own = ratios("ferrocep", "ceiling", key=lambda t: t["cpu_s"])
        print(f"| ferrocep ÷ ceiling, per CPU-second | {med(own) * 100:.0f} % | |")
    if "flink" in rows and "ferrocep" in rows:
        own = ratios("ferrocep", "flink")
        of = med([t["wall_s"] for t in rows["flink"].values()]) / med([t["wall_s"] for t in rows["ferrocep"].values()])
        print(f"| ferrocep ÷ Flink, process wall | **{med(own):.1f}x** | {of:.1f}x |")
        own = ratios("ferrocep", "flink", key=lambda t: float(t.get("job_runtime_s", "nan")) if "job_runtime_s" in t else t["wall_s"])
        own = [x for x in (rows["flink"][r].get("job_runtime_s") and float(rows["flink"][r]["job_runtime_s"]) / rows["ferrocep"][r]["wall_s"]
                           for r in rounds if r in rows["flink"] and r in rows["ferrocep"]) if x]
        if own:
            print(f"| ferrocep ÷ Flink, Flink's net job runtime | {med(own):.1f}x | |")
    print()

    status = 0
    mine = kv(os.path.join(run, "ferrocep.counts"))
    checks = []
    for e in ("ceiling", "flink"):
        for r, t in rows.get(e, {}).items():
            want = {"match": t.get("matches"), "timeout": t.get("timeouts")}
            got = {"match": mine.get("match"), "timeout": mine.get("timeout")}
            if want != got:
                status = 1
                checks.append(f"FAIL: ferrocep {got} != {e} round {r} {want}")
                break
        else:
            if e in rows:
                checks.append(f"ok: ferrocep's match/timeout counts ({mine.get('match')}/{mine.get('timeout')}) equal {e}'s")
    print("\n".join(f"- {c}" for c in checks))

    with open(os.path.join(run, "raw.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["engine", "round", "wall_s", "cpu_s", "rss_mib", "load1", "flink_job_runtime_s"])
        for e, rs in rows.items():
            for r, t in sorted(rs.items()):
                w.writerow([e, r, t["wall_s"], t["cpu_s"], round(t["rss_mib"], 1), t["load"], t.get("job_runtime_s", "")])
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

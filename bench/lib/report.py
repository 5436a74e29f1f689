#!/usr/bin/env python3
"""Report of a bench/compare.sh run directory.

  report.py RUN_DIR            print the table and cross-checks; write RUN_DIR/summary.md, raw.csv
  report.py --readme RUN_DIR   print the summary.md of bench/runs/<date>-<machine>/

RUN_DIR holds, per size N and repeat r: N-VARIANT-r.time (VARIANT: ferrocep, ferrocep-w1 =
`--workers 1`, ceiling = the hand-specialised program), N-flink-bench-r.{time,txt} (GNU `/usr/bin/time -v` output and the oracle's
`bench` report), N-VARIANT.out (ferrocep's output of the last repeat), N-*.load (load average
before each run), and optionally N-flink-match.time / N-flink.out (Flink's `match` output).
Exit status 1 if a cross-check fails.
"""
import csv
import json
import os
import re
import statistics
import sys
from collections import Counter

# --- parsing ---------------------------------------------------------------------------------


def parse_time_v(path):
    """GNU time -v: wall s, user s, sys s, max RSS bytes, exit status."""
    text = open(path).read()

    def field(label):
        m = re.search(r"^\s*" + re.escape(label) + r":\s*(.+)$", text, re.M)
        if not m:
            raise ValueError(f"{path}: no '{label}'")
        return m.group(1).strip()

    wall = 0.0
    for part in field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":"):
        wall = wall * 60 + float(part)
    return {
        "wall_s": round(wall, 3),
        "user_s": float(field("User time (seconds)")),
        "sys_s": float(field("System time (seconds)")),
        "rss_bytes": int(field("Maximum resident set size (kbytes)")) * 1024,
        "exit": int(field("Exit status")),
    }


def parse_flink_bench(path):
    """The oracle's `bench` lines: events, matches, timeouts, late, job runtime, execute wall."""
    text = open(path).read()
    out = {}
    for k in ("events", "bad_lines", "matches", "timeouts", "late"):
        m = re.search(r"\b" + k + r"=(\d+)", text)
        out[k] = int(m.group(1)) if m else None
    for k in ("job_runtime_s", "execute_wall_s"):
        m = re.search(r"\b" + k + r"=([0-9.]+)", text)
        out[k] = float(m.group(1)) if m else None
    return out


def count_kinds(path):
    """match / timeout / late lines of a `match` output, by the line's first field."""
    c = Counter()
    with open(path, "rb") as f:
        for line in f:
            if line.startswith(b'{"kind":"'):
                c[line[9:line.index(b'"', 9)].decode()] += 1
            elif line.strip():
                c[json.loads(line).get("kind")] += 1
    return c


def canon(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def normalize(obj):
    """As conformance/check.py: (kind, key, stage -> events, timeout_at)."""
    kind = obj.get("kind")
    key = canon(obj.get("key"))
    if kind == "late":
        return (kind, key, canon(obj.get("event")), None)
    events = obj.get("events") or {}
    stages = canon({stage: [canon(e) for e in evs] for stage, evs in events.items()})
    return (kind, key, stages, obj.get("timeout_at") if kind == "timeout" else None)


def multiset(path):
    with open(path) as f:
        return Counter(normalize(json.loads(line)) for line in f if line.strip())


# --- report ----------------------------------------------------------------------------------


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt_rate(x):
    if x is None:
        return "-"
    return f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x / 1e3:.1f} k"


def fmt_s(x):
    return "-" if x is None else f"{x:.2f}"


def fmt_mib(b):
    return "-" if b is None else f"{b / 2**20:,.0f} MiB"


def ratio(a, b):
    return None if not a or not b else a / b


def fmt_pct(x):
    return "-" if x is None else f"{100 * x:.0f} %"


def fmt_x(x):
    return "-" if x is None else (f"{x:.1f}x" if x < 100 else f"{x:.0f}x")


# ferrocep variants: file name part -> label in the tables. The ceiling is the issue's
# hand-specialised single-job program (crates/ferrocep-bench/src/bin/ceiling.rs), run and
# checked like a ferrocep variant.
VARIANTS = [("ferrocep", "ferrocep"), ("ferrocep-w1", "ferrocep --workers 1"),
            ("ceiling", "hand-specialised ceiling")]
CEILING = "ceiling"


def read_runs(run, n, name):
    """The repeats of one engine at one size: parsed time files plus the load before each."""
    out, r = [], 1
    while os.path.exists(os.path.join(run, f"{n}-{name}-{r}.time")):
        t = parse_time_v(os.path.join(run, f"{n}-{name}-{r}.time"))
        t["load"] = open(os.path.join(run, f"{n}-{name}-{r}.load")).read().strip()
        if name == "flink-bench":
            t.update(parse_flink_bench(os.path.join(run, f"{n}-{name}-{r}.txt")))
        out.append(t)
        r += 1
    return out


def load_run(run):
    sizes = [int(s) for s in open(os.path.join(run, "sizes.txt")).read().split()]
    results = []
    for n in sizes:
        fe = {name: read_runs(run, n, name) for name, _ in VARIANTS}
        fe = {k: v for k, v in fe.items() if v}
        fm = None
        if os.path.exists(os.path.join(run, f"{n}-flink-match.time")):
            fm = parse_time_v(os.path.join(run, f"{n}-flink-match.time"))
            fm["load"] = open(os.path.join(run, f"{n}-flink-match.load")).read().strip()
        results.append({"n": n, "ferrocep": fe, "flink": read_runs(run, n, "flink-bench"),
                        "flink_match": fm})
    return results


def summarize(run, res):
    """Medians, ratios and cross-checks of one size; returns (row dict, check lines, ok)."""
    n = res["n"]
    fl = res["flink"]
    s = {"events": n, "variants": []}
    s["fl_wall"] = med([t["wall_s"] for t in fl])
    s["fl_job"] = med([t["job_runtime_s"] for t in fl])
    s["fl_cpu"] = med([t["user_s"] + t["sys_s"] for t in fl])
    s["fl_rss"] = med([t["rss_bytes"] for t in fl])
    s["fl_eps_job"] = med([n / t["job_runtime_s"] for t in fl if t["job_runtime_s"]])
    s["fl_eps_wall"] = med([n / t["wall_s"] for t in fl])
    s["fl_epcpu"] = med([n / (t["user_s"] + t["sys_s"]) for t in fl])

    checks, ok = [], True
    everything = fl + ([res["flink_match"]] if res["flink_match"] else [])
    for ts in res["ferrocep"].values():
        everything += ts
    for t in everything:
        if t["exit"] != 0:
            ok = False
            checks.append(f"FAIL a run exited with status {t['exit']}")
    flink_out = os.path.join(run, f"{n}-flink.out")
    flink_set = multiset(flink_out) if os.path.exists(flink_out) and res["flink_match"] else None
    for name, label in VARIANTS:
        fe = res["ferrocep"].get(name)
        if not fe:
            continue
        v = {"name": name, "label": label, "repeats": len(fe)}
        v["wall"] = med([t["wall_s"] for t in fe])
        v["cpu"] = med([t["user_s"] + t["sys_s"] for t in fe])
        v["rss"] = med([t["rss_bytes"] for t in fe])
        v["eps"] = med([n / t["wall_s"] for t in fe])
        v["epcpu"] = med([n / (t["user_s"] + t["sys_s"]) for t in fe])
        v["x_job"] = ratio(v["eps"], s["fl_eps_job"])
        v["x_wall"] = ratio(v["eps"], s["fl_eps_wall"])
        v["x_cpu"] = ratio(v["epcpu"], s["fl_epcpu"])
        v["x_rss"] = ratio(s["fl_rss"], v["rss"])
        out = os.path.join(run, f"{n}-{name}.out")
        kinds = count_kinds(out)
        v["kinds"] = kinds
        for i, t in enumerate(fl, 1):
            want = (t["events"], t["matches"], t["timeouts"], t["late"])
            have = (n, kinds["match"], kinds["timeout"], kinds["late"])
            if want == have:
                checks.append(f"ok   {label}: counts equal Flink bench run {i}: "
                              f"{kinds['match']} matches, {kinds['timeout']} timeouts, "
                              f"{kinds['late']} late of {n} events")
            else:
                ok = False
                checks.append(f"FAIL {label}: counts (events, matches, timeouts, late) {have}, "
                              f"Flink bench run {i} {want}")
        if flink_set is not None:
            mine = multiset(out)
            if mine == flink_set:
                checks.append(f"ok   {label}: output equals Flink match's as a multiset "
                              f"({sum(mine.values())} lines)")
            else:
                ok = False
                missing, extra = flink_set - mine, mine - flink_set
                checks.append(f"FAIL {label}: outputs differ: {sum(missing.values())} of Flink's "
                              f"lines missing (e.g. {list(missing)[:2]}), "
                              f"{sum(extra.values())} extra (e.g. {list(extra)[:2]})")
        s["variants"].append(v)
    ceiling = next((v for v in s["variants"] if v["name"] == CEILING), None)
    for v in s["variants"]:
        v["of_ceiling"] = ratio(v["eps"], ceiling and ceiling["eps"])
        v["of_ceiling_cpu"] = ratio(v["epcpu"], ceiling and ceiling["epcpu"])
    if flink_set is None:
        checks.append("--   full outputs not compared (no Flink match run at this size)")
    else:
        checks.append(f"--   (Flink match took {res['flink_match']['wall_s']:.1f} s)")
    s["checks_ok"] = ok
    return s, checks, ok


def table(rows):
    out = [
        "| events | engine | wall s | events/s (wall) | Flink job s | events/s (job) | "
        "CPU s (user+sys) | events per CPU-s | peak RSS |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in rows:
        n = f"{s['events']:,}"
        for v in s["variants"]:
            out.append(f"| {n} | {v['label']} | {fmt_s(v['wall'])} | {fmt_rate(v['eps'])} | - | - | "
                       f"{fmt_s(v['cpu'])} | {fmt_rate(v['epcpu'])} | {fmt_mib(v['rss'])} |")
        out.append(f"| {n} | Flink 2.3 | {fmt_s(s['fl_wall'])} | {fmt_rate(s['fl_eps_wall'])} | "
                   f"{fmt_s(s['fl_job'])} | {fmt_rate(s['fl_eps_job'])} | {fmt_s(s['fl_cpu'])} | "
                   f"{fmt_rate(s['fl_epcpu'])} | {fmt_mib(s['fl_rss'])} |")
    out += [
        "",
        "| events | engine | ÷ Flink: events/s vs Flink job runtime | vs Flink process wall | "
        "events per CPU-s | peak RSS (Flink ÷ ferrocep) | share of the ceiling: events/s | "
        "events per CPU-s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in rows:
        for v in s["variants"]:
            if v["name"] == CEILING:
                continue
            out.append(f"| {s['events']:,} | {v['label']} | {fmt_x(v['x_job'])} | "
                       f"{fmt_x(v['x_wall'])} | {fmt_x(v['x_cpu'])} | {fmt_x(v['x_rss'])} | "
                       f"{fmt_pct(v['of_ceiling'])} | {fmt_pct(v['of_ceiling_cpu'])} |")
    return "\n".join(out)


NOTES = """\
- ferrocep events/s = events / wall time of the whole `ferrocep match` process (it writes every
  output line to a file; by default it uses as many workers as cores, `--workers 1` parses and
  matches on one thread); Flink's `bench` only counts outputs. Flink events/s (job) = events /
  the net job runtime Flink reports (no JVM or mini-cluster start-up); (wall) = events / wall
  time of the whole process. CPU = user + sys of the whole process (all threads, GC, JIT).
- The hand-specialised ceiling is the issue's single-job program (serde_json into a borrowed
  struct, an Fx hash map of pending orders, a FIFO deadline queue, buffered output in ferrocep's
  format; in-order input only): `crates/ferrocep-bench/src/bin/ceiling.rs`. Its output is
  checked against Flink like ferrocep's; "share of the ceiling" = ferrocep ÷ ceiling.
- Peak RSS = `Maximum resident set size` of `/usr/bin/time -v` (Flink: `-Xmx4g`, ParallelGC).
- Flink at small sizes is still warming up (JIT, first GCs); compare steady-state throughput
  on 1M+ events.
- Medians over the repeats when `--repeat` > 1. The machine may be shared: the 1-minute load
  average before each run is in raw.csv."""


def write_raw(run, results):
    with open(os.path.join(run, "raw.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["events", "engine", "repeat", "wall_s", "user_s", "sys_s", "max_rss_kib",
                    "flink_job_runtime_s", "flink_execute_wall_s", "matches", "timeouts", "late",
                    "loadavg_1_5_15_before"])
        for res in results:
            for name, runs in res["ferrocep"].items():
                kinds = count_kinds(os.path.join(run, f"{res['n']}-{name}.out"))
                for i, t in enumerate(runs, 1):
                    w.writerow([res["n"], name, i, t["wall_s"], t["user_s"], t["sys_s"],
                                t["rss_bytes"] // 1024, "", "", kinds["match"], kinds["timeout"],
                                kinds["late"], t["load"]])
            for i, t in enumerate(res["flink"], 1):
                w.writerow([res["n"], "flink-bench", i, t["wall_s"], t["user_s"], t["sys_s"],
                            t["rss_bytes"] // 1024, t["job_runtime_s"], t["execute_wall_s"],
                            t["matches"], t["timeouts"], t["late"], t["load"]])
            if res["flink_match"]:
                t = res["flink_match"]
                w.writerow([res["n"], "flink-match", 1, t["wall_s"], t["user_s"], t["sys_s"],
                            t["rss_bytes"] // 1024, "", "", "", "", "", t["load"]])


def report(run):
    results = load_run(run)
    rows, lines, all_ok = [], [], True
    for res in results:
        s, checks, ok = summarize(run, res)
        rows.append(s)
        all_ok &= ok
        lines.append(f"{res['n']:,} events:")
        lines += ["  " + c for c in checks]
    loads = [float(t["load"].split()[0]) for res in results
             for t in sum(res["ferrocep"].values(), []) + res["flink"]
             + ([res["flink_match"]] if res["flink_match"] else [])]
    cores = os.cpu_count() or 0
    load_line = (f"- 1-minute load average before the runs: {min(loads):.1f} to {max(loads):.1f} "
                 f"on {cores} cores" + (" (other jobs were running: expect both engines, Flink's "
                 "threads especially, to be slower than on an idle machine)." if max(loads) > cores
                 else "."))
    text = "\n".join([table(rows), "", "Cross-checks (ferrocep output vs Flink):", "",
                      "```text", *lines, "```", "", NOTES, load_line, ""])
    with open(os.path.join(run, "summary.md"), "w") as f:
        f.write(text)
    write_raw(run, results)
    print(text)
    return 0 if all_ok else 1


def readme(run):
    machine = open(os.path.join(run, "machine.txt")).read()
    info = dict(line.split(": ", 1) for line in machine.splitlines() if ": " in line)
    summary = open(os.path.join(run, "summary.md")).read()
    print(f"""# ferrocep vs Flink CEP — {info.get('date', '?')[:10]}, {info.get('machine', '?')}

One side-by-side run of `bench/compare.sh` (ferrocep `match` and the Flink 2.3 oracle on the
same `gen_orders.py --seed 1` input, one after the other, each under `/usr/bin/time -v`). These
numbers are from this run only; the machine is shared and noisy (±10 % or worse between runs),
so compare the ratios measured side by side, not absolute numbers across runs.

Command (from the repository root):

```sh
{info.get('command', 'bench/compare.sh')}
```

Machine and versions:

```text
{machine.rstrip()}
```

## Results

{summary.rstrip()}

## Files

`raw.csv`: every process run (wall, user and sys time, peak RSS, output counts, Flink's job
runtime, load average before it). The raw `/usr/bin/time -v` outputs and Flink's `bench`
reports are not kept: every number of theirs that the tables use is in `raw.csv`.""")
    return 0


def main(argv):
    if len(argv) == 2 and argv[0] == "--readme":
        return readme(argv[1])
    if len(argv) == 1:
        return report(argv[0])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

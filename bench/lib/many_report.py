#!/usr/bin/env python3
"""Report of a bench/many.sh run directory.

  many_report.py RUN_DIR            check the outputs, print the table; write RUN_DIR/summary.md, raw.csv
  many_report.py --readme RUN_DIR   print the summary.md of bench/runs/<date>-<machine>-many/

RUN_DIR holds specs/NAME.json (the K specs), combined.{out,time,load} (one `ferrocep match`
with all K specs), separate/NAME.{out,time,load} (one run per spec), reference.{out,time,load}
(the unfiltered order-timeout job) and machine.txt. `.time` files are GNU `/usr/bin/time -v`
output.

Cross-check: with several specs `ferrocep match` writes `,"pattern":NAME` right after the
`"kind":"..."` member of every line (crates/ferrocep/src/output.rs, `pattern_label`); with one
spec it writes no label. Taking the label out of each combined line must give, for each NAME,
exactly the lines of the separate run of spec NAME, as a multiset (lines of different keys may
come in another order). Lines are compared byte for byte (ferrocep writes events and keys as
the text they had in the input); the lines of a pattern that differ are then normalised to
canonical JSON (sorted keys, no spaces) and compared again: equal there is reported as a
formatting difference, not a failure. Exit status 1 if the check fails.
"""
import csv
import hashlib
import json
import os
import re
import statistics
import sys
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report as report_lib  # noqa: E402  (compare.sh's report: the time -v reader)

LABEL = re.compile(rb'^(\{"kind":"[a-z]+")(,"pattern":("(?:[^"\\]|\\.)*"))')


def parse_time_v(path):
    """GNU time -v (report.py's reader), plus cpu_s = user + sys."""
    t = report_lib.parse_time_v(path)
    t["cpu_s"] = t["user_s"] + t["sys_s"]
    return t


def digest(line):
    return hashlib.blake2b(line, digest_size=16).digest()


def canon_line(line):
    obj = json.loads(line)
    obj.pop("pattern", None)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def strip_label(line):
    """(pattern name, the line without its label), or (None, line) when it has none."""
    m = LABEL.match(line)
    if not m:
        return None, line
    return json.loads(m.group(3)), m.group(1) + line[m.end():]


def read_lines(path):
    with open(path, "rb") as f:
        for line in f:
            line = line.rstrip(b"\n")
            if line:
                yield line


def load(run):
    names = sorted(os.path.basename(p)[:-5] for p in os.listdir(os.path.join(run, "specs"))
                   if p.endswith(".json"))
    runs = {"combined": parse_time_v(os.path.join(run, "combined.time")),
            "reference": parse_time_v(os.path.join(run, "reference.time"))}
    separate = {n: parse_time_v(os.path.join(run, "separate", n + ".time")) for n in names}
    return names, runs, separate


def cross_check(run, names):
    """Compare the outputs. Returns (ok, messages, lines per spec, combined lines, reference lines)."""
    msgs = []
    ok = True
    # Combined: per pattern, the multiset of line digests (labels taken out).
    combined = {}
    combined_lines = 0
    unlabelled = 0
    for line in read_lines(os.path.join(run, "combined.out")):
        combined_lines += 1
        name, bare = strip_label(line)
        if name is None:
            unlabelled += 1
            name = json.loads(line).get("pattern")
        combined.setdefault(name, Counter())[digest(bare)] += 1
    if unlabelled:
        ok = False
        msgs.append(f"FAIL: {unlabelled} combined lines without a \"pattern\" label right after \"kind\"")
    stray = {n: sum(c.values()) for n, c in combined.items() if n not in set(names)}
    if stray:
        ok = False
        msgs.append(f"FAIL: combined lines name unknown patterns: {dict(list(stray.items())[:5])}")

    per_spec = {}
    outputs = set()
    bad = []
    for n in names:
        sep = Counter()
        count = 0
        for line in read_lines(os.path.join(run, "separate", n + ".out")):
            count += 1
            if LABEL.match(line):
                ok = False
                msgs.append(f"FAIL: the single-spec run of {n} labels its lines")
                break
            sep[digest(line)] += 1
        per_spec[n] = count
        outputs.add(frozenset(sep.items()))
        mine = combined.get(n, Counter())
        if mine != sep:
            bad.append((n, sum((mine - sep).values()), sum((sep - mine).values())))
    # A byte difference that disappears on canonical JSON is formatting, not a different result.
    judged = [(n, extra, missing) + semantic(run, n) for n, extra, missing in bad]
    real = [b for b in judged if not b[3]]
    formatting = [b[0] for b in judged if b[3]]
    if formatting:
        msgs.append(f"note: {len(formatting)} patterns ({', '.join(formatting[:5])}"
                    f"{', ...' if len(formatting) > 5 else ''}) differ in bytes but are equal as "
                    f"canonical JSON (sorted keys, no spaces)")
    if real:
        ok = False
        for n, extra, missing, _, why in real[:10]:
            msgs.append(f"FAIL: pattern {n}: {extra} combined lines not in its separate run, "
                        f"{missing} separate lines not in the combined run{why}")
        if len(real) > 10:
            msgs.append(f"FAIL: ... and {len(real) - 10} more patterns differ")
    else:
        msgs.append(f"ok: the combined output ({combined_lines} lines, labels taken out) equals the "
                    f"union of the {len(names)} separate outputs as a multiset, pattern by pattern")

    counts = sorted(per_spec.values())
    empty = sum(1 for c in counts if c == 0)
    msgs.append(f"{'ok' if len(outputs) == len(names) else 'WARNING'}: {len(outputs)} distinct outputs "
                f"among {len(names)} specs; lines per spec min {counts[0]}, median "
                f"{statistics.median(counts):g}, max {counts[-1]}; {empty} specs with no output")
    reference_lines = sum(1 for _ in read_lines(os.path.join(run, "reference.out")))
    return ok, msgs, per_spec, combined_lines, reference_lines


def semantic(run, name):
    """Whether the outputs for `name` are equal as canonical JSON: (equal, explanation)."""
    try:
        mine = Counter()
        for line in read_lines(os.path.join(run, "combined.out")):
            n, _ = strip_label(line)
            if n == name or (n is None and json.loads(line).get("pattern") == name):
                mine[canon_line(line)] += 1
        sep = Counter(canon_line(l) for l in read_lines(os.path.join(run, "separate", name + ".out")))
    except ValueError as e:
        return False, f" (not JSON: {e})"
    if mine == sep:
        return True, ""
    diff = list((mine - sep).elements())[:1] or list((sep - mine).elements())[:1]
    return False, f" (also as canonical JSON; e.g. {diff[0][:200]})"


def fmt_s(x):
    return f"{x:.2f}"


def fmt_mib(b):
    return f"{b / 2**20:.1f}"


def fmt_pct(x):
    return "-" if x is None else f"{x * 100:.0f}%"


def fmt_x(x):
    if x is None:
        return "-"
    return f"{x:.2f}×" if x < 10 else f"{x:.1f}×"


def summarize(run):
    names, runs, separate = load(run)
    k = len(names)
    sep = list(separate.values())
    sums = {m: sum(r[m] for r in sep) for m in ("wall_s", "cpu_s")}
    single = {m: statistics.median(r[m] for r in sep) for m in ("wall_s", "cpu_s", "rss_bytes")}
    comb = runs["combined"]
    return names, runs, separate, {
        "k": k,
        "combined": comb,
        "separate": {"wall_s": sums["wall_s"], "cpu_s": sums["cpu_s"],
                     "rss_bytes": max(r["rss_bytes"] for r in sep),
                     "rss_sum": sum(r["rss_bytes"] for r in sep)},
        "single": single,
        "reference": runs["reference"],
    }


def machine(run):
    out = {}
    path = os.path.join(run, "machine.txt")
    if os.path.exists(path):
        for line in open(path):
            if ": " in line:
                k, v = line.rstrip("\n").split(": ", 1)
                out[k] = v
    return out


def table(s, lines):
    k = s["k"]
    c, sp, one, ref = s["combined"], s["separate"], s["single"], s["reference"]
    rows = [
        ("| run | processes | wall s | CPU s (user+sys) | peak RSS MiB | output lines |"),
        ("|---|---:|---:|---:|---:|---:|"),
        (f"| combined: {k} specs in one `ferrocep match` | 1 | {fmt_s(c['wall_s'])} | "
         f"{fmt_s(c['cpu_s'])} | {fmt_mib(c['rss_bytes'])} | {lines['combined']} |"),
        (f"| separate: {k} runs of one spec, summed | {k} | {fmt_s(sp['wall_s'])} | "
         f"{fmt_s(sp['cpu_s'])} | {fmt_mib(sp['rss_bytes'])} (largest; sum {fmt_mib(sp['rss_sum'])}) | "
         f"{lines['separate']} |"),
        (f"| single: one spec (median of the {k} separate runs) | 1 | {fmt_s(one['wall_s'])} | "
         f"{fmt_s(one['cpu_s'])} | {fmt_mib(one['rss_bytes'])} | {lines['single']:g} |"),
        (f"| reference: the unfiltered order-timeout job (1 spec, every order) | 1 | "
         f"{fmt_s(ref['wall_s'])} | {fmt_s(ref['cpu_s'])} | {fmt_mib(ref['rss_bytes'])} | "
         f"{lines['reference']} |"),
        "",
        "| ratio | wall | CPU | peak RSS |",
        "|---|---:|---:|---:|",
        (f"| separate / combined (saved by one run of {k} specs) | {fmt_x(report_lib.ratio(sp['wall_s'], c['wall_s']))} | "
         f"{fmt_x(report_lib.ratio(sp['cpu_s'], c['cpu_s']))} | {fmt_x(report_lib.ratio(sp['rss_sum'], c['rss_bytes']))} (sum of peaks) |"),
        (f"| combined / single (cost of {k} specs relative to 1) | {fmt_x(report_lib.ratio(c['wall_s'], one['wall_s']))} | "
         f"{fmt_x(report_lib.ratio(c['cpu_s'], one['cpu_s']))} | {fmt_x(report_lib.ratio(c['rss_bytes'], one['rss_bytes']))} |"),
        (f"| combined / reference ({k} specs vs the unfiltered job) | "
         f"{fmt_x(report_lib.ratio(c['wall_s'], ref['wall_s']))} | {fmt_x(report_lib.ratio(c['cpu_s'], ref['cpu_s']))} | "
         f"{fmt_x(report_lib.ratio(c['rss_bytes'], ref['rss_bytes']))} |"),
    ]
    marginal = (c["cpu_s"] - one["cpu_s"]) / (k - 1)
    rows += ["", f"Each spec beyond the first adds {marginal * 1000:.1f} ms of CPU to the combined run "
             f"({fmt_pct(report_lib.ratio(marginal, one['cpu_s']))} of a single-spec run's {one['cpu_s'] * 1000:.0f} ms)."]
    return "\n".join(rows)


def write_raw(run, names, runs, separate, per_spec, lines):
    with open(os.path.join(run, "raw.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "wall_s", "user_s", "sys_s", "max_rss_bytes", "exit", "output_lines", "load1"])

        def load1(name):
            p = os.path.join(run, name + ".load")
            return open(p).read().split()[0] if os.path.exists(p) else ""

        for name, r, n in [("combined", runs["combined"], lines["combined"]),
                           ("reference", runs["reference"], lines["reference"])] + \
                          [(f"separate/{n}", separate[n], per_spec[n]) for n in names]:
            w.writerow([name, r["wall_s"], r["user_s"], r["sys_s"], r["rss_bytes"], r["exit"], n,
                        load1(name)])


def report(run):
    names, runs, separate, s = summarize(run)
    ok, msgs, per_spec, combined_lines, reference_lines = cross_check(run, names)
    failed = [n for n, r in [("combined", runs["combined"]), ("reference", runs["reference"])]
              + list(separate.items()) if r["exit"] != 0]
    if failed:
        ok = False
        msgs.append(f"FAIL: non-zero exit status: {', '.join(failed[:10])}")
    lines = {"combined": combined_lines, "separate": sum(per_spec.values()),
             "single": statistics.median(per_spec.values()), "reference": reference_lines}
    m = machine(run)
    head = (f"{m.get('events', '?')} events, {m.get('specs', s['k'])} specs, "
            f"--workers {m.get('workers', '?')}; {m.get('nproc', '?')} cores, "
            f"ferrocep {m.get('ferrocep', '?')}")
    text = "\n".join([head, "", table(s, lines), "", "Cross-checks:", ""] + [f"- {x}" for x in msgs])
    print(text)
    with open(os.path.join(run, "summary.md"), "w") as f:
        f.write(text + "\n")
    write_raw(run, names, runs, separate, per_spec, lines)
    return 0 if ok else 1


def readme(run):
    m = machine(run)
    summary = open(os.path.join(run, "summary.md")).read()
    print(f"# bench/many.sh, {m.get('date', '?')[:10]}, {m.get('machine', '?')}\n")
    print("K patterns over one stream: one `ferrocep match` with K specs against K separate runs "
          "(see bench/README.md).\n")
    print("```")
    for k, v in m.items():
        print(f"{k}: {v}")
    print("```\n")
    print(summary)
    print("`raw.csv`: one row per process (wall, user and sys time, peak RSS, exit status, output "
          "lines, load average before it); the raw `/usr/bin/time -v` outputs are not kept.")
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

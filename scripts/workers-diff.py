#!/usr/bin/env python3
"""Differential hunt: `ferrocep match --workers N` against `--workers 1` on random cases.

  scripts/workers-diff.py [--bin target/release/ferrocep] [--seed 1] [--count 300]
                          [--workers 2,3,5] [--out DIR]

Each candidate comes from conformance/gen_random.py (`show --seed S --candidate J`,
no Flink run), then, from a generator of its own seeded with J: its timestamps are often
shifted so that some are <= 0 (Flink gives partial matches that start there no window timer),
and an unkeyed spec is often given a key with events spread over 7 keys (so that each worker
holds only some keys and must still see every watermark at which its keys' timers fall due).
One worker's output is oracle-checked elsewhere (tests/conformance.rs, gen_random.py cases);
here every worker count must give it again, as a multiset of lines, with the same exit status.
A case that differs is written to OUT/fail-SEED-J.json (check.py format, no "expected": record
it with ../shared/oracle/flink/cases.py conform). Exit status 1 if any differs.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
GEN = os.path.join(HERE, "..", "conformance", "gen_random.py")


def candidate(seed, j):
    out = subprocess.run([sys.executable, GEN, "show", "--seed", str(seed), "--candidate", str(j)],
                         capture_output=True, text=True, check=True).stdout
    case = json.loads(out)
    rnd = random.Random(j)
    events = case["events"]
    if events and rnd.random() < 0.8:
        shift = rnd.choice([e["ts"] for e in events])
        for e in events:
            e["ts"] -= shift
    if "key" not in case["spec"] and rnd.random() < 0.9:
        case["spec"]["key"] = "k"
        for e in events:
            e["k"] = rnd.choice("abcdefg")
    return case


def run(binary, tmp, case, workers):
    proc = subprocess.run([binary, "match", "--spec", os.path.join(tmp, "spec.json"),
                           "--input", os.path.join(tmp, "events.jsonl"),
                           "--end-of-input", case.get("end_of_input", "flush"),
                           "--workers", str(workers)], capture_output=True, text=True)
    return proc.returncode, sorted(proc.stdout.splitlines())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "target", "release", "ferrocep"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--workers", default="2,3,5")
    ap.add_argument("--out", default=".")
    args = ap.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    differ = 0
    with tempfile.TemporaryDirectory() as tmp:
        for j in range(args.count):
            case = candidate(args.seed, j)
            with open(os.path.join(tmp, "spec.json"), "w") as f:
                json.dump(case["spec"], f)
            with open(os.path.join(tmp, "events.jsonl"), "w") as f:
                f.writelines(json.dumps(e) + "\n" for e in case["events"])
            one = run(args.bin, tmp, case, 1)
            bad = [w for w in counts if run(args.bin, tmp, case, w) != one]
            if bad:
                differ += 1
                path = os.path.join(args.out, f"fail-{args.seed}-{j}.json")
                with open(path, "w") as f:
                    json.dump(case, f, indent=1)
                print(f"DIFF candidate {j}: --workers {bad} differ from --workers 1 ({path})")
    print(f"seed {args.seed}: {args.count} cases, {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())

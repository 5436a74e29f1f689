#!/usr/bin/env python3
"""Seeded random differential cases, with expectations from real Flink (the oracle).

Find semantic bugs before anyone else does: generate cases, then run them through the engine
with check.py (`python3 check.py target/release/ferrocep OUT_DIR`).

  gen_random.py generate --out DIR [--seed 1] [--count 150] [--jobs 2] [--max-minutes 40]
                  [--oracle $FERROCEP_ORACLE_DIR/run.sh] [--log DIR/gen-log.jsonl]
      Generates candidates 0, 1, 2, ... (candidate j uses random.Random("rnd-SEED-j")), runs each
      through the oracle and writes the accepted ones as OUT/rand-NNNN.json (check.py format,
      "expected" = the oracle's output objects). A candidate is dropped when the oracle rejects
      the spec (exit 2), the job fails (exit 1), it runs past 90 s, its output exceeds 400 lines,
      or its output is empty and the candidate's own coin (p = 0.8) says drop. Acceptance is
      decided in candidate order, so the same seed and oracle give the same files whatever --jobs.
      Every candidate's fate is appended to --log (JSON lines).
  gen_random.py show --seed 1 --candidate J   print candidate J as a case (no oracle run)
  gen_random.py stats DIR                     feature coverage counts of the case files in DIR

Stdlib only. Events look like {"id": n, "type": "a|b|c", "v": 0..9, "ts": ms > 0[, "k": key]}.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
# In this repository the Flink oracle is not vendored (it needs Flink and Java): it is found in
# $FERROCEP_ORACLE_DIR, else in the shared checkout next to the repository (../shared/oracle/flink).
DEFAULT_ORACLE = os.path.normpath(os.path.join(
    os.environ.get("FERROCEP_ORACLE_DIR")
    or os.path.join(HERE, "..", "..", "shared", "oracle", "flink"), "run.sh"))
TYPES = ["a", "b", "c"]
NAME_POOLS = [
    ["s1", "s2", "s3", "s4"],
    ["start", "middle", "then", "end"],
    ["first", "second", "third", "fourth"],
    ["A", "B", "C", "D"],
]
KEEP_EMPTY_P = 0.2          # an empty-output candidate is kept with this probability
MAX_OUTPUT_LINES = 400
ORACLE_TIMEOUT_S = 90


# ---------------------------------------------------------------- durations and expressions

def fmt_dur(rng, ms):
    """A duration in one of the spec's forms: integer ms, "Nms", or "Ns"/"Nm" when exact."""
    forms = ["int", "ms"]
    if ms % 1000 == 0 and ms > 0:
        forms += ["s", "s"]
    if ms % 60000 == 0 and ms > 0:
        forms.append("m")
    f = rng.choice(forms)
    if f == "int":
        return ms
    if f == "ms":
        return f"{ms}ms"
    if f == "s":
        return f"{ms // 1000}s"
    return f"{ms // 60000}m"


def q(rng, s):
    return f"'{s}'" if rng.random() < 0.1 else f'"{s}"'


def atom(rng, focus=None):
    """One comparison. `focus` (a type) biases the atom towards that type."""
    r = rng.random()
    t = focus or rng.choice(TYPES)
    if r < 0.42:
        return f"type == {q(rng, t)}"
    if r < 0.50:
        return f"type != {q(rng, rng.choice(TYPES))}"
    if r < 0.62:
        others = [x for x in TYPES if x != t]
        lst = sorted({t, rng.choice(others)})
        return "type in [" + ", ".join(q(rng, x) for x in lst) + "]"
    if r < 0.70:
        vals = sorted(rng.sample(range(10), rng.randint(2, 5)))
        return "v in [" + ", ".join(str(x) for x in vals) + "]"
    op = rng.choice(["<", ">", "<", ">", "<=", ">="])
    n = rng.randint(1, 8)
    return f"v {op} {n}"


def expr(rng, focus=None):
    """A condition: mostly a type test, sometimes combined with && / || / ! / parentheses."""
    r = rng.random()
    if r < 0.45:
        return f"type == {q(rng, focus)}" if focus and rng.random() < 0.7 else atom(rng, focus)
    if r < 0.70:
        return f"{atom(rng, focus)} && {vatom(rng)}"
    if r < 0.88:
        return f"{atom(rng, focus)} || {atom(rng)}"
    if r < 0.95:
        return f"({atom(rng, focus)} || {atom(rng)}) && {vatom(rng)}"
    return f"!({atom(rng)})"


def vatom(rng):
    """A comparison on v only (a second conjunct that does not contradict a type test)."""
    if rng.random() < 0.2:
        vals = sorted(rng.sample(range(10), rng.randint(3, 6)))
        return "v in [" + ", ".join(str(x) for x in vals) + "]"
    op = rng.choice(["<", ">", "<=", ">=", "!="])
    return f"v {op} {rng.randint(1, 8)}"


# ---------------------------------------------------------------- spec

def gen_spec(rng, j):
    n_stages = rng.choices([1, 2, 3, 4], weights=[12, 35, 33, 20])[0]
    names = list(rng.choice(NAME_POOLS))[:n_stages]
    focus = [rng.choice(TYPES) for _ in range(n_stages)]
    stages = []
    for i in range(n_stages):
        st = {"name": names[i]}
        last = i == n_stages - 1
        neg = False
        if i > 0:
            c = rng.choices(
                ["next", "followed_by", "followed_by_any", "not_next", "not_followed_by", None],
                weights=[22, 22, 20, 14, 14, 8])[0]
            if c in ("not_next", "not_followed_by"):
                neg = True
            if c is not None:
                st["contiguity"] = c
        if rng.random() < 0.93:
            st["where"] = expr(rng, focus[i])
        if not neg or rng.random() < 0.03:   # a few illegal quantified negations for the oracle
            quant(rng, st, last)
        stages.append(st)

    # An optional stage right before a negation is rejected by Flink; mostly avoid it.
    for i in range(1, n_stages):
        if stages[i].get("contiguity", "").startswith("not_") and stages[i - 1].get("optional"):
            if rng.random() < 0.9:
                del stages[i - 1]["optional"]

    spec = {}
    if rng.random() < 0.3:
        spec["name"] = f"rand-{j}"
    keyed = rng.random() < 0.55
    key_field = rng.choice(["k", "k", "user"]) if keyed else None
    if keyed:
        spec["key"] = key_field
    return spec, stages, keyed, key_field


def quant(rng, st, last):
    r = rng.random()
    looping = times = False
    if r < 0.36:
        pass
    elif r < 0.48:
        st["times"] = rng.randint(1, 3)
        times = True
    elif r < 0.60:
        a = rng.choices([0, 1, 2], weights=[1, 8, 6])[0]
        st["times"] = [a, a + rng.randint(0, 2)]
        times = True
    elif r < 0.78:
        st["times_or_more"] = rng.randint(1, 3)
        looping = True
    else:
        st["one_or_more"] = True
        looping = True
    if rng.random() < 0.22:
        st["optional"] = True
    if looping or times:
        if rng.random() < (0.25 if not last else 0.08):
            st["greedy"] = True
        if rng.random() < 0.22:
            st["consecutive"] = True
        if rng.random() < 0.18 and not st.get("consecutive") or rng.random() < 0.02:
            st["allow_combinations"] = True
    if looping and rng.random() < 0.35 and (not st.get("greedy") or rng.random() < 0.1):
        st["until"] = expr(rng)
    elif not looping and rng.random() < 0.01:
        st["until"] = expr(rng)   # illegal, Flink rejects


def is_looping(st):
    return "times_or_more" in st or st.get("one_or_more") or "times" in st


# ---------------------------------------------------------------- events

STAGE_WITHIN = 0.0   # share of later stages given a per-stage within (--stage-within)


def gen_case(seed, j):
    rng = random.Random(f"rnd-{seed}-{j}")
    spec, stages, keyed, key_field = gen_spec(rng, j)

    unit = rng.choice([1, 5, 10, 100, 1000])
    base = rng.choice([rng.randint(1, 60) * unit, 1700000000000])
    p_tie = rng.choice([0.0, 0.1, 0.25])
    max_gap = rng.choice([1, 2, 3, 5])
    # Combinatorial patterns get fewer events so the output stays readable.
    explosive = any(st.get("allow_combinations") or
                    (st.get("contiguity") == "followed_by_any" and is_looping(st))
                    for st in stages)
    n = rng.randint(5, 14 if explosive else 30)

    ooo_units = 0 if rng.random() < 0.55 else rng.randint(1, 3)
    time_spec = {"field": "ts"}
    if ooo_units or rng.random() < 0.3:
        time_spec["max_out_of_orderness"] = fmt_dur(rng, ooo_units * unit)
    spec["time"] = time_spec

    avg_gap = (max_gap + 1) / 2 * (1 - p_tie)
    need_within = stages[-1].get("contiguity") == "not_followed_by"
    if rng.random() < 0.62 or (need_within and rng.random() < 0.9):
        w_units = rng.randint(1, max(2, int(n * avg_gap * 0.6)))
        spec["within"] = fmt_dur(rng, w_units * unit)

    if STAGE_WITHIN:   # its own stream of draws, so cases without it stay as they were
        srng = random.Random(f"{seed}-{j}-stage-within")
        for st in stages[1:]:
            if srng.random() < STAGE_WITHIN:
                st["within"] = fmt_dur(srng, srng.randint(1, max(2, int(3 * avg_gap))) * unit)

    skip = rng.choices(["no_skip", None, "skip_to_next", "skip_past_last_event",
                        "skip_to_first", "skip_to_last"],
                       weights=[22, 10, 17, 18, 17, 16])[0]
    if skip in ("skip_to_first", "skip_to_last"):
        pos = [s["name"] for s in stages if not s.get("contiguity", "").startswith("not_")]
        target = rng.choice(pos) if rng.random() < 0.92 else rng.choice(stages)["name"]
        spec["skip"] = {skip: target}
    elif skip is not None:
        spec["skip"] = skip
    spec["stages"] = stages

    # events: nominal increasing timestamps, some displaced backwards (maybe late)
    tw = [rng.random() + 0.15 for _ in TYPES]
    nominal, t = [], base
    for i in range(n):
        if i:
            t += 0 if rng.random() < p_tie else rng.randint(1, max_gap) * unit
        nominal.append(t)
    disorder = rng.random() < 0.45
    p_dis = rng.uniform(0.08, 0.3)
    if keyed:
        n_keys = rng.randint(1, 3)
        int_keys = rng.random() < 0.3
        keys = list(range(1, n_keys + 1)) if int_keys else [f"{key_field[0]}{x}" for x in range(1, n_keys + 1)]
    events = []
    for i in range(n):
        ts = nominal[i]
        if disorder and i > 0 and rng.random() < p_dis:
            ts = max(1, ts - rng.randint(1, ooo_units + 3) * unit)
        ev = {"id": i + 1, "type": rng.choices(TYPES, weights=tw)[0], "v": rng.randint(0, 9), "ts": ts}
        if keyed:
            ev[key_field] = rng.choice(keys)
        elif rng.random() < 0.1:
            ev["k"] = "k1"      # a field named like a key, ignored by an unkeyed spec
        events.append(ev)

    eoi = "flush" if rng.random() < 0.68 else "stop"
    keep_empty = rng.random() < KEEP_EMPTY_P
    case = {
        "name": None,
        "description": None,
        "spec": spec,
        "events": events,
        "end_of_input": eoi,
    }
    return case, keep_empty


def describe(seed, j, case):
    spec = case["spec"]
    parts = [f"{len(spec['stages'])} stage(s)",
             f"key {spec['key']}" if "key" in spec else "unkeyed",
             f"within {spec['within']}" if "within" in spec else "no within",
             f"skip {json.dumps(spec.get('skip', 'no_skip'))}",
             f"ooo {spec['time'].get('max_out_of_orderness', 0)}",
             f"{len(case['events'])} events", f"end_of_input {case['end_of_input']}"]
    return (f"Random differential case: gen_random.py --seed {seed}, candidate {j} "
            f"(random.Random('rnd-{seed}-{j}')); expected = Flink 2.3.0 oracle output. "
            + ", ".join(parts) + ".")


# ---------------------------------------------------------------- oracle

def run_oracle(oracle, case):
    """Returns (status, payload): ("ok", [objs]) | ("spec_error", msg) | ("fail", msg) | ("timeout", "")."""
    with tempfile.TemporaryDirectory() as tmp:
        sp = os.path.join(tmp, "spec.json")
        ep = os.path.join(tmp, "events.jsonl")
        with open(sp, "w") as f:
            json.dump(case["spec"], f)
        with open(ep, "w") as f:
            for e in case["events"]:
                f.write(json.dumps(e) + "\n")
        cmd = [oracle, "match", "--spec", sp, "--input", ep, "--end-of-input", case["end_of_input"]]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=ORACLE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return "timeout", ""
    if p.returncode == 2:
        return "spec_error", p.stderr.strip()[:500]
    if p.returncode != 0:
        return "fail", f"exit {p.returncode}: " + p.stderr.strip()[-500:]
    return "ok", [json.loads(l) for l in p.stdout.splitlines() if l.strip()]


def generate(args):
    out = args.out
    os.makedirs(out, exist_ok=True)
    log = open(args.log or os.path.join(out, "gen-log.jsonl"), "w")
    deadline = time.time() + args.max_minutes * 60
    accepted = 0
    j = 0
    fates = Counter()
    pending = {}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        def submit(k):
            case, keep_empty = gen_case(args.seed, k)
            pending[k] = (case, keep_empty, pool.submit(run_oracle, args.oracle, case))
        nxt = 0
        while accepted < args.count and time.time() < deadline:
            while len(pending) < args.jobs:
                submit(nxt)
                nxt += 1
            case, keep_empty, fut = pending.pop(j)
            status, payload = fut.result()
            rec = {"candidate": j, "status": status}
            if status == "ok":
                if len(payload) > MAX_OUTPUT_LINES:
                    rec["status"] = status = "oversize"
                    rec["lines"] = len(payload)
                elif not payload and not keep_empty:
                    rec["status"] = status = "empty_dropped"
                else:
                    accepted += 1
                    name = f"rand-{accepted:04d}"
                    case["name"] = name
                    case["description"] = describe(args.seed, j, case)
                    case["expected"] = payload
                    with open(os.path.join(out, name + ".json"), "w") as f:
                        json.dump(case, f, indent=1)
                        f.write("\n")
                    rec["status"] = "accepted"
                    rec["case"] = name
                    rec["lines"] = len(payload)
                    status = "accepted"
            else:
                rec["message"] = payload
                rec["spec"] = case["spec"]
            fates[status] += 1
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(f"cand {j}: {status}" + (f" -> {rec.get('case')} ({rec['lines']} lines)" if status == "accepted" else ""),
                  flush=True)
            j += 1
        for _, _, fut in pending.values():
            fut.cancel()
    log.close()
    print(f"done: {accepted} cases from {j} candidates; " + ", ".join(f"{k} {v}" for k, v in sorted(fates.items())))
    return 0 if accepted >= args.count else 1


# ---------------------------------------------------------------- stats

def stats(d):
    paths = sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".json"))
    c = Counter()
    for p in paths:
        with open(p) as f:
            case = json.load(f)
        spec = case["spec"]
        st = spec["stages"]
        feats = set()
        feats.add(f"stages={len(st)}")
        for s in st[1:]:
            feats.add("contiguity:" + s.get("contiguity", "followed_by (default)"))
        for s in st:
            t = s.get("times")
            if isinstance(t, list):
                feats.add("times[from,to]")
            elif t is not None:
                feats.add("times(n)")
            for k in ("times_or_more", "one_or_more", "optional", "greedy", "consecutive",
                      "allow_combinations", "until"):
                if k in s:
                    feats.add(k)
            if "where" not in s:
                feats.add("stage without where")
        sk = spec.get("skip", "no_skip (default)")
        feats.add("skip:" + (next(iter(sk)) if isinstance(sk, dict) else sk))
        feats.add("within" if "within" in spec else "no within")
        feats.add("keyed" if "key" in spec else "unkeyed")
        ooo = spec["time"].get("max_out_of_orderness", 0)
        feats.add("ooo>0" if ooo not in (0, "0ms", "0s", "0m") else "ooo=0")
        feats.add("end_of_input:" + case["end_of_input"])
        kinds = Counter(o["kind"] for o in case["expected"])
        for k in ("match", "timeout", "late"):
            if kinds[k]:
                feats.add("has " + k)
            c["total " + k + " lines"] += kinds[k]
        if not case["expected"]:
            feats.add("empty expected")
        c.update(feats)
    print(f"{len(paths)} cases")
    for k in sorted(x for x in c if not x.startswith("total")):
        print(f"  {k}: {c[k]}")
    for k in sorted(x for x in c if x.startswith("total")):
        print(f"  {k}: {c[k]}")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--count", type=int, default=150)
    g.add_argument("--jobs", type=int, default=2)
    g.add_argument("--out", required=True)
    g.add_argument("--log", default=None)
    g.add_argument("--max-minutes", type=float, default=40)
    g.add_argument("--oracle", default=DEFAULT_ORACLE)
    g.add_argument("--stage-within", type=float, default=0.0,
                   help="share of later stages that get a per-stage within (PREVIOUS_AND_CURRENT)")
    s = sub.add_parser("show")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--candidate", type=int, required=True)
    t = sub.add_parser("stats")
    t.add_argument("dir")
    a = ap.parse_args(argv)
    global STAGE_WITHIN
    STAGE_WITHIN = getattr(a, "stage_within", 0.0)
    if a.cmd == "generate":
        return generate(a)
    if a.cmd == "show":
        case, keep_empty = gen_case(a.seed, a.candidate)
        case["name"] = f"candidate-{a.candidate}"
        case["description"] = describe(a.seed, a.candidate, case)
        print(json.dumps(case, indent=1))
        return 0
    stats(a.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""A pattern change on a running `ferrocep run` with many pending orders.

Starts the release binary on a file of N order creates (distinct ids, none
times out: a 10 min window over N/4 ms of event time) with a second small
pattern beside them, waits until every event is read, then replaces the
small pattern R times with `PUT /patterns/rule` (its window changes each
time, so each is a real replacement whose old version drains) and reports
the latency of each reply: validation, the change on the engine thread and
the checkpoint that makes it durable (the reply waits for its commit).
While the changes run, the pending count of `orders` is read from
`/metrics` to show it is untouched.

    python3 bench/pattern_change.py [--orders 1000000] [--rounds 10] [--bin target/release/ferrocep]
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time, urllib.request

ORDERS = """name: orders
key: order_id
time: {field: ts}
within: 10m
stages:
  - {name: create, where: 'type == "create"'}
  - {name: pay, contiguity: followed_by, where: 'type == "pay"'}
"""

def rule(window_s):
    return f"""name: rule
key: order_id
time: {{field: ts}}
within: {window_s}s
stages:
  - {{name: big, where: 'type == "create" && amount > 90'}}
  - {{name: pay, contiguity: followed_by, where: 'type == "pay"'}}
"""

def get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read().decode()

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--bin", default="target/release/ferrocep")
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="pattern-change-")
    try:
        with open(os.path.join(d, "events.jsonl"), "w") as f:
            for i in range(a.orders):
                f.write('{"order_id":"o%d","type":"create","amount":%d,"ts":%d}\n'
                        % (i, i % 100, 1_700_000_000_000 + i // 4))
        open(os.path.join(d, "orders.yaml"), "w").write(ORDERS)
        open(os.path.join(d, "rule.yaml"), "w").write(rule(10))
        port = 20000 + os.getpid() % 20000
        open(os.path.join(d, "pipe.yaml"), "w").write(
            "name: change-bench\npatterns: [orders.yaml, rule.yaml]\n"
            "source: {type: file, path: events.jsonl, follow: true}\n"
            "outputs: {match: [], timeout: [], late: [], error: []}\n"
            f"state: {{dir: data, checkpoint_interval: 2s}}\nserver: {{listen: '127.0.0.1:{port}'}}\n")
        p = subprocess.Popen([a.bin, "run", "--config", os.path.join(d, "pipe.yaml"), "--no-progress"],
                             stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "stderr.txt"), "w"))
        base = f"http://127.0.0.1:{port}"
        want = f'ferrocep_events_in_total{{source="file"}} {a.orders}'
        t0 = time.time()
        while True:
            try:
                if want in get(base + "/metrics"):
                    break
            except Exception:
                pass
            if time.time() - t0 > 300:
                sys.exit("the events were not read in 300 s")
            time.sleep(0.2)
        # A checkpoint after the last event, as a running pipeline has had:
        # the changes' checkpoints then write only what they change.
        def last_ckpt():
            for line in get(base + "/metrics").splitlines():
                if line.startswith("ferrocep_checkpoint_last_ms "):
                    return int(float(line.split()[1]))
            return 0
        read_at = last_ckpt()
        t0 = time.time()
        while last_ckpt() == read_at or time.time() - t0 < 5:
            time.sleep(0.2)
        lat = []
        for r in range(a.rounds):
            body = rule(11 + r).encode()
            req = urllib.request.Request(base + "/patterns/rule", data=body, method="PUT",
                                         headers={"Content-Type": "application/yaml"})
            t = time.perf_counter()
            with urllib.request.urlopen(req, timeout=60) as resp:
                done = json.loads(resp.read())
            lat.append((time.perf_counter() - t) * 1e3)
            assert done["changes"][0]["action"] == "replaced", done
        patterns = json.loads(get(base + "/patterns"))["patterns"]
        keys = {(x["name"], x["version"]): x["pending_keys"] for x in patterns}
        p.terminate(); p.wait(60)
        print(f"orders pending: {keys.get(('orders', 1))} keys; rule versions running: "
              f"{sorted(v for (n, v) in keys if n == 'rule')}")
        print(f"PUT /patterns/rule, {a.rounds} changes, reply latency ms: "
              f"median {statistics.median(lat):.1f}, max {max(lat):.1f}, all {[round(x, 1) for x in lat]}")
    finally:
        shutil.rmtree(d, ignore_errors=True)

if __name__ == "__main__":
    main()

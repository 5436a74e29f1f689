#!/usr/bin/env python3
"""Writes the `time.order_by` conformance cases (without `expected`) into a
folder: a few by hand for the edges (ties against `next`, missing fields,
numbers in several forms, strings, a second field) and some random ones with
many equal timestamps. `scripts/record-cases.sh order-by` fills in
`expected` from real Flink.

    scripts/order-by-cases.py OUT_DIR [SEED]
"""
import json
import os
import random
import sys


def case(name, description, spec, events, end="flush"):
    return {
        "name": name,
        "description": description,
        "spec": spec,
        "events": events,
        "end_of_input": end,
    }


def by_hand():
    ab_next = [
        {"name": "a", "where": 't == "a"'},
        {"name": "b", "contiguity": "next", "where": 't == "b"'},
    ]
    yield case(
        "order-by-next-ties",
        "order_by puts a before b at one timestamp, so `next` matches; arrival order would not.",
        {"key": "k", "time": {"field": "ts", "order_by": ["p"]}, "stages": ab_next},
        [
            {"k": "x", "t": "b", "p": 2, "ts": 10},
            {"k": "x", "t": "a", "p": 1, "ts": 10},
            {"k": "y", "t": "b", "p": 1, "ts": 10},
            {"k": "y", "t": "a", "p": 2, "ts": 10},
            {"k": "x", "t": "z", "ts": 20},
        ],
    )
    yield case(
        "order-by-missing-first",
        "A missing or null order_by field sorts first; equal values keep their arrival order.",
        {"time": {"field": "ts", "order_by": "p"}, "stages": ab_next},
        [
            {"id": 1, "t": "b", "p": 0, "ts": 5},
            {"id": 2, "t": "a", "ts": 5},
            {"id": 3, "t": "b", "p": None, "ts": 7},
            {"id": 4, "t": "a", "p": None, "ts": 7},
            {"id": 5, "t": "b", "ts": 7},
            {"id": 6, "t": "x", "ts": 9},
        ],
    )
    yield case(
        "order-by-number-forms-and-strings",
        "Numbers order numerically whatever their form (1.0 == 1 < 2.5 < 10); strings by code point; then a second field.",
        {
            "time": {"field": "ts", "order_by": ["p", "q"]},
            "stages": [
                {"name": "s", "where": 't == "s"'},
                {"name": "m", "contiguity": "next", "one_or_more": True, "where": 't == "m"'},
                {"name": "e", "contiguity": "next", "where": 't == "e"'},
            ],
        },
        [
            {"id": 1, "t": "e", "p": 10, "ts": 3},
            {"id": 2, "t": "m", "p": 2.5, "ts": 3},
            {"id": 3, "t": "m", "p": 1.0, "q": "b", "ts": 3},
            {"id": 4, "t": "s", "p": -1, "ts": 3},
            {"id": 5, "t": "m", "p": 1, "q": "a", "ts": 3},
            {"id": 6, "t": "s", "p": "a", "ts": 4},
            {"id": 7, "t": "e", "p": "b", "ts": 4},
            {"id": 8, "t": "m", "p": "B", "ts": 4},
            {"id": 9, "t": "x", "ts": 6},
        ],
    )
    yield case(
        "order-by-out-of-orderness",
        "Ties that arrive apart, with max_out_of_orderness: they are sorted when the watermark passes them; late events stay late.",
        {
            "key": "k",
            "time": {"field": "ts", "max_out_of_orderness": 5, "order_by": ["p"]},
            "within": 20,
            "stages": ab_next,
        },
        [
            {"k": "x", "t": "b", "p": 2, "ts": 10},
            {"k": "x", "t": "q", "ts": 12},
            {"k": "x", "t": "a", "p": 1, "ts": 10},
            {"k": "x", "t": "q", "ts": 30},
            {"k": "x", "t": "a", "p": 0, "ts": 10},
            {"k": "x", "t": "a", "p": 1, "ts": 40},
        ],
        end="stop",
    )


def random_cases(seed, count):
    rng = random.Random(seed)
    shapes = [
        [
            {"name": "a", "where": 't == "a"'},
            {"name": "b", "contiguity": "next", "where": 't == "b"'},
            {"name": "c", "contiguity": "followed_by", "where": 't == "c"'},
        ],
        [
            {"name": "a", "where": 't == "a"'},
            {"name": "b", "contiguity": "followed_by_any", "times": [1, 2], "where": 't == "b"'},
            {"name": "c", "contiguity": "next", "where": 't == "c"'},
        ],
        [
            {"name": "a", "where": 't == "a"'},
            {"name": "n", "contiguity": "not_next", "where": 't == "b"'},
            {"name": "c", "contiguity": "followed_by", "where": 't == "c"'},
        ],
    ]
    for i in range(count):
        stages = shapes[i % len(shapes)]
        spec = {
            "key": "k",
            "time": {"field": "ts", "order_by": ["p", "q"]},
            "within": rng.choice([15, 40]),
            "skip": rng.choice(["no_skip", "skip_past_last_event", "skip_to_next"]),
            "stages": stages,
        }
        events = []
        ts = 0
        for n in range(rng.randint(30, 60)):
            if rng.random() < 0.35:
                ts += rng.randint(1, 4)
            e = {"id": n, "k": rng.choice("xy"), "t": rng.choice("abcz"), "ts": ts}
            r = rng.random()
            if r < 0.7:
                e["p"] = rng.randint(0, 3)
            elif r < 0.8:
                e["p"] = rng.choice([1.0, 2.5, "s"])
            if rng.random() < 0.5:
                e["q"] = rng.choice(["a", "b"])
            events.append(e)
        yield case(
            f"order-by-rand-{seed}-{i + 1:02}",
            f"Random ties ordered by [p, q] (seed {seed}, case {i + 1}).",
            spec,
            events,
        )


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    os.makedirs(out, exist_ok=True)
    for c in list(by_hand()) + list(random_cases(seed, 6)):
        with open(os.path.join(out, c["name"] + ".json"), "w") as f:
            json.dump(c, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()

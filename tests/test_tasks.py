"""Tasks: the record's test snippets and stop rule, with real programs through the sandbox, and mixtures."""
import json

import pytest

from labkit import sandbox, tasks
from labkit.config import UserError

TASK = tasks.Task(id="t", split="train_A", prompt='def f(xs: list[int]) -> dict[str, int]:\n    """Count."""\n',
                  entry_point="f", solution="", atoms=[], depth=1,
                  tests=[{"args": [[1, 2]], "expected": {"b": 2, "a": 1}}, {"args": [[]], "expected": {}}])


def _status(completion):
    v = sandbox.run(tasks.program(TASK, completion), tasks.test_snippets(TASK))
    return v.status, v.tests_passed


def test_correct_answer_passes_whatever_its_dict_order():
    assert _status("    return {'a': 1, 'b': 2} if xs else {}\n") == ("pass", 2)


def test_an_object_that_equals_everything_does_not_pass():
    evil = "    class E:\n        def __eq__(self, other):\n            return True\n    return E()\n"
    assert _status(evil) == ("fail", 0)


def test_true_is_not_one():
    task = tasks.Task(id="b", split="s", prompt="def g() -> int:\n", entry_point="g", solution="", atoms=[],
                      depth=1, tests=[{"args": [], "expected": 1}])
    v = sandbox.run(tasks.program(task, "    return True\n"), tasks.test_snippets(task))
    assert v.status == "fail"


def test_cut_completion_stops_at_the_first_unindented_line():
    text = "    a = 1\n\n    return a\ndef other():\n    pass\n"
    assert tasks.cut_completion(text) == "    a = 1\n\n    return a\n"
    assert tasks.cut_completion("print(1)\n") == ""


def test_a_mixture_takes_the_first_n_tasks_of_a_split(tmp_path):
    (tmp_path / "manifest.json").write_text("{}")
    records = [tasks.Task(f"c{i}", "train_C", f"def f{i}():\n", f"f{i}", "    return 1\n", [], [], 2).to_json()
               for i in range(5)]
    (tmp_path / "train_C.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert [t.id for t in tasks.load_mixture(tmp_path, {"train_C:3": 1})["train_C:3"]] == ["c0", "c1", "c2"]
    for bad, match in (("train_C:9", "holds only 5"), ("train_C:x", "first N tasks"), ("test_target:2", "not a")):
        with pytest.raises(UserError, match=match):
            tasks.load_mixture(tmp_path, {bad: 1})

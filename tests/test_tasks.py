"""The task record's test snippets and stop rule, with real programs through the sandbox."""
from labkit import sandbox, tasks

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

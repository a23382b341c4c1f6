"""The verdict rules on made-up numbers: each can come out either way."""
import pytest

from labkit import verdicts


def test_decide_reproduced_needs_the_mean_above_its_spread():
    assert verdicts.decide([0.10, 0.12, 0.14])["verdict"] == "reproduced"              # m=0.12, sd=0.02
    assert verdicts.decide([0.30, -0.05, 0.05])["verdict"] == "inconclusive"           # m=0.10 <= sd
    assert verdicts.decide([0.0, 0.0, 0.0])["verdict"] == "not reproduced"             # no effect
    assert verdicts.decide([-0.1, 0.2, -0.2])["verdict"] == "not reproduced"           # wrong sign on average
    r = verdicts.decide([0.2, 0.3])
    assert r["verdict"].startswith("inconclusive (only 2 seeds") and r["mean"] == 0.25
    assert verdicts.decide([0.1, 0.2, 0.3]) == {"per_seed": [0.1, 0.2, 0.3], "mean": 0.2, "sd": 0.1, "n_seeds": 3,
                                                "verdict": "reproduced"}
    assert verdicts.decide([])["mean"] is None


def test_a_precondition_is_a_minimum_or_a_range_and_gates_a_verdict():
    assert verdicts.precondition(0.2, 0.15) == {"value": 0.2, "threshold": 0.15, "holds": True}
    assert not verdicts.precondition(0.9, [0.1, 0.8])["holds"] and verdicts.precondition(0.5, [0.1, 0.8])["holds"]
    assert not verdicts.precondition(None, 0.1)["holds"]
    pre = {"a": verdicts.precondition(0.2, 0.15), "b": verdicts.precondition(0.01, 0.05)}
    good = verdicts.decide([0.1, 0.12, 0.14])
    assert verdicts.gated(good, pre, ["a"])["verdict"] == "reproduced"
    assert verdicts.gated(good, pre, ["a", "b"])["verdict"] == "inconclusive (precondition b does not hold: 0.01 against 0.05)"
    few = verdicts.decide([0.1])
    assert verdicts.gated(few, pre, ["b"])["verdict"].startswith("inconclusive (only 1 seed")


def test_the_knee_is_the_smallest_size_with_half_the_largest_gain():
    assert verdicts.knee([10, 100, 1000], [0.0, 0.06, 0.1]) == 100
    assert verdicts.knee([10, 100, 1000], [0.0, 0.04, 0.1]) == 1000
    assert verdicts.knee([10, 100, 1000], [0.08, 0.09, 0.1]) == 10
    assert verdicts.knee([10, 100, 1000], [0.0, 0.0, -0.01]) == 1000   # no gain: the largest size


def test_the_drop_compares_windows_not_single_evaluations():
    flat_noise = [0.10, 0.14, 0.10, 0.12, 0.10, 0.12]
    d = verdicts.window_drop(flat_noise, 300)
    assert d["drop"] == pytest.approx(0.01) and d["drop"] < max(flat_noise) - flat_noise[-1]
    peaked = [0.0, 0.2, 0.3, 0.3, 0.2, 0.1, 0.1]
    d = verdicts.window_drop(peaked, 300)
    assert d["drop"] == pytest.approx(0.2) and d["peak_at"] == 2 and d["peak"] == 0.3 and d["end"] == 0.1
    assert 0 < d["se"] < 0.05
    assert verdicts.window_drop([0.2, 0.3, 0.4], 300)["drop"] == 0.0   # still rising


def test_matched_index_is_the_first_evaluation_reaching_the_gain():
    assert verdicts.matched_index([0.4, 0.3, 0.5, 0.7, 0.9], 0.25) == 3
    assert verdicts.matched_index([0.4, 0.45, 0.5], 0.25) == 2   # never: its largest gain
    assert verdicts.matched_index([0.4, 0.4], 0.0) == 1          # a gain of 0 is reached at the first evaluation

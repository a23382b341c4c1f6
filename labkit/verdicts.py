"""The rules that turn the findings suite's numbers into verdicts: pure functions of numbers, fixed before any
result was looked at (`labkit.experiments` reads the runs and calls them; tests/test_verdicts.py checks that
each rule can come out either way).

The verdict rule. Each finding has one decision statistic with one value per seed; over the n seeds, with mean
m and sample standard deviation s (ddof=1):
    reproduced       n >= 3 and m - s > 0     (the effect is positive and larger than its seed-to-seed spread)
    not reproduced   n >= 3 and m <= 0        (no effect, or the opposite one, on average)
    inconclusive     otherwise (0 < m <= s, or fewer than 3 seeds finished)
A finding is only judged where the experiment could have shown it: when one of its preconditions does not hold,
its verdict is "inconclusive (precondition ... does not hold ...)", whatever its statistic says.
"""
from __future__ import annotations

import math

import numpy as np

MIN_SEEDS = 3
RULE = ("per-seed statistic; mean m, sample sd s over n seeds: reproduced if n >= 3 and m - s > 0; not reproduced "
        "if n >= 3 and m <= 0; else inconclusive. A finding whose precondition does not hold is inconclusive.")
# F1: "a handful is enough" is judged at the smallest size that reaches this share of the largest size's gain.
KNEE_SHARE = 0.5
# F3a: a curve's peak and its end are each the mean of this many consecutive evaluations (one evaluation's
# maximum would be biased upward by noise alone: ~+0.03 on a flat curve of 300 tasks).
DROP_WINDOW = 2


def decide(values: list[float]) -> dict:
    """The verdict rule, on one value per seed."""
    values = [round(float(v), 9) for v in values]   # pass@1 differences: no float dust deciding a verdict
    n = len(values)
    mean = float(np.mean(values)) if n else float("nan")
    sd = float(np.std(values, ddof=1)) if n > 1 else float("nan")
    if n < MIN_SEEDS:
        verdict = f"inconclusive (only {n} seed{'s' * (n != 1)} finished; the rule needs {MIN_SEEDS})"
    elif mean - sd > 0:
        verdict = "reproduced"
    elif mean <= 0:
        verdict = "not reproduced"
    else:
        verdict = "inconclusive"
    return {"per_seed": [round(v, 4) for v in values], "mean": None if np.isnan(mean) else round(mean, 4),
            "sd": None if np.isnan(sd) else round(sd, 4), "n_seeds": n, "verdict": verdict}


def precondition(value: float | None, threshold, holds: bool | None = None) -> dict:
    """{"value", "threshold", "holds"}: `threshold` is a minimum, or a [low, high] range; no value -> not held."""
    value = None if value is None else round(float(value), 9)   # means of pass@1 values: no float dust either
    if holds is None:
        if value is None:
            holds = False
        elif isinstance(threshold, (list, tuple)):
            holds = threshold[0] <= value <= threshold[1]
        else:
            holds = value >= threshold
    return {"value": None if value is None else round(float(value), 4), "threshold": threshold, "holds": bool(holds)}


def gated(result: dict, preconditions: dict[str, dict], names: list[str]) -> dict:
    """`result` with its verdict made inconclusive when one of the named preconditions does not hold (a verdict
    already inconclusive for want of seeds keeps that reason)."""
    failed = [n for n in names if not preconditions[n]["holds"]]
    result = {**result, "preconditions": names}
    if failed and not result["verdict"].startswith("inconclusive ("):
        p = preconditions[failed[0]]
        result["verdict"] = (f"inconclusive (precondition {failed[0]} does not hold: {p['value']} against "
                             f"{p['threshold']})")
    return result


def knee(sizes: list[int], gains: list[float], share: float = KNEE_SHARE) -> int:
    """The smallest size whose mean gain (over the no-composite baseline) reaches `share` of the largest size's;
    the largest size when it gains nothing."""
    largest = gains[sizes.index(max(sizes))]
    if largest <= 0:
        return max(sizes)
    return min(s for s, g in zip(sizes, gains) if g >= share * largest)


def window_drop(values: list[float], n_tasks: int, window: int = DROP_WINDOW) -> dict:
    """How far a pass@1 curve fell from its peak to its end: the best mean of `window` consecutive evaluations
    minus the mean of the last `window`, with the standard error of that difference (binomial, n_tasks each)."""
    window = max(1, min(window, len(values)))
    means = [float(np.mean(values[i:i + window])) for i in range(len(values) - window + 1)]
    peak = int(np.argmax(means))

    def se(chunk):
        return math.sqrt(sum(p * (1 - p) / n_tasks for p in chunk)) / len(chunk)

    drop_se = math.sqrt(se(values[peak:peak + window]) ** 2 + se(values[-window:]) ** 2)
    return {"drop": round(means[peak] - means[-1], 4), "se": round(drop_se, 4), "peak_at": peak,
            "peak": round(means[peak], 4), "end": round(means[-1], 4)}


def matched_index(train: list[float], gain: float) -> int:
    """The first evaluation at which a run's train pass@1 has gained at least `gain` over its start (its largest
    gain when it never does): where SFT is compared with an RL run that gained `gain`."""
    gains = [round(v - train[0], 9) for v in train]   # pass@1 differences: no float dust deciding a match
    return next((i for i, g in enumerate(gains) if i and g >= round(gain, 9)), int(np.argmax(gains)))

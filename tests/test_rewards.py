"""Rewards from real sandbox runs, mapped to the tokens of a real (tiny, locally trained) byte-level BPE."""
import pytest
from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
from tokenizers.models import BPE
from transformers import PreTrainedTokenizerFast

from labkit import rewards, sandbox
from labkit.config import UserError

PROMPT = 'def f(xs):\n    """Sum of xs."""\n'
FIRST = PROMPT.count("\n") + 1  # what tasks.completion_first_line gives for this prompt
TESTS = ["assert f([1]) == 1", "assert f([1, 1]) == 2", "assert f([2]) == 2", "assert f([1, 2]) == 3",
         "assert f([5]) == 5"]


@pytest.fixture(scope="module")
def tok():
    corpus = ["def f(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total\n"] * 20
    t = Tokenizer(BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    t.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=t)


def score(tok, completions, mode, context="", timeout=1.0):
    programs = [context + PROMPT + c for c in completions]
    verdicts = sandbox.run_many(programs, [TESTS] * len(completions), timeout=timeout)
    offsets = [tok(c, return_offsets_mapping=True, add_special_tokens=False)["offset_mapping"] for c in completions]
    first = (context + PROMPT).count("\n") + 1
    return verdicts, offsets, rewards.token_rewards(completions, verdicts, offsets, [first] * len(completions), mode)


def on_line(completion, offsets, k):
    """Indices of the tokens whose first character lies on 0-based line k of the completion."""
    lines = completion.splitlines(keepends=True)
    lo, hi = sum(map(len, lines[:k])), sum(map(len, lines[:k + 1]))
    return {i for i, (s, e) in enumerate(offsets) if e > s and lo <= s < hi}


def test_name_error_on_line_3_penalises_exactly_that_line(tok):
    c = "    total = 0\n    for x in xs:\n        total += undefined_name\n    return total\n"
    (v,), (offs,), (r,) = score(tok, [c], "fine")
    assert (v.status, v.error_type, v.error_line) == ("runtime_error", "NameError", FIRST + 2)
    line3 = on_line(c, offs, 2)
    assert line3 and len(line3) < len(offs)
    assert [x for i, x in enumerate(r) if i in line3] == [-0.3] * len(line3)
    assert [x for i, x in enumerate(r) if i not in line3] == [0.0] * (len(offs) - len(line3))


def test_error_raised_in_context_is_pinned_to_the_calling_completion_line(tok):
    context = "def helper(x):\n    return x + undefined\n\n"
    c = "    total = 0\n    return helper(total)\n"
    (v,), (offs,), (r,) = score(tok, [c], "fine", context)
    assert v.error_line == 2 and v.error_trace[-1] == 2  # innermost frame: the context's line 2
    line2 = on_line(c, offs, 1)
    assert line2 and all((x == -0.3) == (i in line2) for i, x in enumerate(r))


def test_timeout_and_failures_penalise_every_token(tok):
    loop, wrong = "    while True:\n        pass\n", "    return 0\n"
    verdicts, offsets, r = score(tok, [loop, wrong], "fine", timeout=0.2)  # each of 5 tests times out
    assert [v.status for v in verdicts] == ["timeout", "fail"]
    assert r == [[-0.3] * len(offsets[0]), [-0.3] * len(offsets[1])]


def test_syntax_errors(tok):
    located = "    total = 0\n    total = = 1\n    return total\n"
    truncated = "    return (sum(xs)\n"
    docstring = '    """never closed\n    return 1\n'
    indent = "    total = 0\n      return total\n"
    verdicts, offsets, r = score(tok, [located, truncated, docstring, indent], "fine")
    assert [v.status for v in verdicts] == ["syntax_error"] * 4
    line2 = on_line(located, offsets[0], 1)
    assert line2 and all((x == -0.3) == (i in line2) for i, x in enumerate(r[0]))
    assert r[1] == [-0.3] * len(offsets[1])       # truncation: U_global
    assert set(r[2]) == set(r[3]) == {0.0}         # U_ignore
    assert rewards.scalar_rewards(verdicts, "coarse") == [-1.0] * 4


def test_scalar_modes_and_adaptive_two_of_five(tok):
    two_of_five, right = "    return len(xs)\n", "    return sum(xs)\n"
    verdicts, offsets, r = score(tok, [two_of_five, right], "adaptive")
    assert verdicts[0].tests_passed == 2 and verdicts[0].tests_total == 5
    assert r[0] == pytest.approx([0.22] * len(offsets[0])) and r[1] == pytest.approx([1.0] * len(offsets[1]))
    assert rewards.scalar_rewards(verdicts, "binary") == [0.0, 1.0]
    assert rewards.scalar_rewards(verdicts, "pass_ratio") == [0.4, 1.0]
    assert rewards.scalar_rewards(verdicts, "coarse") == [-0.3, 1.0]
    assert rewards.scalar_rewards(verdicts, "fine") == [-0.3, 1.0]
    assert rewards.token_rewards([right], verdicts[1:], offsets[1:], [FIRST], "fine") == [[1.0] * len(offsets[1])]


def test_bad_input_is_named():
    with pytest.raises(UserError, match="unknown reward mode 'finest'"):
        rewards.scalar_rewards([], "finest")
    with pytest.raises(ValueError, match="must match"):
        rewards.token_rewards(["x"], [], [[]], [1], "fine")

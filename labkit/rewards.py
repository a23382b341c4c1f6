"""Rewards from sandbox verdicts (DESIGN §2.2): one scalar per completion, or one value per completion token.

    scalar_rewards(verdicts, "coarse")                                  -> [1.0, -0.3, ...]
    token_rewards(completions, verdicts, offsets, first_lines, "fine")  -> [[-0.3, 0.0, ...], ...]

`offsets[i]` is the tokenizer's offset mapping of `completions[i]` alone (HF fast tokenizers:
`tok(completion, return_offsets_mapping=True, add_special_tokens=False)["offset_mapping"]`), and
`first_lines[i]` the program line where the completion starts (`labkit.tasks.completion_first_line`).
For the scalar modes every token gets the completion's value: RLTF weights each token's log-prob by it.

Modes (RLTF, arXiv 2307.04349; coarse values from CodeRL/PPOCoder):
  binary      1 if the program passed, else 0
  pass_ratio  tests passed / tests
  coarse      pass +1, test failure -0.3, runtime error -0.6, syntax error -1. The other statuses (timeout,
              memory, output_limit, killed) are runtime errors here, -0.6, as CodeRL counts a timeout.
  adaptive    -0.3 + 1.3 * pass ratio (a syntax error has passed nothing: -0.3)
  fine        pass: +1 on every token; otherwise the error is classified and penalised -0.3 where it lies:

  class      status / error                                                          tokens penalised
  U_line     syntax error whose line is in the completion (not one of the below)      that line's tokens
             runtime error (NameError, TypeError, IndexError, KeyError, ValueError,   the innermost
             AttributeError, ZeroDivisionError, UnboundLocalError, ImportError, ...)  traceback line in
             with a traceback frame in the completion                                 the completion
  U_global   truncation: syntax error on text that stops mid-construct (an open       every token
             bracket, a missing block), found with `codeop`, not by message
             RecursionError, SystemExit, KeyboardInterrupt, GeneratorExit
             (the erroring line says nothing about the fault)
             an error with no frame in the completion (raised in the prompt, the
             context or a test), test failure (wrong answer), timeout, memory,
             output_limit, killed
  U_ignore   IndentationError / TabError (indentation quirks)                        none (0)
             unterminated triple-quoted string (syntax error positioned on a
             triple quote: EOF inside a docstring)

  The classification reads Python 3.11's error objects — `SyntaxError.lineno/offset`, the error type, the
  traceback's frames (the sandbox reports them as `error_trace`) — never message wording, which changed in
  3.10. A token belongs to the line holding its first character (a "\\n    " token belongs to the line the
  newline ends); zero-width tokens belong to no line.
"""
from __future__ import annotations

import bisect
import re
from typing import Literal, get_args

from labkit.config import UserError
from labkit.sandbox import Verdict

RewardMode = Literal["binary", "pass_ratio", "coarse", "fine", "adaptive"]
MODES: tuple[str, ...] = get_args(RewardMode)
PENALTY = -0.3
COARSE = {"pass": 1.0, "fail": -0.3, "runtime_error": -0.6, "syntax_error": -1.0,
          "timeout": -0.6, "memory": -0.6, "output_limit": -0.6, "killed": -0.6}
GLOBAL_ERRORS = {"RecursionError", "SystemExit", "KeyboardInterrupt", "GeneratorExit"}
TRIPLE_QUOTE = re.compile(r"[rRbBuUfF]{0,2}('''|\"\"\")")


def scalar_rewards(verdicts: list[Verdict], mode: RewardMode, completions: list[str] | None = None,
                   first_lines: list[int] | None = None) -> list[float]:
    """One value per completion. For `fine`: +1, -0.3, or 0 for U_ignore (spotting an unterminated
    triple-quoted string needs the completion text: pass `completions` and `first_lines` for that)."""
    _check(mode)
    if mode == "binary":
        return [float(v.status == "pass") for v in verdicts]
    if mode == "pass_ratio":
        return [v.pass_ratio for v in verdicts]
    if mode == "coarse":
        return [COARSE[v.status] for v in verdicts]
    if mode == "adaptive":
        return [PENALTY + 1.3 * v.pass_ratio for v in verdicts]
    texts, firsts = completions or [""] * len(verdicts), first_lines or [1] * len(verdicts)
    return [{"pass": 1.0, "ignore": 0.0}.get(error_class(v, t, f)[0], PENALTY)
            for v, t, f in zip(verdicts, texts, firsts)]


def token_rewards(completions: list[str], verdicts: list[Verdict], offsets: list[list[tuple[int, int]]],
                  first_lines: list[int], mode: RewardMode) -> list[list[float]]:
    """One list of per-token rewards per completion (same length as its offsets)."""
    _check(mode)
    if not len(completions) == len(verdicts) == len(offsets) == len(first_lines):
        raise ValueError(f"token_rewards: got {len(completions)} completions, {len(verdicts)} verdicts, "
                         f"{len(offsets)} offset lists and {len(first_lines)} first lines; they must match")
    if mode != "fine":
        return [[r] * len(offs) for r, offs in zip(scalar_rewards(verdicts, mode), offsets)]
    out = []
    for text, v, offs, first in zip(completions, verdicts, offsets, first_lines):
        kind, line = error_class(v, text, first)
        if kind in ("pass", "global", "ignore"):
            out.append([{"pass": 1.0, "global": PENALTY, "ignore": 0.0}[kind]] * len(offs))
        else:
            starts = _line_starts(text)
            out.append([PENALTY if end > start and bisect.bisect_right(starts, start) - 1 == line else 0.0
                        for start, end in offs])
    return out


def error_class(v: Verdict, completion: str, first_line: int) -> tuple[str, int | None]:
    """("pass" | "line" | "global" | "ignore", 0-based completion line for "line") per the table above."""
    if v.status == "pass":
        return "pass", None
    n_lines = len(_line_starts(completion))
    inside = [ln - first_line for ln in v.error_trace if 0 <= ln - first_line < n_lines]
    if v.status == "syntax_error":
        line = v.error_line - first_line if v.error_line else None
        text = completion.splitlines()[line] if line is not None and 0 <= line < n_lines else None
        if text is not None and v.error_offset and TRIPLE_QUOTE.match(text, v.error_offset - 1):
            return "ignore", None
        if v.incomplete:
            return "global", None
        if v.error_type in ("IndentationError", "TabError"):
            return "ignore", None
        return ("line", line) if text is not None else ("global", None)
    if v.status == "runtime_error" and v.error_type not in GLOBAL_ERRORS and inside:
        return "line", inside[-1]
    return "global", None


def _line_starts(text: str) -> list[int]:
    """Character offset where each line of `text` begins."""
    starts, pos = [], 0
    for line in text.splitlines(keepends=True):
        starts.append(pos)
        pos += len(line)
    return starts or [0]


def _check(mode: str) -> None:
    if mode not in MODES:
        raise UserError(f"unknown reward mode {mode!r}; choose one of {', '.join(MODES)}")

"""The 100 atomic functions (DESIGN §2.1), grouped by topic. Read by `atomic.library()`.

Rules for a function here:
- its body is self-contained and stdlib-only (imports go inside the body): the text between `def` and the
  next definition is the reference source that models are trained on and that tests run;
- annotations use the type vocabulary of `atomic.TYPES`; the first parameter is the one composition feeds;
- each has at least three distinct phrasings: lowercase imperative verb phrases naming every parameter as
  `{param}` (the synthesis stage replaces the fed parameter with "the result");
- the generator (`rng -> args tuple`) gives valid, varied inputs, edge cases included (the helpers below mix
  in empty/zero/single values), and keeps outputs small enough to print.
"""
from __future__ import annotations

import random

from labkit.atomic import atom

# --- input generators: each returns a function rng -> tuple of arguments ------------------------------------

WORDS = ("apple", "banana", "cherry", "kiwi", "lemon", "mango", "pear", "plum", "fig", "grape", "a", "level",
         "radar", "noon", "python", "code", "test", "data", "x", "hello", "world")


def _int(rng: random.Random, lo: int = -50, hi: int = 50) -> int:
    # One draw in six is an edge value, so tests cover 0, the bounds and small numbers.
    if rng.random() < 1 / 6:
        return rng.choice([v for v in (0, 1, -1, lo, hi) if lo <= v <= hi])
    return rng.randint(lo, hi)


def _int_list(rng: random.Random, lo: int = -20, hi: int = 20, max_len: int = 8) -> list[int]:
    r = rng.random()
    if r < 0.1:
        return []
    if r < 0.2:
        return [_int(rng, lo, hi)]
    return [rng.randint(lo, hi) for _ in range(rng.randint(2, max_len))]


def _word(rng: random.Random) -> str:
    return rng.choice(WORDS)


def _text(rng: random.Random, max_words: int = 5) -> str:
    r = rng.random()
    if r < 0.1:
        return ""
    return " ".join(_word(rng) for _ in range(rng.randint(1, max_words)))


def _word_list(rng: random.Random, max_len: int = 6) -> list[str]:
    if rng.random() < 0.1:
        return []
    return [_word(rng) for _ in range(rng.randint(1, max_len))]


def gen_int(lo: int = -50, hi: int = 50):
    return lambda rng: (_int(rng, lo, hi),)


def gen_int_list(lo: int = -20, hi: int = 20, max_len: int = 8):
    return lambda rng: (_int_list(rng, lo, hi, max_len),)


def gen_text(max_words: int = 5):
    return lambda rng: (_text(rng, max_words),)


def gen_word_list(max_len: int = 6):
    return lambda rng: (_word_list(rng, max_len),)


# --- math ------------------------------------------------------------------------------------------------

@atom("math", gen_int(),
      "double {n}", "multiply {n} by two", "compute twice the value of {n}")
def double(n: int) -> int:
    return 2 * n


@atom("math", gen_int(-10**6, 10**6),
      "sum the decimal digits of {n}", "add up the digits of {n}", "compute the digit sum of {n}")
def digit_sum(n: int) -> int:
    return sum(int(d) for d in str(abs(n)))


# --- strings ---------------------------------------------------------------------------------------------

@atom("strings", gen_text(),
      "reverse the string {s}", "return {s} backwards", "write the characters of {s} in reverse order")
def reverse_string(s: str) -> str:
    return s[::-1]


@atom("strings", gen_text(),
      "split {s} into its words", "break {s} into a list of words at whitespace",
      "list the whitespace-separated words of {s}")
def split_words(s: str) -> list[str]:
    return s.split()


# --- lists -----------------------------------------------------------------------------------------------

@atom("lists", gen_int_list(),
      "sum the numbers in {xs}", "add up all elements of {xs}", "compute the total of the list {xs}")
def sum_list(xs: list[int]) -> int:
    return sum(xs)


# --- sorting_searching -----------------------------------------------------------------------------------

@atom("sorting_searching", gen_int_list(),
      "sort {xs} in ascending order", "arrange the numbers of {xs} from smallest to largest",
      "return {xs} sorted increasingly")
def sort_ascending(xs: list[int]) -> list[int]:
    return sorted(xs)


# --- dicts_counting --------------------------------------------------------------------------------------

@atom("dicts_counting", gen_word_list(),
      "count how often each word occurs in {words}", "map each word of {words} to its number of occurrences",
      "build a frequency table of the words in {words}")
def word_counts(words: list[str]) -> dict[str, int]:
    counts = {}
    for w in words:
        counts[w] = counts.get(w, 0) + 1
    return counts

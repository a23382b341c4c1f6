"""The 100 atomic functions (DESIGN §2.1), ten per topic. Read by `atomic.library()`.

Rules for a function here:
- its body is self-contained and stdlib-only (imports go inside the body): the text between `def` and the
  next definition is the reference source that models are trained on and that tests run;
- annotations use the type vocabulary of `atomic.TYPES`; the first parameter is the one composition feeds;
- each has at least three distinct phrasings: lowercase imperative verb phrases naming every parameter as
  `{param}` (the synthesis stage replaces the fed parameter with "the result");
- the generator (`rng -> args tuple`) gives valid, varied inputs, edge cases included (the helpers below mix
  in empty/zero/single values), and keeps outputs small enough to print;
- composition feeds a function whatever its predecessor returns, not only what its generator makes, so a
  reference must stay quick and its output small on any value of its input type: combinatorial functions cap
  their argument (`min(n, 20)`), trial division refuses huge numbers, empty inputs give a neutral value.
"""
from __future__ import annotations

import random
from typing import Callable

# (function, topic, prompt phrasings, input generator) of every atom below, in definition order.
FUNCTIONS: list[tuple[Callable, str, tuple[str, ...], Callable]] = []


def atom(topic: str, generate: Callable[[random.Random], tuple], *prompts: str):
    """Decorator of a reference implementation: records it in FUNCTIONS (atomic.library reads them)."""
    def register(fn):
        FUNCTIONS.append((fn, topic, prompts, generate))
        return fn
    return register


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


def _counts(rng: random.Random) -> dict[str, int]:
    if rng.random() < 0.1:
        return {}
    return {_word(rng): rng.randint(0, 9) for _ in range(rng.randint(1, 5))}


def _grid(rng: random.Random, hi: int = 9) -> list[list[int]]:
    if rng.random() < 0.1:
        return []
    rows, cols = rng.randint(1, 4), rng.randint(1, 4)
    return [[rng.randint(0, hi) for _ in range(cols)] for _ in range(rows)]


def gen_int(lo: int = -50, hi: int = 50):
    return lambda rng: (_int(rng, lo, hi),)


def gen_int_pair(lo: int = -50, hi: int = 50):
    return lambda rng: (_int(rng, lo, hi), _int(rng, lo, hi))


def gen_int_list(lo: int = -20, hi: int = 20, max_len: int = 8):
    return lambda rng: (_int_list(rng, lo, hi, max_len),)


def gen_int_list_pair(lo: int = 0, hi: int = 10):
    return lambda rng: (_int_list(rng, lo, hi), _int_list(rng, lo, hi))


def gen_text(max_words: int = 5):
    return lambda rng: (_text(rng, max_words),)


def gen_word_list(max_len: int = 6):
    return lambda rng: (_word_list(rng, max_len),)


def gen_counts():
    return lambda rng: (_counts(rng),)


def gen_grid(hi: int = 9):
    return lambda rng: (_grid(rng, hi),)


def gen_choice(values, other):
    """Half the time one of `values` (e.g. palindromes, powers of two), otherwise `other(rng)`."""
    return lambda rng: (rng.choice(values) if rng.random() < 0.5 else other(rng)[0],)


# --- math ------------------------------------------------------------------------------------------------

@atom("math", gen_int(),
      "double {n}", "multiply {n} by two", "compute twice the value of {n}")
def double(n: int) -> int:
    return 2 * n


@atom("math", gen_int(-10**6, 10**6),
      "sum the decimal digits of {n}", "add up the digits of {n}", "compute the digit sum of {n}")
def digit_sum(n: int) -> int:
    return sum(int(d) for d in str(abs(n)))


@atom("math", gen_int(),
      "take the absolute value of {n}", "drop the sign of {n}", "return the distance of {n} from zero")
def absolute_value(n: int) -> int:
    return n if n >= 0 else -n


@atom("math", gen_choice([2, 3, 5, 13, 31, 89, 97, 7919], gen_int(-5, 100)),
      "check whether {n} is a prime number", "test if {n} is prime",
      "decide whether {n} has no divisors other than one and itself")
def is_prime(n: int) -> bool:
    if n > 10**12:
        raise ValueError("too large for trial division")
    if n < 2:
        return False
    d = 2
    while d * d <= n:
        if n % d == 0:
            return False
        d += 1
    return True


@atom("math", gen_int(-10**4, 10**4),
      "reverse the decimal digits of {n}", "write the digits of {n} backwards, keeping its sign",
      "flip the digit order of {n}")
def reverse_digits(n: int) -> int:
    sign = -1 if n < 0 else 1
    return sign * int(str(abs(n))[::-1])


@atom("math", gen_int(-20, 120),
      "list the positive divisors of {n}", "find every number that divides {n} evenly, in increasing order",
      "return the sorted divisors of {n}")
def divisors(n: int) -> list[int]:
    n = abs(n)
    if n > 10**12:
        raise ValueError("too large for trial division")
    small, large = [], []
    d = 1
    while d * d <= n:
        if n % d == 0:
            small.append(d)
            if d != n // d:
                large.append(n // d)
        d += 1
    return small + large[::-1]


@atom("math", gen_int_pair(-60, 60),
      "compute the greatest common divisor of {a} and {b}", "find the gcd of {a} and {b}",
      "return the largest number that divides both {a} and {b}")
def gcd(a: int, b: int) -> int:
    a, b = abs(a), abs(b)
    while b:
        a, b = b, a % b
    return a


@atom("math", gen_int(-10, 100),
      "sum the integers from 1 to {n}", "compute triangular number {n}",
      "add up all whole numbers from one up to {n}")
def triangular_number(n: int) -> int:
    if n <= 0:
        return 0
    return n * (n + 1) // 2


@atom("math", gen_int(-30, 300),
      "factor {n} into primes", "list the prime factors of {n} with multiplicity, smallest first",
      "break {n} down into its prime factorisation")
def prime_factors(n: int) -> list[int]:
    n = abs(n)
    if n > 10**12:
        raise ValueError("too large for trial division")
    factors = []
    d = 2
    while d * d <= n:
        while n % d == 0:
            factors.append(d)
            n //= d
        d += 1
    if n > 1:
        factors.append(n)
    return factors


@atom("math", gen_int(-3, 60),
      "count the collatz steps needed for {n} to reach one",
      "count how many halve-or-triple-plus-one steps take {n} to one",
      "compute the length of the collatz path from {n} down to one")
def collatz_steps(n: int) -> int:
    if n < 1:
        return 0
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps


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


@atom("strings", gen_text(),
      "count the vowels in {s}", "find how many characters of {s} are vowels",
      "tally the letters a, e, i, o and u in {s}")
def count_vowels(s: str) -> int:
    return sum(1 for c in s.lower() if c in "aeiou")


@atom("strings", gen_text(),
      "capitalize each word of {s}", "make the first letter of every word in {s} uppercase",
      "convert {s} to title case word by word")
def capitalize_words(s: str) -> str:
    return " ".join(w[:1].upper() + w[1:] for w in s.split())


@atom("strings", gen_choice(["level", "radar", "noon", "never odd or even", "a", "", "Step on no pets"],
                            gen_text(2)),
      "check whether {s} is a palindrome", "test if {s} reads the same forwards and backwards",
      "decide whether {s} is a palindrome, ignoring case, spaces and punctuation")
def is_palindrome(s: str) -> bool:
    letters = [c.lower() for c in s if c.isalnum()]
    return letters == letters[::-1]


@atom("strings", gen_text(),
      "find the longest word in {s}", "return the first longest word of {s}",
      "pick the word of {s} with the most letters")
def longest_word(s: str) -> str:
    best = ""
    for w in s.split():
        if len(w) > len(best):
            best = w
    return best


@atom("strings", lambda rng: (_text(rng, 3), rng.randint(-30, 30)),
      "shift every letter of {s} by {k} places in the alphabet", "apply a caesar cipher with shift {k} to {s}",
      "encrypt {s} by rotating its letters {k} positions")
def caesar_shift(s: str, k: int) -> str:
    out = []
    for c in s:
        if "a" <= c <= "z":
            out.append(chr((ord(c) - ord("a") + k) % 26 + ord("a")))
        elif "A" <= c <= "Z":
            out.append(chr((ord(c) - ord("A") + k) % 26 + ord("A")))
        else:
            out.append(c)
    return "".join(out)


@atom("strings", gen_choice(["aaabcc", "zzzz", "abba", "mississippi", ""], gen_text(2)),
      "run-length encode {s}", "compress {s} by writing each run of equal characters as the character and its count",
      "encode {s} as characters followed by their repeat counts")
def run_length_encode(s: str) -> str:
    out = ""
    i = 0
    while i < len(s):
        j = i
        while j < len(s) and s[j] == s[i]:
            j += 1
        out += s[i] + str(j - i)
        i = j
    return out


@atom("strings", gen_word_list(),
      "join {words} with spaces", "combine {words} into one space-separated string",
      "glue the strings in {words} together with a space between each")
def join_words(words: list[str]) -> str:
    return " ".join(words)


@atom("strings", gen_word_list(),
      "compute the length of every string in {words}", "list how many characters each item of {words} has",
      "map each word of {words} to its length")
def string_lengths(words: list[str]) -> list[int]:
    return [len(w) for w in words]


# --- lists -----------------------------------------------------------------------------------------------

@atom("lists", gen_int_list(),
      "sum the numbers in {xs}", "add up all elements of {xs}", "compute the total of the list {xs}")
def sum_list(xs: list[int]) -> int:
    return sum(xs)


@atom("lists", gen_int_list(-6, 6, 6),
      "multiply together all numbers in {xs}", "compute the product of the elements of {xs}",
      "return the product of the list {xs}")
def product_list(xs: list[int]) -> int:
    result = 1
    for x in xs:
        result *= x
    return result


@atom("lists", gen_int_list(),
      "find the largest number in {xs}", "return the maximum of {xs}, or zero if it is empty",
      "get the biggest element of {xs}")
def max_of_list(xs: list[int]) -> int:
    return max(xs, default=0)


@atom("lists", gen_int_list(),
      "reverse the list {xs}", "return the elements of {xs} in reverse order", "write {xs} back to front")
def reverse_list(xs: list[int]) -> list[int]:
    return xs[::-1]


@atom("lists", gen_int_list(),
      "compute the running sums of {xs}", "list the prefix sums of {xs}",
      "replace each element of {xs} by the total of it and everything before it")
def running_sum(xs: list[int]) -> list[int]:
    out, total = [], 0
    for x in xs:
        total += x
        out.append(total)
    return out


@atom("lists", gen_int_list(),
      "compute the differences between neighbouring elements of {xs}",
      "subtract each element of {xs} from the one after it", "list the successive gaps in {xs}")
def pairwise_differences(xs: list[int]) -> list[int]:
    return [b - a for a, b in zip(xs, xs[1:])]


@atom("lists", lambda rng: (_int_list(rng), _int(rng, -10, 10)),
      "rotate {xs} left by {k} positions", "shift the elements of {xs} {k} places to the left, wrapping around",
      "move the first {k} elements of {xs} to its end")
def rotate_left(xs: list[int], k: int) -> list[int]:
    if not xs:
        return []
    k %= len(xs)
    return xs[k:] + xs[:k]


@atom("lists", gen_int_list(),
      "keep only the even numbers of {xs}", "filter {xs} down to its even elements",
      "remove the odd numbers from {xs}")
def keep_evens(xs: list[int]) -> list[int]:
    return [x for x in xs if x % 2 == 0]


@atom("lists", gen_int_list(),
      "convert each number in {xs} to a string", "turn {xs} into a list of decimal strings",
      "write every element of {xs} as text")
def numbers_as_strings(xs: list[int]) -> list[str]:
    return [str(x) for x in xs]


@atom("lists", gen_int_list(),
      "compute the mean of {xs}", "average the numbers in {xs}, rounded to three decimals",
      "find the arithmetic mean of {xs}, or zero for an empty list")
def mean_of_list(xs: list[int]) -> float:
    if not xs:
        return 0.0
    return round(sum(xs) / len(xs), 3)


# --- sorting_searching -----------------------------------------------------------------------------------

@atom("sorting_searching", gen_int_list(),
      "sort {xs} in ascending order", "arrange the numbers of {xs} from smallest to largest",
      "return {xs} sorted increasingly")
def sort_ascending(xs: list[int]) -> list[int]:
    return sorted(xs)


@atom("sorting_searching", gen_int_list(),
      "sort {xs} in descending order", "arrange the numbers of {xs} from largest to smallest",
      "return {xs} sorted decreasingly")
def sort_descending(xs: list[int]) -> list[int]:
    return sorted(xs, reverse=True)


@atom("sorting_searching", gen_word_list(),
      "sort {words} alphabetically", "put the strings of {words} in dictionary order",
      "return {words} in lexicographic order")
def sort_words(words: list[str]) -> list[str]:
    return sorted(words)


@atom("sorting_searching", gen_word_list(),
      "sort {words} by length, shortest first", "order the strings of {words} from shortest to longest",
      "arrange {words} by increasing length, breaking ties alphabetically")
def sort_by_length(words: list[str]) -> list[str]:
    return sorted(words, key=lambda w: (len(w), w))


def _search_args(rng: random.Random) -> tuple:
    xs = sorted(set(_int_list(rng, 0, 30)))
    target = rng.choice(xs) if xs and rng.random() < 0.6 else rng.randint(-2, 32)
    return xs, target


@atom("sorting_searching", _search_args,
      "binary search the sorted list {xs} for {target}", "find the index of {target} in the sorted list {xs}, or -1",
      "locate {target} in the ascending list {xs} by halving the search range")
def binary_search(xs: list[int], target: int) -> int:
    lo, hi = 0, len(xs) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        if xs[mid] == target:
            return mid
        if xs[mid] < target:
            lo = mid + 1
        else:
            hi = mid - 1
    return -1


@atom("sorting_searching", gen_int_list(),
      "find the index of the largest element of {xs}", "return the position of the first maximum of {xs}, or -1",
      "locate where the biggest number of {xs} sits")
def index_of_max(xs: list[int]) -> int:
    best = -1
    for i, x in enumerate(xs):
        if best < 0 or x > xs[best]:
            best = i
    return best


@atom("sorting_searching", gen_int_list(),
      "list the indices that would sort {xs}", "compute the argsort of {xs}",
      "give the positions of the elements of {xs} in increasing order of value")
def argsort(xs: list[int]) -> list[int]:
    return sorted(range(len(xs)), key=lambda i: (xs[i], i))


@atom("sorting_searching", lambda rng: (sorted(_int_list(rng)) if rng.random() < 0.5 else _int_list(rng),),
      "check whether {xs} is sorted in ascending order", "test if {xs} never decreases",
      "decide whether each element of {xs} is at least the one before it")
def is_sorted(xs: list[int]) -> bool:
    return all(a <= b for a, b in zip(xs, xs[1:]))


@atom("sorting_searching", gen_int_list(),
      "find the three largest numbers in {xs}", "return the top three values of {xs}, largest first",
      "pick the three biggest elements of {xs} in decreasing order")
def top_three(xs: list[int]) -> list[int]:
    return sorted(xs, reverse=True)[:3]


@atom("sorting_searching", gen_text(2),
      "sort the characters of {s}", "arrange the letters of {s} in alphabetical order",
      "return the characters of {s} sorted by code point")
def sort_characters(s: str) -> str:
    return "".join(sorted(s))


# --- dicts_counting --------------------------------------------------------------------------------------

@atom("dicts_counting", gen_word_list(),
      "count how often each word occurs in {words}", "map each word of {words} to its number of occurrences",
      "build a frequency table of the words in {words}")
def word_counts(words: list[str]) -> dict[str, int]:
    counts = {}
    for w in words:
        counts[w] = counts.get(w, 0) + 1
    return counts


@atom("dicts_counting", gen_text(3),
      "count each character of {s}, ignoring whitespace", "build a character frequency table of {s}",
      "map every non-space character of {s} to how often it appears")
def char_counts(s: str) -> dict[str, int]:
    counts = {}
    for c in s:
        if not c.isspace():
            counts[c] = counts.get(c, 0) + 1
    return counts


@atom("dicts_counting", gen_int_list(0, 5),
      "count how often each number occurs in {xs}", "map each value of {xs}, written as text, to its count",
      "build a frequency table of the numbers in {xs}")
def number_counts(xs: list[int]) -> dict[str, int]:
    counts = {}
    for x in xs:
        counts[str(x)] = counts.get(str(x), 0) + 1
    return counts


@atom("dicts_counting", gen_word_list(8),
      "find the most common word in {words}", "return the word that occurs most often in {words}",
      "pick the most frequent string of {words}, alphabetically first on ties")
def most_common_word(words: list[str]) -> str:
    counts = {}
    for w in words:
        counts[w] = counts.get(w, 0) + 1
    if not counts:
        return ""
    return min(counts, key=lambda w: (-counts[w], w))


@atom("dicts_counting", gen_counts(),
      "list the keys of {d} in sorted order", "return the sorted keys of the dictionary {d}",
      "give the keys of {d} alphabetically")
def sorted_keys(d: dict[str, int]) -> list[str]:
    return sorted(d)


@atom("dicts_counting", gen_counts(),
      "sum the values of {d}", "add up all the counts in the dictionary {d}",
      "compute the total of the values in {d}")
def sum_values(d: dict[str, int]) -> int:
    return sum(d.values())


@atom("dicts_counting", gen_counts(),
      "list the keys of {d} from highest to lowest value", "rank the keys of {d} by decreasing count",
      "order the keys of {d} by value, largest first, ties alphabetically")
def keys_by_value(d: dict[str, int]) -> list[str]:
    return sorted(d, key=lambda k: (-d[k], k))


@atom("dicts_counting", gen_counts(),
      "find the key of {d} with the largest value", "return the key holding the highest count in {d}",
      "pick the key of {d} whose value is biggest, alphabetically first on ties")
def key_with_max_value(d: dict[str, int]) -> str:
    if not d:
        return ""
    return min(d, key=lambda k: (-d[k], k))


@atom("dicts_counting", gen_counts(),
      "list the values of {d} in ascending order", "return the sorted values of the dictionary {d}",
      "collect the counts of {d} from smallest to largest")
def sorted_values(d: dict[str, int]) -> list[int]:
    return sorted(d.values())


@atom("dicts_counting", gen_int_list(0, 6),
      "find the most frequent number in {xs}", "compute the mode of {xs}, the smallest one on ties",
      "return the value that occurs most often in {xs}, or zero if it is empty")
def most_frequent_number(xs: list[int]) -> int:
    counts = {}
    for x in xs:
        counts[x] = counts.get(x, 0) + 1
    if not counts:
        return 0
    return min(counts, key=lambda x: (-counts[x], x))


# --- sets ------------------------------------------------------------------------------------------------

@atom("sets", gen_int_list(-5, 5),
      "list the distinct values of {xs} in ascending order", "remove duplicates from {xs} and sort it",
      "return the sorted set of numbers in {xs}")
def unique_sorted(xs: list[int]) -> list[int]:
    return sorted(set(xs))


@atom("sets", gen_int_list(-5, 5),
      "count the distinct values in {xs}", "find how many different numbers {xs} contains",
      "compute the number of unique elements of {xs}")
def count_distinct(xs: list[int]) -> int:
    return len(set(xs))


@atom("sets", gen_int_list(0, 8, 6),
      "check whether {xs} contains a repeated value", "test if any number appears twice in {xs}",
      "decide whether {xs} has duplicates")
def has_duplicates(xs: list[int]) -> bool:
    return len(set(xs)) != len(xs)


@atom("sets", gen_int_list_pair(),
      "find the numbers that appear in both {xs} and {ys}", "intersect {xs} with {ys} and sort the result",
      "list the common elements of {xs} and {ys} in ascending order")
def common_elements(xs: list[int], ys: list[int]) -> list[int]:
    return sorted(set(xs) & set(ys))


@atom("sets", gen_int_list_pair(),
      "find the numbers in exactly one of {xs} and {ys}", "compute the symmetric difference of {xs} and {ys}",
      "list the values that belong to {xs} or {ys} but not both, sorted")
def symmetric_difference(xs: list[int], ys: list[int]) -> list[int]:
    return sorted(set(xs) ^ set(ys))


@atom("sets", gen_word_list(8),
      "list the distinct words of {words} alphabetically", "remove repeated strings from {words} and sort them",
      "return the sorted set of words in {words}")
def distinct_words(words: list[str]) -> list[str]:
    return sorted(set(words))


@atom("sets", gen_text(3),
      "list the distinct letters of {s} in alphabetical order", "collect the different letters used in {s}",
      "return the set of letters in {s} as a sorted lowercase string")
def unique_letters(s: str) -> str:
    return "".join(sorted({c.lower() for c in s if c.isalpha()}))


@atom("sets", gen_choice(["the quick brown fox jumps over the lazy dog", "abcdefghijklm", ""], gen_text(6)),
      "find the letters of the alphabet missing from {s}", "list the lowercase letters that do not occur in {s}",
      "return the alphabet letters absent from {s}")
def missing_letters(s: str) -> str:
    present = set(s.lower())
    return "".join(c for c in "abcdefghijklmnopqrstuvwxyz" if c not in present)


@atom("sets", gen_int_list(-2, 8),
      "find the smallest non-negative integer missing from {xs}", "compute the mex of {xs}",
      "return the least whole number, from zero up, that {xs} does not contain")
def smallest_missing_nonnegative(xs: list[int]) -> int:
    present = set(xs)
    m = 0
    while m in present:
        m += 1
    return m


@atom("sets", gen_int_list(-4, 4),
      "remove duplicates from {xs}, keeping first occurrences in order",
      "drop every repeated value of {xs} while preserving order",
      "keep each distinct element of {xs} once, where it first appears")
def remove_duplicates(xs: list[int]) -> list[int]:
    seen, out = set(), []
    for x in xs:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


# --- bits ------------------------------------------------------------------------------------------------

@atom("bits", gen_int(-300, 300),
      "count the one bits in the binary form of {n}", "compute the population count of {n}",
      "find how many bits are set in the absolute value of {n}")
def count_set_bits(n: int) -> int:
    return bin(abs(n)).count("1")


@atom("bits", gen_int(-64, 300),
      "write {n} in binary", "convert {n} to a string of binary digits", "format {n} as a base-two numeral")
def to_binary_string(n: int) -> str:
    return format(n, "b")


@atom("bits", lambda rng: (format(rng.randint(0, 300), "b") if rng.random() < 0.8 else _text(rng, 2),),
      "read the binary digits of {s} as a number", "convert the binary string {s} to an integer",
      "parse the zeros and ones in {s} as a base-two number, ignoring other characters")
def binary_to_int(s: str) -> int:
    bits = "".join(c for c in s if c in "01")
    return int(bits, 2) if bits else 0


@atom("bits", gen_choice([1, 2, 8, 64, 1024, 0, -4], gen_int(-20, 200)),
      "check whether {n} is a power of two", "test if {n} has exactly one bit set and is positive",
      "decide whether {n} equals two raised to some whole power")
def is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


@atom("bits", gen_int(-100, 300),
      "isolate the lowest set bit of {n}", "compute the largest power of two dividing {n}",
      "keep only the least significant one bit of {n}")
def lowest_set_bit(n: int) -> int:
    return n & -n


@atom("bits", gen_int(-100, 300),
      "clear the lowest set bit of {n}", "turn off the least significant one bit of {n}",
      "compute {n} with its rightmost one bit removed")
def clear_lowest_set_bit(n: int) -> int:
    return n & (n - 1)


@atom("bits", gen_int_list(0, 63),
      "xor together all numbers in {xs}", "compute the bitwise exclusive or of the elements of {xs}",
      "fold {xs} with xor, starting from zero")
def xor_all(xs: list[int]) -> int:
    result = 0
    for x in xs:
        result ^= x
    return result


@atom("bits", gen_int(0, 255),
      "convert {n} to its gray code", "compute the reflected binary code of {n}",
      "xor {n} with itself shifted right by one bit")
def gray_code(n: int) -> int:
    return n ^ (n >> 1)


@atom("bits", gen_int_pair(0, 255),
      "count the bit positions where {a} and {b} differ", "compute the hamming distance between {a} and {b}",
      "find how many bits of {a} must flip to give {b}")
def hamming_distance(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


@atom("bits", gen_int(-40, 300),
      "list the binary digits of {n}", "split the absolute value of {n} into its bits, most significant first",
      "return the base-two digits of {n} as a list of zeros and ones")
def bits_of(n: int) -> list[int]:
    return [int(b) for b in format(abs(n), "b")]


# --- parsing ---------------------------------------------------------------------------------------------

def _mixed_text(rng: random.Random) -> tuple:
    parts = [str(rng.randint(-99, 99)) if rng.random() < 0.5 else _word(rng) for _ in range(rng.randint(0, 6))]
    return (rng.choice([" ", ", ", ";"]).join(parts),)


@atom("parsing", _mixed_text,
      "extract the integers written in {s}", "find every whole number in the text {s}, with its sign",
      "parse all the numbers that appear in {s} into a list")
def extract_numbers(s: str) -> list[int]:
    import re
    return [int(t) for t in re.findall(r"-?[0-9]+", s)]


@atom("parsing", lambda rng: (", ".join(f"{k}={v}" for k, v in _counts(rng).items()),),
      "parse the key=value pairs in {s} into a dictionary", "read the assignments like a=1 in {s} into a mapping",
      "turn the text {s} of name=number pairs into a dictionary")
def parse_key_values(s: str) -> dict[str, int]:
    import re
    return {k: int(v) for k, v in re.findall(r"(\w+)\s*=\s*(-?[0-9]+)", s)}


@atom("parsing", gen_int_list(),
      "join the numbers {xs} with commas", "write {xs} as a comma-separated string",
      "format the list {xs} as numbers separated by commas")
def join_numbers(xs: list[int]) -> str:
    return ",".join(str(x) for x in xs)


@atom("parsing", lambda rng: (", ".join(_word_list(rng)) if rng.random() < 0.8 else _text(rng),),
      "split {s} at its commas", "break the comma-separated text {s} into trimmed items",
      "list the non-empty comma-separated fields of {s}")
def split_on_commas(s: str) -> list[str]:
    return [p.strip() for p in s.split(",") if p.strip()]


@atom("parsing", lambda rng: ([str(rng.randint(-50, 50)) if rng.random() < 0.6 else _word(rng)
                               for _ in range(rng.randint(0, 6))],),
      "parse the integer strings in {words}, skipping the rest", "convert the numeric items of {words} to integers",
      "keep the strings of {words} that are whole numbers and read them as ints")
def parse_integers(words: list[str]) -> list[int]:
    import re
    return [int(w) for w in words if re.fullmatch(r"-?[0-9]+", w.strip())]


@atom("parsing", lambda rng: (int_to_roman(rng.randint(1, 2000)) if rng.random() < 0.9 else "",),  # defined below
      "convert the roman numeral {s} to an integer", "read {s} as a roman numeral",
      "compute the value of the roman numeral {s}, ignoring other characters")
def roman_to_int(s: str) -> int:
    values = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
    digits = [values[c] for c in s.upper() if c in values]
    total = 0
    for i, v in enumerate(digits):
        if i + 1 < len(digits) and v < digits[i + 1]:
            total -= v
        else:
            total += v
    return total


@atom("parsing", gen_int(-5, 3999),
      "write {n} as a roman numeral", "convert {n} to roman numerals, or an empty string outside 1 to 3999",
      "format the number {n} in roman notation")
def int_to_roman(n: int) -> str:
    if not 0 < n < 4000:
        return ""
    out = ""
    for value, letters in ((1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
                           (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")):
        while n >= value:
            out += letters
            n -= value
    return out


@atom("parsing", lambda rng: ("".join(f"{rng.choice(['+', '-', ' + ', ' - '])}{rng.randint(0, 50)}"
                                      for _ in range(rng.randint(0, 4))).lstrip(" +"),),
      "evaluate the sum expression {s}", "compute the value of the additions and subtractions in {s}",
      "add up the signed numbers of the expression {s}")
def evaluate_sum(s: str) -> int:
    import re
    return sum(int(t.replace(" ", "")) for t in re.findall(r"[+-]?\s*[0-9]+", s))


@atom("parsing", lambda rng: ("".join(rng.choice("()[]{}") for _ in range(rng.randint(0, 6)))
                              if rng.random() < 0.5 else rng.choice(["()", "([]{})", "(a[b]c)", "(]", "((", ""]),),
      "check whether the brackets in {s} are balanced", "test if every bracket in {s} is closed in the right order",
      "decide whether the parentheses, square and curly brackets of {s} match")
def balanced_brackets(s: str) -> bool:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack = []
    for c in s:
        if c in "([{":
            stack.append(c)
        elif c in pairs:
            if not stack or stack.pop() != pairs[c]:
                return False
    return not stack


@atom("parsing", gen_counts(),
      "format {d} as key=value pairs sorted by key", "write the dictionary {d} as comma-separated name=count text",
      "render the entries of {d} as text like a=1, b=2")
def format_counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(d.items()))


# --- grids -----------------------------------------------------------------------------------------------

@atom("grids", gen_grid(),
      "flatten the grid {grid} row by row", "concatenate the rows of {grid} into one list",
      "list the cells of {grid} in reading order")
def flatten_grid(grid: list[list[int]]) -> list[int]:
    return [x for row in grid for x in row]


@atom("grids", gen_grid(),
      "transpose the grid {grid}", "swap the rows and columns of {grid}", "turn the columns of {grid} into rows")
def transpose_grid(grid: list[list[int]]) -> list[list[int]]:
    return [list(col) for col in zip(*grid)]


@atom("grids", gen_grid(),
      "rotate the grid {grid} a quarter turn clockwise", "turn {grid} ninety degrees to the right",
      "rotate the matrix {grid} clockwise by 90 degrees")
def rotate_grid(grid: list[list[int]]) -> list[list[int]]:
    return [list(row) for row in zip(*grid[::-1])]


@atom("grids", gen_grid(),
      "sum each row of {grid}", "compute the row totals of {grid}", "list the sum of every row in {grid}")
def row_sums(grid: list[list[int]]) -> list[int]:
    return [sum(row) for row in grid]


@atom("grids", gen_grid(),
      "sum each column of {grid}", "compute the column totals of {grid}, treating missing cells as zero",
      "list the sum of every column in {grid}")
def column_sums(grid: list[list[int]]) -> list[int]:
    import itertools
    return [sum(col) for col in itertools.zip_longest(*grid, fillvalue=0)]


@atom("grids", gen_grid(),
      "list the main diagonal of {grid}", "collect the cells of {grid} whose row equals their column",
      "read the diagonal of {grid} from the top left")
def main_diagonal(grid: list[list[int]]) -> list[int]:
    return [grid[i][i] for i in range(len(grid)) if i < len(grid[i])]


@atom("grids", gen_grid(1),
      "count the islands of nonzero cells in {grid}",
      "count the groups of nonzero cells in {grid} connected up, down, left or right",
      "find how many separate regions of nonzero cells {grid} has")
def count_islands(grid: list[list[int]]) -> int:
    seen = set()
    islands = 0
    for r0 in range(len(grid)):
        for c0 in range(len(grid[r0])):
            if grid[r0][c0] == 0 or (r0, c0) in seen:
                continue
            islands += 1
            stack = [(r0, c0)]
            seen.add((r0, c0))
            while stack:
                r, c = stack.pop()
                for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                    if 0 <= nr < len(grid) and 0 <= nc < len(grid[nr]) and grid[nr][nc] != 0 \
                            and (nr, nc) not in seen:
                        seen.add((nr, nc))
                        stack.append((nr, nc))
    return islands


@atom("grids", gen_grid(),
      "find the cheapest path sum from the top left to the bottom right of {grid}, moving right or down",
      "compute the minimum path sum through {grid} with steps right and down",
      "return the smallest total of a right-and-down path across {grid}")
def min_path_sum(grid: list[list[int]]) -> int:
    if not grid or not grid[0]:
        return 0
    best = []
    for x in grid[0]:
        best.append(x + (best[-1] if best else 0))
    for row in grid[1:]:
        best[0] += row[0]
        for c in range(1, len(best)):
            best[c] = min(best[c], best[c - 1]) + row[c]
    return best[-1]


@atom("grids", gen_int(-2, 8),
      "build the identity matrix of size {n}", "make a square grid of size {n} with ones on the diagonal",
      "create the identity matrix of order {n}, at most 6")
def identity_matrix(n: int) -> list[list[int]]:
    n = max(0, min(n, 6))
    return [[1 if r == c else 0 for c in range(n)] for r in range(n)]


@atom("grids", gen_int_list(0, 9, 10),
      "arrange {xs} into rows of three, padding the last row with zeros", "reshape {xs} into a grid three wide",
      "cut {xs} into consecutive rows of length three, filling the end with zeros")
def rows_of_three(xs: list[int]) -> list[list[int]]:
    rows = []
    for i in range(0, len(xs), 3):
        row = xs[i:i + 3]
        rows.append(row + [0] * (3 - len(row)))
    return rows


# --- recursion_combinatorics -----------------------------------------------------------------------------

@atom("recursion_combinatorics", gen_int(-2, 15),
      "compute the factorial of {n}", "multiply together the integers from 1 to {n}",
      "return {n} factorial, with {n} capped at 20")
def factorial(n: int) -> int:
    n = min(n, 20)
    if n <= 1:
        return 1
    return n * factorial(n - 1)


@atom("recursion_combinatorics", gen_int(-2, 40),
      "compute fibonacci number {n}", "return fibonacci number {n}, starting from 0 and 1",
      "find term {n} of the fibonacci sequence, with {n} capped at 90")
def fibonacci(n: int) -> int:
    a, b = 0, 1
    for _ in range(min(n, 90)):
        a, b = b, a + b
    return a


@atom("recursion_combinatorics", lambda rng: (rng.randint(0, 14), rng.randint(-1, 15)),
      "compute {n} choose {k}", "count the ways to pick {k} items out of {n}",
      "return the binomial coefficient of {n} and {k}, with {n} capped at 60")
def binomial(n: int, k: int) -> int:
    n = min(n, 60)
    if k < 0 or k > n:
        return 0
    result = 1
    for i in range(min(k, n - k)):
        result = result * (n - i) // (i + 1)
    return result


@atom("recursion_combinatorics", gen_int(-1, 12),
      "list row {n} of pascal's triangle", "compute the binomial coefficients of row {n}",
      "build row {n} of pascal's triangle, with {n} capped at 20")
def pascal_row(n: int) -> list[int]:
    row = [1]
    for _ in range(min(n, 20)):
        row = [a + b for a, b in zip([0] + row, row + [0])]
    return row


@atom("recursion_combinatorics", gen_int(-1, 15),
      "compute catalan number {n}", "count the binary trees with {n} internal nodes",
      "return catalan number {n}, with {n} capped at 20")
def catalan_number(n: int) -> int:
    n = max(0, min(n, 20))
    c = [1] * (n + 1)
    for i in range(1, n + 1):
        c[i] = sum(c[j] * c[i - 1 - j] for j in range(i))
    return c[n]


@atom("recursion_combinatorics", lambda rng: ("".join(rng.choice("abcab") for _ in range(rng.randint(0, 4))),),
      "list the distinct permutations of the first four characters of {s}",
      "generate every ordering of the letters at the start of {s}, up to four, sorted",
      "return all rearrangements of {s} cut to four characters, in sorted order")
def permutations_of_string(s: str) -> list[str]:
    s = s[:4]
    if len(s) <= 1:
        return [s]
    result = set()
    for i, c in enumerate(s):
        for rest in permutations_of_string(s[:i] + s[i + 1:]):
            result.add(c + rest)
    return sorted(result)


@atom("recursion_combinatorics", gen_int_list(0, 9, 4),
      "list all subsets of the first four elements of {xs}", "generate the power set of {xs} cut to four items",
      "return every sub-collection of the start of {xs}, each in original order")
def subsets_of_list(xs: list[int]) -> list[list[int]]:
    subsets = [[]]
    for x in xs[:4]:
        subsets += [s + [x] for s in subsets]
    return subsets


@atom("recursion_combinatorics", gen_int(-3, 6),
      "generate all balanced strings of {n} pairs of parentheses",
      "list every valid arrangement of {n} opening and closing brackets, with {n} capped at 4",
      "produce the well-formed parenthesis strings with {n} pairs in sorted order")
def generate_parentheses(n: int) -> list[str]:
    n = max(0, min(n, 4))
    partial = [("", 0, 0)]  # (prefix, opened, closed)
    for _ in range(2 * n):
        longer = []
        for p, opened, closed in partial:
            if opened < n:
                longer.append((p + "(", opened + 1, closed))
            if closed < opened:
                longer.append((p + ")", opened, closed + 1))
        partial = longer
    return sorted(p for p, _, _ in partial)


@atom("recursion_combinatorics", gen_int(-2, 30),
      "count the integer partitions of {n}", "find how many ways {n} can be written as a sum of positive integers",
      "compute the partition number of {n}, with {n} capped at 60")
def partition_count(n: int) -> int:
    if n < 0:
        return 0
    n = min(n, 60)
    ways = [1] + [0] * n
    for part in range(1, n + 1):
        for total in range(part, n + 1):
            ways[total] += ways[total - part]
    return ways[n]


@atom("recursion_combinatorics", gen_int_list(-5, 10, 6),
      "list every sum reachable by a subset of the first six elements of {xs}",
      "compute the distinct subset sums of {xs} cut to six items, sorted",
      "return the sorted totals of all sub-collections of the start of {xs}")
def subset_sums(xs: list[int]) -> list[int]:
    sums = {0}
    for x in xs[:6]:
        sums |= {s + x for s in sums}
    return sorted(sums)

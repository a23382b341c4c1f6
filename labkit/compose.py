"""Composition by types, the first half of synthesis (`labkit/synth.py` runs the pipeline): the graph of atoms
that can follow each other, the rules that keep the target domain out of training, random chains, and each
chain's prompt, body and tests as a candidate task.

    graph = Graph.build(atomic.library())
    chain = walk(graph, Rule((2, 3)), rng)                 # e.g. ["digit_sum", "is_even"]
    candidate = make_candidate(graph, chain, cfg, rng, taken)
"""
from __future__ import annotations

import hashlib
import json
import random
import re
import textwrap
from dataclasses import dataclass

from labkit import atomic, config, tasks
from labkit.atomic import AtomicSpec
from labkit.tasks import Task


@dataclass(frozen=True)
class Graph:
    specs: dict[str, AtomicSpec]
    succ: dict[str, list[str]]     # f -> one-argument atoms that accept f's return type
    pred: dict[str, list[str]]     # g -> atoms whose return type g accepts (g takes one argument)

    @classmethod
    def build(cls, specs: list[AtomicSpec]) -> "Graph":
        succ = {s.name: [] for s in specs}
        pred = {s.name: [] for s in specs}
        for f, g in sorted(atomic.composition_edges(specs)):
            succ[f].append(g)
            pred[g].append(f)
        return cls({s.name: s for s in specs}, succ, pred)

    def one_arg(self, name: str) -> bool:
        return len(self.specs[name].params) == 1


@dataclass(frozen=True)
class Rule:
    """Which chains a category may hold."""
    depths: tuple[int, ...]
    banned_atoms: frozenset = frozenset()
    banned_pairs: frozenset = frozenset()
    need_atoms: frozenset = frozenset()    # at least one of these must appear...
    need_pairs: frozenset = frozenset()    # ...or at least one of these pairs, adjacent

    def allows(self, chain: list[str]) -> bool:
        pairs = set(zip(chain, chain[1:]))
        return (len(chain) in self.depths and not self.banned_atoms & set(chain) and not self.banned_pairs & pairs
                and (not self.need_atoms or bool(self.need_atoms & set(chain)))
                and (not self.need_pairs or bool(self.need_pairs & pairs)))


def hold_out(graph: Graph, n_atoms: int, n_pairs: int, rng: random.Random):
    """Held-out atoms among one-argument atoms with >= 2 ways in and out (so composites around them exist),
    then held-out pairs among edges between the remaining atoms whose ends keep other neighbours."""
    connected = sorted(n for n in graph.specs if graph.one_arg(n)
                       and len(graph.pred[n]) >= 2 and len(graph.succ[n]) >= 2)
    if n_atoms > len(connected):
        raise config.UserError(f"n_held_out_atoms={n_atoms} but only {len(connected)} atoms are connected enough "
                               f"to hold out (>= 2 predecessors and successors); use at most {len(connected)}")
    atoms = frozenset(rng.sample(connected, n_atoms))
    edges = sorted((f, g) for f in graph.specs for g in graph.succ[f]
                   if f != g and not {f, g} & atoms and len(graph.succ[f]) >= 2 and len(graph.pred[g]) >= 2)
    if n_pairs > len(edges):
        raise config.UserError(f"n_held_out_pairs={n_pairs} but only {len(edges)} adjacent pairs can be held out; "
                               f"use at most {len(edges)}")
    return atoms, frozenset(rng.sample(edges, n_pairs))


def count_chains(graph: Graph, rule: Rule) -> int:
    """How many distinct chains a rule allows (before validation): dynamic programming over the graph,
    with "must contain" constraints by inclusion-exclusion (all chains minus those avoiding the need)."""
    def avoiding(banned_atoms, banned_pairs) -> int:
        ends = {n: 1 for n in graph.specs if n not in banned_atoms}
        total = ends_total = 0
        for depth in range(1, max(rule.depths) + 1):
            if depth > 1:
                ends = {g: sum(ends.get(f, 0) for f in graph.pred[g] if (f, g) not in banned_pairs)
                        for g in graph.specs if g not in banned_atoms and graph.one_arg(g)}
            ends_total = sum(ends.values())
            total += ends_total if depth in rule.depths else 0
        return total
    n = avoiding(rule.banned_atoms, rule.banned_pairs)
    if rule.need_atoms:
        n -= avoiding(rule.banned_atoms | rule.need_atoms, rule.banned_pairs)
    if rule.need_pairs:
        n -= avoiding(rule.banned_atoms, rule.banned_pairs | rule.need_pairs)
    return n


def walk(graph: Graph, rule: Rule, rng: random.Random) -> list[str] | None:
    """One random chain the rule allows, or None at a dead end. A needed atom or pair is placed first, at a
    random position, and the chain grows backwards and forwards from it along allowed edges."""
    depth = rng.choice(rule.depths)
    if rule.need_atoms:
        segment = [rng.choice(sorted(rule.need_atoms))]
    elif rule.need_pairs:
        segment = list(rng.choice(sorted(rule.need_pairs)))
    else:
        segment = [rng.choice(sorted(n for n in graph.specs if n not in rule.banned_atoms))]
    if depth < len(segment):
        return None
    # Only the first step may take several arguments; a segment that starts with one sits at position 0.
    start = rng.randint(0, depth - len(segment)) if graph.one_arg(segment[0]) else 0
    chain = segment
    for position in range(start - 1, -1, -1):
        options = [f for f in graph.pred[chain[0]] if f not in rule.banned_atoms
                   and (f, chain[0]) not in rule.banned_pairs and (position == 0 or graph.one_arg(f))]
        if not options:
            return None
        chain = [rng.choice(options)] + chain
    while len(chain) < depth:
        options = [g for g in graph.succ[chain[-1]] if g not in rule.banned_atoms
                   and (chain[-1], g) not in rule.banned_pairs]
        if not options:
            return None
        chain.append(rng.choice(options))
    return chain if rule.allows(chain) else None


# --- prompts and responses ---------------------------------------------------------------------------------

def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


# "the list {xs}" with "the result" filled in would read "the list the result": the noun goes.
_NOUN_BEFORE_PARAM = re.compile(r"\bthe (?:list|dictionary|dict|grid|matrix|text|string|sentence|number|integer) "
                                r"(?=\{\w+\})")


def describe(graph: Graph, chain: list[str], rng: random.Random) -> str:
    """An English description of the chain: one phrasing per atom, joined by one of several connectives."""
    phrases = []
    for i, name in enumerate(chain):
        spec = graph.specs[name]
        template = rng.choice(spec.prompts)
        if i == 0:
            fill = {p: p for p, _ in spec.params}
        else:
            template = _NOUN_BEFORE_PARAM.sub("", template)
            fill = {spec.params[0][0]: rng.choice(("the result", "the result", "it"))}
        phrases.append(template.format(**fill))
    first, rest = phrases[0], phrases[1:]
    form = rng.randrange(4)
    if form == 0:     # "Sort xs in ascending order, then sum the numbers in it."
        return _cap(", then ".join(phrases)) + "."
    if form == 1:     # "First sort xs ...; next ...; finally sum the numbers in the result."
        middle = [f"next {p}" for p in rest[:-1]]
        return _cap("; ".join([f"first {first}"] + middle + [f"finally {rest[-1]}"])) + "."
    if form == 2:     # "Sort xs in ascending order. Then sum the numbers in the result. Return that."
        return " ".join([_cap(first) + "."] + [f"Then {p}." for p in rest] + ["Return the result."])
    # "Take the result of sorting ..." needs gerunds the phrasings don't have; this form keeps them imperative.
    return f"Compute the following in order: {first}; " + "; ".join(f"{p}" for p in rest) + "."


def call_body(graph: Graph, chain: list[str]) -> str:
    """One line per step: `a = f(x)`, `b = g(a)`, `return h(b)`."""
    params = [p for p, _ in graph.specs[chain[0]].params]
    names = [v for v in "abcdeghkmpqrtuvwyz" if v not in params]
    lines, arg = [], ", ".join(params)
    for i, name in enumerate(chain):
        if i == len(chain) - 1:
            lines.append(f"    return {name}({arg})")
        else:
            lines.append(f"    {names[i]} = {name}({arg})")
            arg = names[i]
    return "\n".join(lines) + "\n"


def inline_body(graph: Graph, chain: list[str]) -> str:
    """Self-contained: each atom's source as an inner function, then the same calls."""
    inner = [textwrap.indent(graph.specs[n].source, "    ") for n in dict.fromkeys(chain)]
    return "".join(inner) + call_body(graph, chain)


def context_for(graph: Graph, chain: list[str]) -> str:
    """The atoms' sources, placed before the prompt in `call` style so the program runs."""
    return "\n\n".join(graph.specs[n].source for n in dict.fromkeys(chain)) + "\n\n"


def entry_name(chain: list[str], taken: set[str]) -> str:
    """`task_<hash of the chain>`: short, the same for the same chain in every run, and it names no atom (a
    readable name would let a model copy a held-out atom's name instead of reading the description)."""
    digest = hashlib.sha1("|".join(chain).encode()).hexdigest()
    width = 8
    while f"task_{digest[:width]}" in taken:
        width += 4
    return f"task_{digest[:width]}"


def test_inputs(spec: AtomicSpec, seed: int, n: int) -> list[list]:
    """n distinct argument lists from the atom's generator. Every composite starting with this atom gets the
    same inputs (its "input family"), which is what makes behavioural duplicates cheap to find."""
    rng = random.Random(f"{seed}:synth:{spec.name}")
    out, seen = [], set()
    for _ in range(20 * n):
        args = json.loads(json.dumps(list(spec.generate(rng))))
        key = json.dumps(args, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(args)
            if len(out) == n:
                break
    return out


def shorter_chains(graph: Graph, chain: list[str]) -> list[list[str]]:
    """The chain with one run of consecutive steps removed, wherever the remaining chain has the same
    signature (the removed run maps a single type to itself). Removing everything leaves the identity."""
    out = []
    for i in range(len(chain)):
        first = graph.specs[chain[i]]
        if len(first.params) != 1:
            continue
        for j in range(i, len(chain)):
            if first.params[0][1] == graph.specs[chain[j]].returns:
                out.append(chain[:i] + chain[j + 1:])
    return out


@dataclass
class Candidate:
    chain: list[str]
    task: Task
    families: list[str]          # atoms whose test inputs this candidate can take (its own first atom included)
    shorter: list[list[str]]


def atom_calls(graph: Graph) -> list[Task]:
    """The call-form atomic tasks: every atom in every phrasing as a one-step composite (its source in the
    context, a `task_...` header, the phrase as the docstring, `return atom(args)` as the body). They are what
    links an atom's phrase to its name in a call position, which `atom_base` (name -> phrase -> body) never
    shows, so a held-out atom can be composed at all (DESIGN §2.5). Atomic data: never in pretraining."""
    out = []
    for name, spec in graph.specs.items():
        entry = entry_name([name], set())
        header = f"def {entry}({', '.join(f'{p}: {t}' for p, t in spec.params)}) -> {spec.returns}:"
        fill = {p: p for p, _ in spec.params}
        for i, template in enumerate(spec.prompts):
            out.append(Task(id=f"call/{name}/{i}", split="atom_call",
                            prompt=tasks.format_prompt(header, _cap(template.format(**fill)) + "."),
                            entry_point=entry, solution=call_body(graph, [name]),
                            tests=[dict(t) for t in spec.tests], atoms=[name], depth=1,
                            context=context_for(graph, [name])))
    return out


def make_candidate(graph: Graph, chain: list[str], cfg, rng: random.Random, taken: set[str]):
    first = graph.specs[chain[0]]
    kinds = [t for _, t in first.params]
    families = [n for n, s in graph.specs.items() if [t for _, t in s.params] == kinds]
    name = entry_name(chain, taken)
    params = ", ".join(f"{p}: {t}" for p, t in first.params)
    header = f"def {name}({params}) -> {graph.specs[chain[-1]].returns}:"
    body = call_body(graph, chain) if cfg.style == "call" else inline_body(graph, chain)
    task = Task(id=name, split="", prompt=tasks.format_prompt(header, describe(graph, chain, rng)),
                entry_point=name, solution=body, tests=[], atoms=list(chain), depth=len(chain),
                context=context_for(graph, chain) if cfg.style == "call" else "")
    return Candidate(chain, task, sorted(families), shorter_chains(graph, chain))



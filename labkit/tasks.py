"""Tasks: one coding problem as data, the way every stage sees it (synth writes them, eval/SFT/RL read them),
and the shared ways to load them: a split, a training mixture, the atomic library as tasks.

A task is HumanEval-shaped. The model is given `prompt` (the `def` line and a docstring) and writes the body;
`solution` is the reference body. To run a completion, the program is

    context + prompt + completion        (context: code the program may call, e.g. atomic functions)

followed by the task's tests, each an `assert` line run by the sandbox with its own time limit.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from labkit.config import UserError

SPLITS = ("atom_base", "atom_call", "train_A", "train_B", "train_C", "test_in_domain", "test_target")
TRAIN_SPLITS = ("atom_base", "atom_call", "train_A", "train_B", "train_C")   # what SFT and RL may train on
KINDS = ("held_out_atom", "held_out_pair", "deeper")             # the kinds of test_target tasks (DESIGN §3)
# The atomic data of every SFT mixture that has any: the atoms as tasks, and each atom called by its phrase three
# times over. Without atom_call nothing maps a phrase to an atom's name in a call, and held-out atoms stay at 0;
# x3 against x1 is measured in the README (*Data*).
ATOMIC = {"atom_base": 1.0, "atom_call": 3.0}


@dataclass
class Task:
    id: str
    split: str
    prompt: str                  # "def f(xs: list[int]) -> int:\n    \"\"\"...\"\"\"\n"
    entry_point: str             # the function the tests call
    solution: str                # reference body, indented, ending with a newline
    tests: list[dict]            # [{"args": [...], "expected": ...}, ...]
    atoms: list[str]             # atomic functions used, in order of application
    depth: int                   # number of atomic steps (1 for atom_base)
    context: str = ""            # code placed before the prompt (the atoms, in `call` style)
    kind: str = ""               # for test_target: "held_out_atom", "held_out_pair" or "deeper"
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_json(cls, record: dict) -> "Task":
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in record.items() if k in names}
        known.setdefault("extra", {}).update({k: v for k, v in record.items() if k not in names})
        return cls(**known)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(d.pop("extra"))
        return d


def format_prompt(header: str, description: str) -> str:
    """The prompt the model sees: the def line and a one-paragraph docstring."""
    return f'{header}\n    """{description}"""\n'


def program(task: Task, completion: str) -> str:
    """The text the sandbox runs for a completion (tests are passed separately)."""
    body = completion if completion.endswith("\n") else completion + "\n"
    return task.context + task.prompt + body


def completion_first_line(task: Task) -> int:
    """1-based line number in `program(task, ...)` where the completion starts."""
    return (task.context + task.prompt).count("\n") + 1


def test_snippets(task: Task) -> list[str]:
    """One `assert` per test, comparing canonical JSON rather than with `==`.

    A model-written function could return an object whose `__eq__` always says True; JSON of the result (keys
    sorted, so dict order doesn't matter) must equal the expected JSON text exactly, which also tells
    True from 1 and 2 from 2.0. A value JSON cannot encode (a set, a custom object) becomes null: a wrong answer
    (status fail), not an error in the test harness.
    """
    return [f"import json as _json; assert _json.dumps({task.entry_point}(*{t['args']!r}), sort_keys=True, "
            f"default=lambda o: None) == "
            f"{json.dumps(t['expected'], sort_keys=True)!r}" for t in task.tests]


def cut_completion(text: str) -> str:
    """The stop rule (DESIGN §2.3): keep the body up to its first non-indented, non-empty line."""
    out = []
    for line in text.splitlines(keepends=True):
        if line.strip() and not line[0].isspace():
            break
        out.append(line)
    return "".join(out).rstrip() + "\n" if out else ""


def load_split(data_dir: str | Path, split: str, limit: int | None = None) -> list[Task]:
    """Tasks of one split from a synth output directory, with errors that say how to fix a bad directory."""
    data_dir = Path(data_dir)
    if not (data_dir / "manifest.json").exists():
        raise UserError(f"{data_dir} is not a data directory (no manifest.json); "
                        f"make one with `python -m labkit synth --out {data_dir}`")
    path = data_dir / f"{split}.jsonl"
    if not path.exists():
        have = sorted(p.stem for p in data_dir.glob("*.jsonl"))
        raise UserError(f"no split {split!r} in {data_dir}; splits there: {', '.join(have)}")
    tasks = [Task.from_json(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
    if not tasks:
        raise UserError(f"split {split!r} in {data_dir} is empty; regenerate the data with larger sizes")
    return tasks[:limit] if limit is not None else tasks


def load_mixture(data_dir: str | Path, mixture: dict[str, float]) -> dict[str, list[Task]]:
    """The training tasks of each split in a data mixture (split -> weight; "train_C:60" is the split's first
    60 tasks), with errors that say how to fix a bad mixture."""
    if not mixture:
        raise UserError(f"the data mixture is empty; set e.g. mixture='{{\"atom_base\": 1, \"train_A\": 1}}' "
                        f"(splits: {', '.join(TRAIN_SPLITS)})")
    out = {}
    for split, weight in mixture.items():
        name, _, first = split.partition(":")
        if name not in TRAIN_SPLITS or (first and not first.isdigit()):
            raise UserError(f"mixture names {split!r}, which is not a training split; use "
                            f"{', '.join(TRAIN_SPLITS)}, or the first N tasks of one as e.g. train_C:60 "
                            f"(test splits are for evaluation only)")
        if weight < 0:
            raise UserError(f"mixture weight of {split!r} is {weight}; weights must be >= 0")
        if weight > 0:
            out[split] = load_split(data_dir, name, int(first) if first else None)
            if first and len(out[split]) < int(first):
                raise UserError(f"mixture asks for {split!r} but {name} in {data_dir} holds only "
                                f"{len(out[split])} tasks; synthesise a larger pool or ask for fewer")
    return out


def atom_base(specs: list) -> list[Task]:
    """The atomic library as tasks (`atomic.AtomicSpec`s in): every atom in every phrasing; the solution is
    the reference source minus its def line."""
    out = []
    for spec in specs:
        def_line, body = spec.source.split("\n", 1)
        assert def_line.startswith(f"def {spec.name}("), def_line
        for i in range(len(spec.prompts)):
            out.append(Task(id=f"{spec.name}/{i}", split="atom_base",
                            prompt=format_prompt(spec.header, spec.describe(i)), entry_point=spec.name,
                            solution=body, tests=[dict(t) for t in spec.tests], atoms=[spec.name], depth=1))
    return out

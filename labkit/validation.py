"""Validation of candidate composites in the sandbox, the second half of synthesis (`labkit/synth.py`): many
candidates run in one program (one interpreter per candidate would cost more than the work), each on its test
inputs, with the reasons a candidate is rejected; a program that dies is split in halves and rerun.

    results = validate(graph, candidates, inputs, cfg)    # per candidate: None (accepted) or why it failed
"""
from __future__ import annotations

import json

from labkit import sandbox
from labkit.compose import Candidate, Graph


MARK = "@@synth-results@@"
SLOW_SECONDS = 1.0        # CPU seconds per candidate inside a batch program; real candidates take microseconds
MAX_OUTPUT_CHARS = 2000   # outputs of all tests as JSON: bigger values make poor prompts and slow tests
DIGEST_CHARS = 8          # one behaviour digest (48 bits, base64)

# Runs inside the sandbox after the atoms and the candidates' definitions; it prints one line of results.
# The sandbox keeps only the last 2,000 characters of stdout, so a candidate reports a reason and, when it is
# good, one digest per input family (its behaviour on each, for the duplicate check) -- not its outputs: the
# caller recomputes those from the same (trusted, now vetted) code and checks them against the digest.
# A candidate's CPU time is capped with ITIMER_VIRTUAL: the sandbox's own wall limit uses ITIMER_REAL.
HARNESS = """
import base64, hashlib, json, signal

class _Slow(BaseException):   # BaseException: a candidate's own `except Exception` must not swallow it
    pass

def _on_cpu_limit(signum, frame):
    raise _Slow()

def _digest(value):
    raw = hashlib.sha1(json.dumps(value, sort_keys=True).encode()).digest()
    return base64.urlsafe_b64encode(raw[:6]).decode()

def _int64(v):   # JSON readers (pandas, pyarrow) hold integers as int64
    if isinstance(v, list):
        return all(_int64(x) for x in v)
    if isinstance(v, dict):
        return all(_int64(x) for x in v.values())
    return not isinstance(v, int) or -2**63 <= v < 2**63

def _apply(names, args):
    value = globals()[names[0]](*args) if names else args[0]
    for name in names[1:]:
        value = globals()[name](value)
    return value

def _check(entry, first, families, shorter):
    fn, inputs = globals()[entry], INPUTS[first]
    try:
        outs = [fn(*args) for args in inputs]
    except Exception:
        return ["raises"]
    if any(o is None for o in outs):
        return ["returns_none"]
    try:
        text = json.dumps(outs, allow_nan=False)   # the tests store outputs as JSON; nan != nan anyway
    except (TypeError, ValueError):
        return ["not_json"]
    if json.loads(text) != outs:                   # e.g. tuples or int dict keys would not survive the trip
        return ["not_json"]
    if len(text) > MAX_OUTPUT_CHARS:
        return ["too_large"]
    if not _int64(outs):
        return ["big_int"]
    if len({json.dumps(o, sort_keys=True) for o in outs}) == 1:
        return ["constant"]
    for names in shorter:
        try:
            if [_apply(names, args) for args in inputs] == outs:
                return ["redundant"]
        except Exception:
            pass
    digests = ""
    for name in families:
        try:
            digests += _digest([fn(*args) for args in INPUTS[name]])
        except Exception:
            digests += "!" * DIGEST_CHARS          # not in the base64 alphabet: "no behaviour here"
    return ["ok", digests]

def _run(cands):
    signal.signal(signal.SIGVTALRM, _on_cpu_limit)
    results = []
    for entry, first, families, shorter in cands:
        signal.setitimer(signal.ITIMER_VIRTUAL, SLOW_SECONDS)
        try:
            results.append(_check(entry, first, families, shorter))
        except _Slow:
            results.append(["slow"])
        finally:
            signal.setitimer(signal.ITIMER_VIRTUAL, 0)
    print(MARK + json.dumps(results, separators=(",", ":")))
"""
SETTINGS = f"MARK = {MARK!r}\nSLOW_SECONDS = {SLOW_SECONDS}\nMAX_OUTPUT_CHARS = {MAX_OUTPUT_CHARS}\n" \
           f"DIGEST_CHARS = {DIGEST_CHARS}\n"


def validation_program(graph: Graph, batch: list[Candidate], inputs: dict[str, list]) -> str:
    atoms = sorted({n for c in batch for n in c.chain})
    families = sorted({n for c in batch for n in c.families})
    cands = [[c.task.entry_point, c.chain[0], c.families, c.shorter] for c in batch]
    return "\n\n".join(
        [graph.specs[n].source for n in atoms]
        + [c.task.prompt + c.task.solution for c in batch]
        + [HARNESS, SETTINGS + f"INPUTS = json.loads({json.dumps(json.dumps({n: inputs[n] for n in families}))})",
           f"_run(json.loads({json.dumps(json.dumps(cands))}))\n"])


def pack(candidates: list[Candidate], max_size: int) -> list[list[int]]:
    """Batches of candidate indices whose result line fits the sandbox's stdout tail (a good candidate
    reports one digest per input family), at most max_size each."""
    budget = sandbox.TAIL - len(MARK) - 10
    batches, size = [[]], 0
    for i, c in enumerate(candidates):
        need = 20 + DIGEST_CHARS * len(c.families)
        if batches[-1] and (size + need > budget or len(batches[-1]) == max_size):
            batches.append([])
            size = 0
        batches[-1].append(i)
        size += need
    return batches if batches[0] else []


def _parse(stdout: str) -> list | None:
    for line in stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    return None


def validate(graph: Graph, candidates: list[Candidate], inputs: dict[str, list], cfg) -> list[list]:
    """[reason] or ["ok", digests] per candidate. A batch whose program fails as a whole is split in halves
    until the failing candidate stands alone; it is then rejected with the sandbox's status."""
    results: list = [None] * len(candidates)
    pending = pack(candidates, cfg.batch_size)
    while pending:
        programs = [validation_program(graph, [candidates[i] for i in batch], inputs) for batch in pending]
        verdicts = sandbox.run_many(programs, timeout=cfg.timeout)
        retry = []
        for batch, verdict in zip(pending, verdicts):
            if verdict.status in ("syntax_error", "runtime_error"):
                # The harness catches every candidate's exceptions: this is a bug here, not a bad candidate.
                raise RuntimeError(f"synth validation program failed: {verdict.error_type}\n{verdict.stderr}")
            parsed = _parse(verdict.stdout) if verdict.status == "pass" else None
            if parsed is not None and len(parsed) == len(batch):
                for i, result in zip(batch, parsed):
                    results[i] = result
            elif len(batch) == 1:
                results[batch[0]] = [f"sandbox_{verdict.status}"]
            else:
                retry += [batch[:len(batch) // 2], batch[len(batch) // 2:]]
        pending = retry
    return results



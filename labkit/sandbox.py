"""Running untrusted, model-written Python: the verdicts, and the warm pool of fork servers callers use.

    v = sandbox.run("def f(x):\\n    return x + 1\\n", ["assert f(1) == 2", "assert f(2) == 4"])
    v.status, v.tests_passed, v.tests_total, v.pass_ratio      # 'fail', 1, 2, 0.5
    verdicts = sandbox.run_many(programs, tests, timeout=2.0)  # parallel, order kept
    python -m labkit.sandbox FILE [--timeout S] [--memory-mb N]  # inline asserts; prints the verdict as JSON

A program runs as `python program.py` would run it: its text is also the file `program.py` in its private run
dir (the root of its chroot), which is its `__file__`, its `sys.argv[0]` and the filename its code is compiled
under (so tracebacks name it; line numbers are those of the text given), and it runs as the module `__main__`.
A program runs in phases: its own text first (definitions, or inline asserts when `tests` is None), then each
test snippet with its own time limit, then a wait for its non-daemon threads (as the interpreter would). It
passes only if every phase passed AND the harness sent its completion token over a private pipe: an exit
code, `sys.exit(0)`, `os._exit(0)`, an atexit hook or printed "success" text never read as a pass. The
verdict's status is the first error's (errors outrank assertion failures); `error_line` is the innermost
traceback frame inside the program text, `error_trace` all of them (rewards.py pins errors with these).

Three modules, one per process that runs them:
- this one, in the caller: `Verdict`, `run`/`run_many`, the pool of servers and the dispatch of jobs to them,
  the CLI;
- `labkit/sandbox_server.py`, the fork server (`python -m labkit.sandbox_server`): its namespaces, private
  tmpfs and pids cgroup, one fork per program, the watch over its pipes and clock, the kill of everything it
  made, its verdict; how the sandbox is fast and how it holds (DESIGN §6), layer by layer, is told there;
- `labkit/sandbox_child.py`, the forked child: it locks itself in (chroot, rlimits, uid drop), then its
  harness runs the phases and reports them, with the completion token, to the server.
Each isolation layer is used where the OS allows and reported in `Verdict.metadata`; without root (e.g. a
laptop) the namespaces, chroot and uid drop are skipped, weaker, and the metadata says so. Linux only.
Tests compare with `==`, so an object whose `__eq__` always says True passes them: that is the tests'
business (compare types too), not the sandbox's.
"""
from __future__ import annotations

import argparse
import atexit
import collections
import json
import os
import select
import subprocess
import sys
import threading
from dataclasses import dataclass, field

STATUSES = ("pass", "fail", "runtime_error", "syntax_error", "timeout", "memory", "output_limit", "killed")
TAIL = 2000  # characters of stdout/stderr kept in a verdict


@dataclass
class TestResult:
    status: str                  # one of STATUSES, or "not_run" when an earlier phase ended the program
    error_type: str | None = None
    error_line: int | None = None  # 1-based line in the program text, when the error lies there
    duration: float = 0.0
    error_trace: list[int] = field(default_factory=list)  # program lines on the traceback, outermost first
    error_offset: int | None = None  # syntax errors: 1-based column (SyntaxError.offset)
    incomplete: bool = False  # syntax errors: the text ends mid-construct (codeop wants more input)


@dataclass
class Verdict:
    status: str
    error_type: str | None = None
    error_line: int | None = None
    tests_passed: int = 0
    tests_total: int = 0
    tests: list[TestResult] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0
    metadata: dict = field(default_factory=dict)  # isolation in force, limits, exit code/signal
    error_trace: list[int] = field(default_factory=list)  # as in TestResult, for the deciding error
    error_offset: int | None = None
    incomplete: bool = False

    @property
    def pass_ratio(self) -> float:
        return self.tests_passed / self.tests_total if self.tests_total else 0.0

    def to_json(self) -> dict:
        return {**vars(self), "tests": [dict(vars(t)) for t in self.tests]}  # asdict's deep copy is slow

    @classmethod
    def from_json(cls, d: dict) -> "Verdict":
        return cls(**{**d, "tests": [TestResult(**t) for t in d.get("tests", [])]})


# ----------------------------------------------------------------------------------------------------------
# Public API (caller side). The caller only talks JSON lines to its servers; it never runs a program itself.

def run(program: str, tests: list[str] | None = None, *, timeout: float = 3.0, memory_mb: int = 512,
        max_procs: int = 32, max_output: int = 1 << 20) -> Verdict:
    """Run one program (and its assert snippets, if given). Never raises because of the program."""
    return run_many([program], [tests], timeout=timeout, memory_mb=memory_mb, max_procs=max_procs,
                    max_output=max_output, workers=1)[0]


def run_many(programs: list[str], tests: list[list[str] | None] | None = None, *, timeout: float = 3.0,
             memory_mb: int = 512, max_procs: int = 32, max_output: int = 1 << 20,
             workers: int | None = None) -> list[Verdict]:
    """Run programs in parallel on `workers` warm servers (default: all cores); verdicts in input order."""
    if tests is not None and len(tests) != len(programs):
        raise ValueError(f"run_many: {len(programs)} programs but {len(tests)} test lists")
    jobs = [{"program": p, "tests": tests[i] if tests is not None else None, "timeout": float(timeout),
             "memory_mb": int(memory_mb), "max_procs": int(max_procs), "max_output": int(max_output)}
            for i, p in enumerate(programs)]
    with _POOL_LOCK:
        return _dispatch(jobs, min(workers or os.cpu_count() or 1, max(len(jobs), 1)))


def shutdown() -> None:
    """Stop the warm servers (they also stop by themselves when this process exits)."""
    with _POOL_LOCK:
        _forget_inherited_pool()
        while _POOL:
            _POOL.pop().close()


def cpu_seconds() -> float:
    """CPU time used so far by the warm servers and all the programs they ran (for benchmarks, profiling)."""
    total = 0.0
    for s in _POOL:
        try:
            launcher = s.proc.pid
            kids = open(f"/proc/{launcher}/task/{launcher}/children").read().split()
            for pid in [launcher, *kids]:  # the launcher, and the server below it (its children are reaped)
                f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
                total += sum(int(x) for x in f[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime
        except OSError:
            pass
    return total


class _Server:
    """One warm fork server, seen from the caller: a child process speaking JSON lines on stdin/stdout."""

    def __init__(self):
        pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        # A clean environment: programs must not see the caller's secrets; a fixed hash seed makes set
        # iteration order (and so printed output) the same on every run. LD_BIND_NOW: the dynamic linker
        # binds every symbol once in the server, not lazily in each child (a write, so a copied page, each).
        env = {"PATH": os.defpath, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
               "PYTHONPATH": pkg_root, "LD_BIND_NOW": "1"}
        # A new session: a Ctrl-C in the caller's terminal must not reach the servers.
        self.proc = subprocess.Popen([sys.executable, "-m", "labkit.sandbox_server"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env, start_new_session=True)
        self.fd = self.proc.stdout.fileno()
        self.buf = b""
        self.pending: collections.deque[int] = collections.deque()  # indices of the jobs sent, in order

    def send(self, job: dict) -> None:
        self.proc.stdin.write(json.dumps(job).encode() + b"\n")
        self.proc.stdin.flush()

    def read_lines(self) -> list[bytes] | None:
        """Called when select says the fd is readable: the complete lines so far, or None at EOF."""
        data = os.read(self.fd, 1 << 16)
        if not data:
            return None
        *lines, self.buf = (self.buf + data).split(b"\n")
        return lines

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


_POOL: list[_Server] = []
_POOL_LOCK = threading.Lock()
_POOL_PID = os.getpid()  # the process whose servers these are


def _forget_inherited_pool() -> None:
    """In a fork of the caller (a DataLoader worker, multiprocessing) the pool belongs to the parent: sharing
    its pipes would mix two conversations. Start afresh, leaving the parent's servers alone."""
    global _POOL_PID
    if _POOL_PID != os.getpid():
        _POOL.clear()
        _POOL_PID = os.getpid()
atexit.register(shutdown)
DEPTH = 2  # jobs queued per server, so that the next one is already there when a program ends


def _dispatch(jobs: list[dict], workers: int) -> list[Verdict]:
    _forget_inherited_pool()
    while len(_POOL) < workers:
        _POOL.append(_Server())
    servers = _POOL[:workers]
    results: list[Verdict | None] = [None] * len(jobs)
    todo = collections.deque(range(len(jobs)))
    while todo or any(s.pending for s in servers):
        for s in servers:
            while todo and len(s.pending) < DEPTH:
                s.pending.append(todo.popleft())
                try:
                    s.send(jobs[s.pending[-1]])
                except OSError:  # a dead server: its EOF below reports it
                    break
        readable, _, _ = select.select([s.fd for s in servers if s.pending], [], [])
        for k, s in enumerate(servers):
            if s.fd not in readable:
                continue
            lines = s.read_lines()
            if lines is None:  # the server died (never seen in practice): its program gets a verdict, the
                i = s.pending.popleft()  # queued ones go to a fresh server
                results[i] = _server_died(jobs[i])
                todo.extendleft(reversed(s.pending))
                s.proc.kill()
                s.proc.wait()
                servers[k] = _POOL[_POOL.index(s)] = _Server()
                continue
            for line in lines:
                results[s.pending.popleft()] = Verdict.from_json(json.loads(line))
    return results


def _server_died(job: dict) -> Verdict:
    n = len(job["tests"]) if job["tests"] is not None else 1
    return Verdict("killed", tests_total=n, tests=[TestResult("not_run") for _ in range(n)],
                   metadata={"note": "the sandbox server died while running this program"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.sandbox",
                                     description="Run a Python file (tests as inline asserts) in the sandbox "
                                                 "and print its verdict as one JSON object.")
    parser.add_argument("file")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    parser.add_argument("--memory-mb", type=int, default=512, help="address space above the start (default 512)")
    args = parser.parse_args(argv)
    try:
        program = open(args.file, encoding="utf-8").read()
    except OSError as e:
        parser.exit(2, f"cannot read {args.file}: {e.strerror}\n")
    print(json.dumps(run(program, timeout=args.timeout, memory_mb=args.memory_mb).to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
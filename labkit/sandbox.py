"""Running untrusted, model-written Python: isolation, limits, verdicts, error location, a warm worker pool.

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

How it is fast: each worker is a warm *fork server* (`python -m labkit.sandbox --serve`) that imported the
modules programs use, then forks one child per program (1-2 ms of CPU in all, the server's and the child's)
instead of starting an interpreter (~20 ms); the caller keeps two jobs queued per server.
How it holds (DESIGN §6), layer by layer, each used where the OS allows and reported in `Verdict.metadata`:
- own PID namespace: the server is its pid 1, so a program cannot see or signal anything outside (the caller,
  the server: init ignores SIGKILL from inside) and `kill(-1)` from the server ends every leftover process;
- own network namespace: only a loopback that is down, so no connection to anything;
- per program: a new session, a chroot into an empty private temp dir (on a capped private tmpfs), then a
  drop to an unused uid (no way back out of the chroot, no writes elsewhere, no signals to root's processes,
  no raising of the limits);
- limits: address space = the server's size + `memory_mb` (the caller's size plays no part), CPU seconds,
  file size, process count (cgroup v1 pids controller where present, and RLIMIT_NPROC under the dropped
  uid), an output cap (the server reads stdout/stderr itself and kills at `max_output` bytes), a wall limit
  per phase (SIGALRM inside; the server kills everything when that fails);
- after every program: kill everything the program started, reap it, remove its temp dir.
Without root (e.g. a laptop) the namespaces, chroot and uid drop are skipped; a session, a subreaper and
rlimits remain: weaker, and the verdict metadata says so. Linux only. Inside the chroot a program can import
only what the server preloaded (PRELOAD: the standard library modules generated code uses).
A program that deliberately reads the harness's memory could find the token; the layers above still bound
what it can do. Tests compare with `==`, so an object whose `__eq__` always says True passes them: that is
the tests' business (compare types too), not the sandbox's.
"""
from __future__ import annotations

import argparse
import atexit
import collections
import codeop
import ctypes
import fcntl
import gc
import json
import os
import random
import resource
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field

STATUSES = ("pass", "fail", "runtime_error", "syntax_error", "timeout", "memory", "output_limit", "killed")
GRACE = 0.5          # seconds the server waits past a phase's limit before it kills (SIGALRM came first)
TAIL = 2000          # characters of stdout/stderr kept in a verdict
SCRIPT = "program.py"  # the copy of a program's text in its run dir: its __file__, sys.argv[0], code filename
ISOLATION = ("pid_ns", "net_ns", "private_tmpfs", "chroot", "uid", "pids_cgroup")  # reported per verdict


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
        self.proc = subprocess.Popen([sys.executable, "-m", "labkit.sandbox", "--serve"], stdin=subprocess.PIPE,
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


# ----------------------------------------------------------------------------------------------------------
# Server side: `python -m labkit.sandbox --serve`. Everything below runs in the server or its children.

# Modules a program may import. Inside the chroot nothing else can be loaded, so they are loaded here, once,
# before any fork (which is also what makes a fork cheap: children share these pages).
PRELOAD = ("abc array base64 binascii bisect calendar cmath codecs collections collections.abc contextlib copy "
           "csv ctypes dataclasses datetime decimal difflib enum fractions functools hashlib heapq io itertools "
           "codeop json math numbers operator queue random re socket statistics string struct textwrap threading time "
           "typing unicodedata _strptime").split()

CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWPID = 0x00020000, 0x40000000, 0x20000000
MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE, MNT_DETACH = 2, 4, 1 << 14, 1 << 18, 2
PR_SET_CHILD_SUBREAPER, F_SETPIPE_SZ = 36, 1031
DISK_MB = 256  # size of a server's private tmpfs, shared by the run dirs of its programs
_libc = ctypes.CDLL(None, use_errno=True)


def _warm() -> None:
    for name in PRELOAD:
        __import__(name)
    import hashlib
    # Lazy initialisations that would otherwise read files the chroot hides.
    hashlib.md5(b"").hexdigest(), hashlib.sha256(b"").hexdigest(), time.localtime(), time.strptime("1", "%d")
    for enc in ("utf-16", "utf-32", "latin-1", "ascii", "cp1252", "unicode_escape", "raw_unicode_escape", "idna"):
        "x".encode(enc)


def _private_dir(parent: str) -> str:
    """parent/labkit-sandbox-<our pid>, after removing those of servers that were killed before cleaning up."""
    for name in os.listdir(parent):
        pid = name.removeprefix("labkit-sandbox-")
        if pid.isdigit() and (pid == str(os.getpid()) or not os.path.exists(f"/proc/{pid}")):
            _remove(os.path.join(parent, name))
    path = os.path.join(parent, f"labkit-sandbox-{os.getpid()}")
    os.mkdir(path, 0o711)
    return path


def _remove(path: str) -> None:
    try:
        os.rmdir(path)  # an empty dir or a cgroup (whose control files can't be unlinked)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


def _pids_cgroup() -> str | None:
    """A fresh child of our cgroup-v1 pids cgroup (counts every process and thread a program makes)."""
    try:
        rel = next(line.split(":", 2)[2].strip() for line in open("/proc/self/cgroup")
                   if line.split(":")[1] == "pids")
        return _private_dir("/sys/fs/cgroup/pids" + rel.rstrip("/"))
    except (OSError, StopIteration, IndexError):
        return None


def _launch() -> None:
    """Entry point of a server process: set up namespaces, then serve until stdin closes."""
    _warm()
    # Run dirs live on a tmpfs: creating and removing one costs microseconds there, milliseconds on a disk.
    base = _private_dir("/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir())
    iso = {"pid_ns": False, "net_ns": False, "private_tmpfs": False, "chroot": False, "uid": None,
           "pids_cgroup": _pids_cgroup()}
    if os.geteuid() == 0:
        iso["chroot"], iso["uid"] = True, 100000 + os.getpid()  # a uid no one else uses: NPROC counts only ours
    try:
        if _libc.unshare(CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWNS) == 0:
            iso["pid_ns"] = iso["net_ns"] = True
            # Our own tmpfs for the run dirs, invisible to the host and capped, so programs can't fill a disk.
            iso["private_tmpfs"] = (_libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) == 0 and
                                    _libc.mount(b"tmpfs", base.encode(), b"tmpfs", MS_NOSUID | MS_NODEV,
                                                f"size={DISK_MB}m,mode=711".encode()) == 0)
            pid = os.fork()  # our first child is pid 1 of the new PID namespace: the server
            if pid == 0:
                try:
                    _serve(base, iso)
                except BaseException:
                    traceback.print_exc()
                    os._exit(1)
                os._exit(0)
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 0), os.dup2(devnull, 1)  # only the server holds the protocol pipes
            os.waitpid(pid, 0)  # when pid 1 exits, the kernel has killed everything in its namespace
            _libc.umount2(base.encode(), MNT_DETACH)
        else:
            _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphans come back to us, so we can end them
            _serve(base, iso)
            if iso["pids_cgroup"]:  # leave our cgroup so that it can be removed
                _write(os.path.join(os.path.dirname(iso["pids_cgroup"]), "cgroup.procs"), str(os.getpid()))
    finally:
        _remove(base)
        if iso["pids_cgroup"]:
            _remove(iso["pids_cgroup"])


def _serve(base: str, iso: dict) -> None:
    fin, fout = os.fdopen(os.dup(0), "rb"), os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0), os.dup2(devnull, 1)  # a stray print in the server can't corrupt the protocol
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # as pid 1, no handler means no signal from inside
    signal.signal(signal.SIGALRM, _raise_timeout)  # for the children (the server never sets a timer)
    sys.argv = [_script_path(None, iso)]  # the same for every child under a chroot (else set per child)
    if iso["pids_cgroup"]:  # the server joins once; its children are born inside (a move costs ~0.5 ms)
        _write(os.path.join(iso["pids_cgroup"], "cgroup.procs"), str(os.getpid()))
    # The address-space limit is relative to this size, which every child starts with.
    iso["vm_bytes"] = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    random.seed(0)  # every child starts from this state (see `_fork`): a program's random numbers repeat
    gc.freeze()  # keep the collector from touching (and so copying) the warm pages in every child
    for line in fin:
        verdict = _supervise(json.loads(line), base, iso)
        fout.write(json.dumps(verdict.to_json()).encode() + b"\n")
        fout.flush()


def _supervise(job: dict, base: str, iso: dict) -> Verdict:
    """Fork one child for the job, watch its pipes and clock, then end every process it made."""
    timeout, tests = job["timeout"], job["tests"]
    n_phases = 1 + len(tests or []) + 1  # program, tests, the wait for threads
    rundir = os.path.join(base, secrets.token_hex(8))
    os.mkdir(rundir, 0o700)
    if iso["uid"] is not None:
        os.chown(rundir, iso["uid"], iso["uid"])
    if iso["pids_cgroup"] and iso.get("pids_max") != job["max_procs"]:
        _write(os.path.join(iso["pids_cgroup"], "pids.max"), str(job["max_procs"] + 1))  # + the server
        iso["pids_max"] = job["max_procs"]
    token = secrets.token_hex(16)
    (chan_r, chan_w), (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe(), os.pipe()
    t0 = time.perf_counter()
    pid = _fork()
    if pid == 0:
        try:
            _child(job, token, rundir, iso, chan_w, out_w, err_w, n_phases)
        finally:
            os._exit(70)
    for fd in (chan_w, out_w, err_w):
        os.close(fd)

    results: dict[int, TestResult] = {}
    current, done, reason, exit_info = 0, False, None, {}
    chan_buf, tails, n_out = b"", {out_r: b"", err_r: b""}, 0
    deadline = time.monotonic() + timeout + GRACE
    pidfd = os.pidfd_open(pid)

    def on_channel(data: bytes) -> None:
        nonlocal chan_buf, current, done, deadline
        chan_buf += data
        *lines, chan_buf = chan_buf.split(b"\n")
        for raw in lines:
            tok, _, msg = raw.decode(errors="replace").partition(" ")
            if tok != token:
                continue  # not from the harness: forged or garbage
            kind, *f = msg.split(" ")
            if kind == "start":  # stamped with the child's clock (CLOCK_MONOTONIC is system-wide)
                current, deadline = int(f[0]), float(f[1]) + timeout + GRACE
            elif kind == "end":
                results[int(f[0])] = TestResult(f[1], None if f[2] == "-" else f[2], int(f[3]) or None,
                                                float(f[4]), [int(x) for x in f[5].split(",") if x.isdigit()],
                                                int(f[6]) or None, f[7] == "1")
            elif kind == "done":
                done = True

    # The channel is read only when the deadline passes (a later phase may have moved it) and at the end:
    # waking up for every phase would cost a context switch each, which on busy cores is the real price.
    os.set_blocking(chan_r, False)
    try:
        fcntl.fcntl(chan_r, F_SETPIPE_SZ, 1 << 20)  # room for ~15,000 phase messages
    except OSError:
        pass
    open_fds = {out_r, err_r}
    while True:
        wait = deadline - time.monotonic()
        if wait <= 0:
            try:
                while data := os.read(chan_r, 1 << 16):
                    on_channel(data)
            except BlockingIOError:
                pass
            if deadline - time.monotonic() > 0:
                continue
            reason = "timeout"
            break
        readable, _, _ = select.select([*open_fds, pidfd], [], [], wait)
        if pidfd in readable:
            _, status = os.waitpid(pid, 0)
            exit_info = {"exit_code": os.waitstatus_to_exitcode(status)}
            break
        for fd in readable:
            data = os.read(fd, 1 << 16)
            if not data:
                open_fds.discard(fd)
            else:
                n_out += len(data)
                tails[fd] = (tails[fd] + data)[-4 * TAIL:]
        if n_out > job["max_output"]:
            reason = "output_limit"
            break
    _kill_all(pid, iso)
    for fd in [chan_r, *open_fds]:  # every writer is dead now: read what is left in the pipes
        os.set_blocking(fd, False)  # (and never wait on a writer that somehow survived)
        try:
            while data := os.read(fd, 1 << 16):
                if fd == chan_r:
                    on_channel(data)
                else:
                    n_out += len(data)
                    tails[fd] = (tails[fd] + data)[-4 * TAIL:]
        except BlockingIOError:
            pass
    for fd in (chan_r, out_r, err_r, pidfd):
        os.close(fd)
    try:
        os.unlink(os.path.join(rundir, SCRIPT))  # most programs write nothing else
        os.rmdir(rundir)
    except OSError:
        shutil.rmtree(rundir, ignore_errors=True)

    # Which phase was cut short, and why: our kill (time, output) or the child's own death.
    code = exit_info.get("exit_code")
    if reason is None:
        reason = "timeout" if code == -signal.SIGXCPU else "killed"
    if current not in results:
        results[current] = TestResult(reason, "TimeoutError" if reason == "timeout" else None, None,
                                      round(time.perf_counter() - t0, 6))
    verdict = _verdict(results, tests, done, reason)
    verdict.stdout = tails[out_r].decode(errors="replace")[-TAIL:]
    verdict.stderr = tails[err_r].decode(errors="replace")[-TAIL:]
    verdict.duration = round(time.perf_counter() - t0, 6)
    verdict.metadata = {
        **exit_info, "signal": signal.Signals(-code).name if code is not None and code < 0 else None,
        "output_bytes": n_out, "isolation": {k: bool(iso[k]) if k == "pids_cgroup" else iso[k] for k in ISOLATION},
        "limits": {k: job[k] for k in ("timeout", "memory_mb", "max_procs", "max_output")}}
    return verdict


def _verdict(results: dict[int, TestResult], tests: list[str] | None, done: bool, reason: str) -> Verdict:
    """Per-phase results -> one verdict. Errors outrank assertion failures; the first error decides."""
    program = results.get(0, TestResult(reason))
    n = len(tests) if tests is not None else 1
    per_test = [program] if tests is None else [results.get(i + 1, TestResult("not_run")) for i in range(n)]
    ended = results.get(n + 1 if tests is not None else 1)  # the wait for threads, if it was reached
    phases = [program] + (per_test if tests is not None else []) + ([ended] if ended else [])
    errors = [r for r in phases if r.status not in ("pass", "fail", "not_run")]
    fails = [r for r in phases if r.status == "fail"]
    first = errors[0] if errors else fails[0] if fails else None
    if first is None:
        status = "pass" if done and ended is not None else "killed"  # no token: it never ran to its end
        first = TestResult(status)
    passed = sum(r.status == "pass" for r in per_test)
    return Verdict(first.status, first.error_type, first.error_line, passed, n, per_test,
                   error_trace=first.error_trace, error_offset=first.error_offset, incomplete=first.incomplete)


def _fork() -> int:
    """fork(2) without Python's at-fork work, which has nothing to do here and is half a child's start-up.

    `os.fork` re-initialises thread states and locks, runs the at-fork hooks of threading and random, and so
    touches (copies) ~130 pages. The server is single-threaded by construction (it never starts a thread), so
    no lock can be held by another thread, the calling thread keeps its identity, and there is nothing to
    re-initialise. Every child starts with the server's random state (seeded in `_serve`): reproducible.
    """
    pid = _libc.fork()
    if pid < 0:
        raise OSError(ctypes.get_errno(), "fork")
    return pid


def _kill_all(pid: int, iso: dict) -> None:
    """SIGKILL every process the program made and reap them all, so no stray or zombie survives."""
    if iso["pid_ns"] and os.getpid() == 1:  # guard: kill(-1) outside our own namespace would hit everything
        while True:
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                return
    while True:  # no namespace: the session, the cgroup, and orphans reparented to us (subreaper)
        victims = _children()
        if iso["pids_cgroup"]:
            victims |= {int(p) for p in open(os.path.join(iso["pids_cgroup"], "cgroup.procs")).read().split()
                        if int(p) != os.getpid()}
        for target in [-pid, *victims]:
            try:
                os.kill(target, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass
        if not victims and not _children():
            return


def _children() -> set[int]:
    me, out = str(os.getpid()), set()
    for p in os.listdir("/proc"):
        try:
            if p.isdigit() and open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1] == me:
                out.add(int(p))
        except (OSError, IndexError):
            pass
    return out


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


# ----------------------------------------------------------------------------------------------------------
# The child: lock itself in, then run the phases. Only fds 0-3 stay open; 3 is the private channel.

class _Timeout(BaseException):
    """Raised by SIGALRM at a phase's limit; a BaseException so `except Exception` in a program can't eat it."""


def _child(job, token, rundir, iso, chan_w, out_w, err_w, n_phases) -> None:
    # What all children share (stdin on /dev/null, the SIGALRM handler, sys.argv) the server set up once:
    # each object a child touches is a page it copies. sys.stdout/stderr now write to the new fds 1 and 2.
    os.setsid()
    for fd, target in ((out_w, 1), (err_w, 2), (chan_w, 3)):
        os.dup2(fd, target)
    os.closerange(4, 1 << 16)
    os.chdir(rundir)
    if iso["chroot"]:
        os.chroot(rundir)
        os.chdir("/")
    cpu = int(job["timeout"] * n_phases) + 1
    limits = [(resource.RLIMIT_AS, iso["vm_bytes"] + job["memory_mb"] * 2**20), (resource.RLIMIT_CPU, cpu),
              (resource.RLIMIT_FSIZE, job["memory_mb"] * 2**20), (resource.RLIMIT_CORE, 0)]
    if iso["uid"] is not None:
        limits.append((resource.RLIMIT_NPROC, job["max_procs"]))
    for which, value in limits:
        resource.setrlimit(which, (value, value + (1 if which == resource.RLIMIT_CPU else 0)))
    if iso["uid"] is not None:
        uid = iso["uid"]
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)  # all capabilities go with uid 0: no way back out of the chroot
    path = _script_path(rundir, iso)
    try:  # written by the program's own uid, as a user's script is theirs; no copy is no reason not to run
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, job["program"].encode("utf-8", "surrogatepass"))
        finally:
            os.close(fd)
    except (OSError, UnicodeError):
        pass
    if sys.argv[0] != path:
        sys.argv = [path]
    _harness(job["program"], job["tests"], job["timeout"], token, path)


def _script_path(rundir: str | None, iso: dict) -> str:
    """Where a program's copy of itself lies, as the program sees it: at the root of its chroot, or else in its
    run dir (None: not known yet, outside a chroot)."""
    return "/" + SCRIPT if iso["chroot"] else os.path.join(rundir or "", SCRIPT)


def _raise_timeout(signum, frame):
    raise _Timeout()


def _harness(program, tests, timeout, token, path) -> None:
    # Bind what the harness needs before the program runs: it may patch os, time or sys.
    write, getpid, perf, monotonic, exit_ = os.write, os.getpid, time.perf_counter, time.monotonic, os._exit
    out, err = sys.stdout, sys.stderr
    me = getpid()

    def send(*lines: str) -> None:
        if getpid() == me:  # a fork of the program must not report for it
            write(3, "".join(f"{token} {m}\n" for m in lines).encode())

    import builtins
    import linecache
    import types
    # As `python program.py` would have it: the program's code is compiled under its file's path and runs as
    # the module __main__ (pickle and dataclasses look functions and classes up there), with its __file__.
    # Tracebacks show the text it was given, whatever it does to its file later (mtime None: never re-read).
    linecache.cache[path] = (len(program), None, program.splitlines(True), path)
    host = sys.modules["__main__"]  # this module, run as the server: held, so that nothing of it is freed  # noqa: F841
    main = sys.modules["__main__"] = types.ModuleType("__main__")
    main.__file__, main.__builtins__ = path, builtins
    scope = main.__dict__
    phases = [(path, program)] + [(f"<test {i}>", t) for i, t in enumerate(tests or [])]
    ended = []  # a phase's result travels with the next phase's start: one write (one server wake-up) each
    for i, (name, source) in enumerate(phases):
        if i:  # phase 0 starts with the fork, and the server knows when that was
            send(*ended, f"start {i} {monotonic():.6f}")
        status, etype, trace, dt, col, incomplete = _run_phase(name, source, scope, timeout, perf, path)
        for f in (out, err):
            try:
                f.flush()
            except BaseException:
                pass
        ended = [f"end {i} {status} {etype or '-'} {trace[-1] if trace else 0} {dt:.6f} "
                 f"{','.join(map(str, trace)) or '-'} {col or 0} {int(incomplete)}"]
        if i == 0 and status != "pass":
            break
    else:
        # Like the interpreter at exit: wait for non-daemon threads; one that never ends means no end.
        n, t0 = len(phases), perf()
        waiting = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
        if waiting:
            send(*ended, f"start {n} {monotonic():.6f}")
            ended = []
            for t in waiting:
                t.join(max(0.0, t0 + timeout - perf()))
        alive = any(t.is_alive() for t in waiting)
        ended.append(f"end {n} {'timeout TimeoutError' if alive else 'pass -'} 0 {perf() - t0:.6f} - 0 0")
    send(*ended, "done")
    exit_(0)  # skip atexit hooks and thread shutdown: the verdict is already sent


def _run_phase(name, source, scope, timeout, perf, path):
    """-> (status, error type, program lines of the traceback, seconds, syntax column, incomplete input)."""
    t0 = perf()
    try:
        code = compile(source, name, "exec")
    except (SyntaxError, ValueError) as e:  # ValueError: null bytes in the source
        _print_error(e, None)
        if name != path or not isinstance(e, SyntaxError):
            return "syntax_error", _type_name(e), [], perf() - t0, 0, False
        return "syntax_error", _type_name(e), [e.lineno or 0], perf() - t0, e.offset, _incomplete(source)
    try:
        try:
            signal.setitimer(signal.ITIMER_REAL, timeout)
            exec(code, scope)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        return "pass", None, [], perf() - t0, 0, False
    except _Timeout as e:
        return "timeout", "TimeoutError", _program_lines(e, path), perf() - t0, 0, False
    except BaseException as e:
        status = "fail" if isinstance(e, AssertionError) else "memory" if isinstance(e, MemoryError) \
            else "runtime_error"
        _print_error(e, e.__traceback__.tb_next)  # tb_next: leave the harness's own frame out
        return status, _type_name(e), _program_lines(e, path), perf() - t0, 0, False


def _incomplete(source: str) -> bool:
    """True when the text stops mid-construct (an open bracket or string, a missing block): truncation."""
    try:
        return codeop.compile_command(source, SCRIPT, "exec") is None
    except Exception:
        return False


def _print_error(e: BaseException, tb) -> None:
    try:
        traceback.print_exception(type(e), e, tb)
    except BaseException:  # a hostile __str__ must not break the harness
        pass


def _program_lines(e: BaseException, path: str) -> list[int]:
    """The traceback's frames that lie in the program text, outermost first (the last is the innermost)."""
    return [lineno for frame, lineno in traceback.walk_tb(e.__traceback__) if frame.f_code.co_filename == path]


def _type_name(e: BaseException) -> str:
    name = type(e).__name__
    return name if isinstance(name, str) and name.isidentifier() else "Exception"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.sandbox",
                                     description="Run a Python file (tests as inline asserts) in the sandbox "
                                                 "and print its verdict as one JSON object.")
    parser.add_argument("file", nargs="?")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    parser.add_argument("--memory-mb", type=int, default=512, help="address space above the start (default 512)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _launch()
        return 0
    if not args.file:
        parser.error("FILE is required")
    try:
        program = open(args.file, encoding="utf-8").read()
    except OSError as e:
        parser.exit(2, f"cannot read {args.file}: {e.strerror}\n")
    print(json.dumps(run(program, timeout=args.timeout, memory_mb=args.memory_mb).to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

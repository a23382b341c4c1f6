"""The sandbox's fork server (`python -m labkit.sandbox_server`, started by `labkit.sandbox`): everything here
runs in the server, which forks one child per program (`labkit/sandbox_child.py` is what the child runs).

It speaks JSON lines: a job per line on stdin, its verdict per line on stdout, in order.
How it is fast: the server imports the modules programs use once, then forks one child per program, which
starts warm and shares those pages: far cheaper than starting an interpreter per program (bench/sandbox.py
measures it). The caller keeps two jobs queued per server.
How it holds (DESIGN §6), layer by layer, each used where the OS allows and reported in `Verdict.metadata`:
- own PID namespace: the server is its pid 1, so a program cannot see or signal anything outside (the caller,
  the server: init ignores SIGKILL from inside) and `kill(-1)` from the server ends every leftover process;
- own network namespace: only a loopback that is down, so no connection to anything;
- per program (the child does these itself, `labkit/sandbox_child.py`): a new session, a chroot into an empty
  private temp dir (on a capped private tmpfs), then a drop to an unused uid (no way back out of the chroot,
  no writes elsewhere, no signals to root's processes, no raising of the limits);
- limits: address space = the server's size + `memory_mb` (the caller's size plays no part), CPU seconds,
  file size, process count (cgroup v1 pids controller where present, and RLIMIT_NPROC under the dropped
  uid), an output cap (the server reads stdout/stderr itself and kills at `max_output` bytes), a wall limit
  per phase (SIGALRM inside; the server kills everything when that fails);
- after every program: kill everything the program started, reap it, remove its temp dir.
Without root (e.g. a laptop) the namespaces, chroot and uid drop are skipped; a session, a subreaper and
rlimits remain: weaker, and the verdict metadata says so. Linux only. Inside the chroot a program can import
only what the server preloaded (PRELOAD: the standard library modules generated code uses).
A program that deliberately reads the harness's memory could find the token; the layers above still bound
what it can do.
"""
from __future__ import annotations

import ctypes
import fcntl
import gc
import json
import os
import random
import secrets
import select
import shutil
import signal
import sys
import tempfile
import time
import traceback

from labkit.sandbox import TAIL, TestResult, Verdict
from labkit.sandbox_child import SCRIPT, child, raise_timeout, script_path

GRACE = 0.5  # seconds the server waits past a phase's limit before it kills (SIGALRM came first)
ISOLATION = ("pid_ns", "net_ns", "private_tmpfs", "chroot", "uid", "pids_cgroup")  # reported per verdict

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


def main() -> None:
    """Entry point of a server process: set up namespaces, then serve until stdin closes."""
    _warm()
    # Run dirs live on a tmpfs: each program makes and removes one, which costs far less in memory than on disk.
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
    signal.signal(signal.SIGALRM, raise_timeout)  # for the children (the server never sets a timer)
    sys.argv = [script_path(None, iso)]  # the same for every child under a chroot (else set per child)
    if iso["pids_cgroup"]:  # the server joins once; its children are born inside (no slow move per child)
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
            child(job, token, rundir, iso, chan_w, out_w, err_w, n_phases)
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
    """fork(2) without Python's at-fork work, which has nothing to do here and is much of a child's start-up.

    `os.fork` re-initialises thread states and locks, runs the at-fork hooks of threading and random, and so
    touches (copies) many pages. The server is single-threaded by construction (it never starts a thread), so
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


if __name__ == "__main__":
    main()

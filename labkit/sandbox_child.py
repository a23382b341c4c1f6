"""What a forked child of the sandbox's server runs (`labkit/sandbox_server.py` forks it): it locks itself in,
then its harness runs the program's phases and reports each, with the completion token, to the server.

Only fds 0-3 stay open in the child; 3 is the private channel to the server, whose lines carry the token.
"""
from __future__ import annotations

import codeop
import os
import resource
import signal
import sys
import threading
import time
import traceback

SCRIPT = "program.py"  # the copy of a program's text in its run dir: its __file__, sys.argv[0], code filename


class _Timeout(BaseException):
    """Raised by SIGALRM at a phase's limit; a BaseException so `except Exception` in a program can't eat it."""


def child(job, token, rundir, iso, chan_w, out_w, err_w, n_phases) -> None:
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
    path = script_path(rundir, iso)
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


def script_path(rundir: str | None, iso: dict) -> str:
    """Where a program's copy of itself lies, as the program sees it: at the root of its chroot, or else in its
    run dir (None: not known yet, outside a chroot)."""
    return "/" + SCRIPT if iso["chroot"] else os.path.join(rundir or "", SCRIPT)


def raise_timeout(signum, frame):
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
    host = sys.modules["__main__"]  # the server's module (run as it): held, so nothing of it is freed  # noqa: F841
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


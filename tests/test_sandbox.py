"""The sandbox against real hostile programs (one per threat in DESIGN §6), benign ones, and the verdict fields.

Every hostile program must get a non-pass verdict within timeout + 1 s, and no process may be left behind.
"""
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from labkit import sandbox

T = 1.0  # the time limit the hostile programs get


def _descendants(pid: int) -> dict[int, str]:
    """pid -> "state cmdline" for every process below `pid`, from /proc."""
    parent, info = {}, {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                stat = open(f"/proc/{p}/stat").read()
                fields = stat.rsplit(")", 1)[1].split()
                parent[int(p)] = int(fields[1])
                info[int(p)] = fields[0] + " " + open(f"/proc/{p}/cmdline").read().replace("\0", " ")
            except (OSError, IndexError):
                pass
    out, frontier = {}, [pid]
    while frontier:
        kids = [c for c, pp in parent.items() if pp in frontier]
        out.update({c: info[c] for c in kids})
        frontier = kids
    return out


@pytest.fixture(scope="module", autouse=True)
def no_strays():
    sandbox.run("pass")  # warm the pool so that timings below don't include server start-up
    yield
    # Below each server launcher: its pid-1 server and nothing else (no program, no zombie).
    below = {s.proc.pid: _descendants(s.proc.pid) for s in sandbox._POOL}
    for launcher, procs in below.items():
        assert len(procs) == 1 and all(not v.startswith("Z") and "labkit.sandbox_server" in v for v in procs.values()), procs
    sandbox.shutdown()
    ours = set(below) | {p for procs in below.values() for p in procs}
    deadline = time.time() + 5
    while ours & set(_descendants(os.getpid())) and time.time() < deadline:
        time.sleep(0.05)
    assert not ours & set(_descendants(os.getpid()))


def hostile(program, tests=None, **kw):
    t0 = time.perf_counter()
    v = sandbox.run(program, tests, timeout=T, **kw)
    wall = time.perf_counter() - t0
    assert v.status != "pass", v
    assert wall < T + 1, (wall, v)
    return v


# ---------------------------------------------------------------------------------------------- threats

def test_infinite_loop():
    assert hostile("while True:\n    pass\n").status == "timeout"


def test_infinite_loop_that_ignores_the_alarm():
    v = hostile("import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass\n")
    assert v.status == "timeout"


def test_infinite_loop_in_one_test_only_costs_that_test():
    program = "def f(n):\n    while n == 2:\n        pass\n    return n\n"
    v = hostile(program, ["assert f(1) == 1", "assert f(2) == 2", "assert f(3) == 3"])
    assert v.status == "timeout"
    assert [t.status for t in v.tests] == ["pass", "timeout", "pass"]
    assert v.tests_passed == 2 and v.error_line == 2


def test_fork_bomb():
    v = hostile("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n")
    assert v.status == "timeout"


def test_process_count_is_limited():
    program = ("import os, time\nn = 0\nfor _ in range(200):\n    try:\n        if os.fork() == 0:\n"
               "            time.sleep(100)\n        n += 1\n    except OSError:\n        break\nprint(n)\n")
    v = sandbox.run(program, timeout=T, max_procs=16)
    assert int(v.stdout) < 16, v


def test_memory_bomb():
    assert hostile("x = []\nwhile True:\n    x.append(bytearray(10**7))\n", memory_mb=128).status == "memory"
    assert hostile("s = 'x' * 10**11\n").status == "memory"


def test_huge_output():
    assert hostile("while True:\n    print('x' * 10000)\n").status == "output_limit"


def test_deep_recursion():
    v = hostile("import sys\nsys.setrecursionlimit(10**6)\ndef f(n):\n    return f(n + 1) + 1\nf(0)\n")
    assert v.status in ("runtime_error", "memory", "killed", "timeout")
    assert hostile("def f(n):\n    return f(n + 1)\nf(0)\n").error_type == "RecursionError"


def test_killing_the_parent_or_the_caller():
    servers = [s.proc.pid for s in sandbox._POOL]
    program = (f"import os, signal\nfor pid in (os.getppid(), 1, {os.getpid()}, {os.getppid()}):\n    try:\n"
               f"        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass\nassert False\n")
    assert hostile(program).status == "fail"
    everyone = ("import os, signal\ntry:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError:\n    pass\n"
                "os.killpg(0, signal.SIGKILL)\n")
    assert hostile(everyone).status == "killed"
    assert [s.proc.pid for s in sandbox._POOL] == servers and all(s.proc.poll() is None for s in sandbox._POOL)
    assert sandbox.run("assert 1 + 1 == 2").status == "pass"


def test_writing_outside_its_temp_dir(tmp_path):
    targets = [str(tmp_path / "escaped.txt"), "/tmp/labkit-sandbox-escape.txt", "/root/escaped.txt"]
    program = f"for p in {targets!r}:\n    open(p, 'w').write('pwned')\n"
    v = hostile(program)
    assert v.status == "runtime_error" and v.error_type in ("FileNotFoundError", "PermissionError")
    assert not any(os.path.exists(p) for p in targets)


def test_network_to_a_loopback_listener():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.3)
        port = listener.getsockname()[1]
        program = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=0.5)\ns.sendall(b'hi')\n"
        v = hostile(program)
        assert v.status == "runtime_error" and issubclass(getattr(__builtins__, v.error_type, OSError), OSError), v
        with pytest.raises(socket.timeout):
            listener.accept()


def test_closing_the_std_streams_and_the_channel():
    assert hostile("import os, sys\nsys.stdout = None\nos.closerange(0, 1024)\nassert True\n").status == "killed"


def test_overwriting_the_std_streams():
    v = hostile("import io, os, sys\nsys.stdout = io.StringIO()\n"
                "os.dup2(os.open('junk', os.O_WRONLY | os.O_CREAT), 1)\nprint('PASSED')\nassert 1 == 2\n")
    assert v.status == "fail" and v.error_line == 5


def test_native_crash():
    v = hostile("import ctypes\nctypes.string_at(0)\n")
    assert v.status == "killed" and v.metadata["signal"] == "SIGSEGV"


def test_sys_exit_and_os_exit():
    tests = ["assert f() == 1"]
    assert hostile("import sys\ndef f():\n    return 2\nsys.exit(0)\n", tests).error_type == "SystemExit"
    assert hostile("import os\ndef f():\n    return 2\nos._exit(0)\n", tests).status == "killed"
    assert hostile("import os\ndef f():\n    os._exit(0)\n", tests).status == "killed"


def test_forged_success_output(tmp_path):
    program = ("import os\nprint('{\"status\": \"pass\"}')\nprint('all tests passed')\nfor fd in range(3, 10):\n"
               "    try:\n        os.write(fd, b'done\\n')\n    except OSError:\n        pass\nos._exit(0)\n")
    assert hostile(program).status == "killed"
    path = tmp_path / "forged.py"
    path.write_text(program)
    out = subprocess.run([sys.executable, "-m", "labkit.sandbox", str(path), "--timeout", "1"],
                         capture_output=True, text=True, timeout=30).stdout
    assert len(out.strip().splitlines()) == 1 and json.loads(out)["status"] == "killed"


def test_threads_that_never_end():
    sleeper = "import threading, time\nthreading.Thread(target=time.sleep, args=(1000,)).start()\n"
    assert hostile(sleeper).status == "timeout"
    v = hostile("import threading\ndef spin():\n    while True:\n        pass\nthreading.Thread(target=spin).start()\n"
                "def f():\n    return 1\n", ["assert f() == 1"])
    assert v.status == "timeout" and v.tests_passed == 1


def test_atexit_tricks():
    program = "import atexit, os\natexit.register(os._exit, 0)\natexit.register(print, 'OK')\ndef f():\n    return 2\n"
    assert hostile(program, ["assert f() == 1"]).status == "fail"


# ---------------------------------------------------------------------------------------------- benign

def test_benign_programs_pass():
    programs = [
        "def depth(n):\n    return 0 if n == 0 else 1 + depth(n - 1)\nassert depth(500) == 500\n",
        "x = bytearray(200 * 2**20)\nx[-1] = 1\nassert sum(x[-10:]) == 1\n",
        "import threading\nout = []\nts = [threading.Thread(target=out.append, args=(i,)) for i in range(8)]\n"
        "[t.start() for t in ts]\n[t.join() for t in ts]\nassert sorted(out) == list(range(8))\n",
        "with open('data.txt', 'w') as f:\n    f.write('hello')\nassert open('data.txt').read() == 'hello'\n",
        "import math, collections, itertools, re, hashlib\nassert math.gcd(12, 18) == 6\n"
        "assert hashlib.md5(b'').hexdigest().startswith('d41d8')\nprint('hi')\n",
    ]
    verdicts = sandbox.run_many(programs, timeout=5)
    assert [v.status for v in verdicts] == ["pass"] * len(programs), verdicts
    assert verdicts[-1].stdout == "hi\n"


def test_a_program_runs_like_a_script():
    program = ("import os, sys\n"
               "import __main__\n"
               "print(open(__file__).read(), end='')\n"
               "assert __name__ == '__main__' and __main__.__file__ == __file__\n"
               "assert sys.argv[0] == __file__ and os.path.isabs(__file__)\n"
               "assert os.path.dirname(__file__) == os.getcwd() and os.path.basename(__file__) == 'program.py'\n")
    v = sandbox.run(program)
    assert v.status == "pass" and v.stdout == program, v
    if v.metadata["isolation"]["chroot"]:
        assert sandbox.run("assert __file__ == '/program.py'").status == "pass"
    # A test sees the same module; a program that rewrites or removes its copy is still located by its text.
    program = "import os\ndef f(x):\n    os.remove(__file__)\n    return g(x)\ndef g(x):\n    return x[3]\n"
    v = sandbox.run(program, ["assert __name__ == '__main__' and __file__.endswith('program.py')",
                              "assert f([1]) == 1"])
    assert (v.status, v.error_type, v.error_line, v.error_trace, v.tests_passed) == \
        ("runtime_error", "IndexError", 6, [4, 6], 1), v
    assert 'program.py", line 6, in g\n    return x[3]' in v.stderr, v.stderr
    s = sandbox.run("x = 1\ny = (\n")
    assert (s.status, s.error_line, s.incomplete) == ("syntax_error", 2, True) and 'program.py", line 2' in s.stderr


def test_verdict_fields():
    program = "def f(x):\n    return x + 1\n\ndef g(x):\n    return undefined_name\n"
    v = sandbox.run(program, ["assert f(1) == 2", "assert f(1) == 3", "assert g(1) == 1"])
    assert (v.status, v.error_type, v.error_line, v.tests_passed, v.tests_total) == \
        ("runtime_error", "NameError", 5, 1, 3)
    assert [t.status for t in v.tests] == ["pass", "fail", "runtime_error"]
    assert abs(v.pass_ratio - 1 / 3) < 1e-9 and "NameError" in v.stderr
    assert sandbox.Verdict.from_json(json.loads(json.dumps(v.to_json()))) == v
    s = sandbox.run("def f(x):\n    return x +\n", ["assert f(1) == 2"])
    assert (s.status, s.error_type, s.error_line, s.tests_passed) == ("syntax_error", "SyntaxError", 2, 0)
    assert [t.status for t in s.tests] == ["not_run"]
    inline = sandbox.run("assert 1 == 1\nassert 1 == 2\n")
    assert (inline.status, inline.error_line, inline.tests_total) == ("fail", 2, 1)


def test_run_many_keeps_order_and_isolates_programs():
    programs = [f"import os\nopen('x', 'a').write('{i}')\nassert open('x').read() == '{i}'\nprint({i})\n"
                for i in range(40)]
    verdicts = sandbox.run_many(programs, workers=2)
    assert [v.stdout for v in verdicts] == [f"{i}\n" for i in range(40)]
    assert all(v.status == "pass" for v in verdicts)


def test_isolation_is_recorded():
    iso = sandbox.run("pass").metadata["isolation"]
    assert set(iso) >= {"pid_ns", "net_ns", "chroot", "uid", "pids_cgroup"}
    if os.geteuid() == 0:
        assert iso["chroot"] and iso["uid"]


def test_a_dead_server_gives_a_verdict_and_is_replaced():
    sandbox.run_many(["pass"] * 2, workers=2)
    launcher = sandbox._POOL[0].proc.pid
    server = next(p for p, v in _descendants(launcher).items() if "labkit.sandbox_server" in v)
    programs = ["import time\ntime.sleep(0.5)\n"] + [f"assert {i} == {i}" for i in range(6)]
    threading.Timer(0.2, os.kill, (server, 9)).start()  # dies while it runs the first program
    verdicts = sandbox.run_many(programs, workers=2)
    assert verdicts[0].status == "killed" and "server died" in verdicts[0].metadata["note"]
    assert [v.status for v in verdicts[1:]] == ["pass"] * 6
    assert sandbox._POOL[0].proc.pid != launcher and sandbox.run("pass").status == "pass"


def test_a_hostile_batch_in_parallel():
    programs = ["import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
                "x = 'x' * 10**11\n", "while True:\n    print('y' * 1000)\n",
                "import os\nif os.fork() == 0:\n    os.setsid()\nwhile True:\n    pass\n",
                "assert sum(range(10)) == 45\n"] * 2
    t0 = time.perf_counter()
    verdicts = sandbox.run_many(programs, timeout=T, workers=2)
    assert [v.status for v in verdicts] == ["timeout", "memory", "output_limit", "timeout", "pass"] * 2
    assert time.perf_counter() - t0 < 4 * (T + 1)  # four slow ones per worker, each within its limit


def test_runs_are_reproducible():
    program = "import random\nprint(random.random(), {'a', 'b', 'c'}, hash('x'))\n"
    outs = {v.stdout for v in sandbox.run_many([program] * 4, workers=2)}
    assert len(outs) == 1, outs


def test_each_test_has_its_own_time_limit():
    slow = sandbox.run("import time\ndef f():\n    time.sleep(0.4)\n    return 1\n", ["assert f() == 1"] * 4, timeout=T)
    assert slow.status == "pass" and slow.duration > 1.5  # longer than any one limit, but no test over its own
    stubborn = ("import signal\ndef f(n):\n    if n == 2:\n        signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
                "        while True:\n            pass\n    return n\n")
    v = hostile(stubborn, ["assert f(1) == 1", "assert f(1) == 1", "assert f(2) == 2", "assert f(3) == 3"])
    assert [t.status for t in v.tests] == ["pass", "pass", "timeout", "not_run"]


def test_a_forked_caller_gets_its_own_servers():
    sandbox.run("pass")
    parent_servers = [s.proc.pid for s in sandbox._POOL]
    pid = os.fork()
    if pid == 0:  # the child's verdict travels back as its exit code
        ok = sandbox.run("assert 2 + 2 == 4").status == "pass" and \
            not {s.proc.pid for s in sandbox._POOL} & set(parent_servers)
        sandbox.shutdown()
        os._exit(0 if ok else 1)
    assert os.waitpid(pid, 0)[1] == 0
    assert [s.proc.pid for s in sandbox._POOL] == parent_servers and sandbox.run("pass").status == "pass"

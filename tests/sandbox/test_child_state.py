"""The state every candidate process starts in. The fork template does some set-up once, for speed
(signal dispositions, stdin, warmed-up compiler and traceback code): each candidate must still see a
clean, ordinary process, and nothing of the template's warm-up."""

from plumline.data_schemas import TestSpec
from sandbox_helpers import specs

STATE = """
import signal, sys, os, gc, resource
sigint = signal.getsignal(signal.SIGINT) is signal.default_int_handler
sigs = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGALRM, signal.SIGCHLD)]
sigpipe = signal.getsignal(signal.SIGPIPE)
stdin = sys.stdin.read()
fds = sorted(int(x) for x in os.listdir('/proc/self/fd'))
wakeup = signal.set_wakeup_fd(-1)
cpu = resource.getrlimit(resource.RLIMIT_CPU)[0]
nproc = resource.getrlimit(resource.RLIMIT_NPROC)[0]
asl = resource.getrlimit(resource.RLIMIT_AS)[0]
names = [n for n in globals() if n.startswith('__plum') or n in ('g', 'job', 'ns', 'f')]
"""


def test_candidate_starts_with_default_signals_stdin_fds_and_limits(sb):
    r = sb.run(STATE, specs(
        "assert sigint == True",
        "assert sigs == [signal.SIG_DFL] * 3",
        "assert sigpipe == signal.SIG_IGN",  # as before: a closed stdout raises instead of killing
        "assert stdin == ''",
        "assert fds[:5] == [0, 1, 2, 3, 4]",  # stdin, out, err, report, verdict; nothing of the template's
        "assert wakeup == -1",
        "assert names == []",
    ))
    statuses = {t.test_id: (t.status, t.error_message) for t in r.test_results}
    assert r.outcome == "passed", statuses


def test_candidate_rlimits_follow_the_sandbox_limits(sb):
    lim = sb.limits
    r = sb.run(STATE, specs(f"assert cpu == {lim.cpu_s} and nproc == {lim.max_pids}",
                            f"assert asl == {lim.memory_mb << 20}"))
    assert r.outcome == "passed", r.test_results


def test_random_is_reseeded_in_every_candidate(sb1):
    # the template imports random before forking; each candidate must still get fresh entropy
    code = "import random\nx = random.getrandbits(64)\n"
    seen = set()
    for _ in range(6):
        r = sb1.run(code, specs("assert x == 0"))
        assert r.test_results[0].status == "failed"
        seen.add(r.test_results[0].error_message)
    assert len(seen) == 6, seen


def test_errors_report_the_candidate_not_the_warm_up(sb):
    r = sb.run("def g(x):\n    return x[1]\n\ng(0)\n", specs("assert True"))
    assert r.outcome == "runtime_error" and r.error_type == "TypeError" and r.error_line == 2
    assert "<candidate>" in r.stderr_tail and "<warm>" not in r.stderr_tail
    r = sb.run("def f(x):\n    return x[1]\n", specs("assert f(0) == 1"))
    t = r.test_results[0]
    assert r.outcome == "failed" and t.status == "error" and t.error_type == "TypeError" and t.error_line == 2
    assert "<warm>" not in r.stderr_tail


def test_large_job_crosses_the_pipe_intact(sb):
    # the child reads its job in 64 KiB chunks: a job far larger than one chunk must arrive whole
    big = "x" * 300_000
    code = f"S = {big!r}\ndef f():\n    return len(S)\n"
    tests = [TestSpec(code=f"assert f() == 300000 and {k} == {k}") for k in range(40)]
    r = sb.run(code, tests)
    assert r.outcome == "passed" and r.passed == 40

"""The public API contract: results, ordering, concurrency, limits validation, lifecycle."""

import threading
import time
from pathlib import Path

import pytest
from plumline.data_schemas import Execution, TestSpec
from plumline.sandbox import ProgramResult, Sandbox, SandboxLimits, probe_isolation, run_program
from sandbox_helpers import specs

GOOD = "def f(x):\n    return x * 2\n"


def test_probe_isolation_is_cached_and_full_here():
    rep = probe_isolation()
    assert rep is probe_isolation()
    assert rep.tier and rep.notes
    assert rep.tier.startswith("bwrap" if rep.bwrap else "rlimits")
    assert ("+cgroup" in rep.tier) == bool(rep.cgroup) and ("+seccomp" in rep.tier) == rep.seccomp
    assert rep.full == (rep.tier == "bwrap+cgroup+seccomp")


def test_run_program_result_shape():
    r = run_program(GOOD, [TestSpec(code="assert f(2) == 4", test_id="a"), TestSpec(code="assert f(2) == 5")])
    assert isinstance(r, ProgramResult)
    assert r.outcome == "failed" and r.passed == 1 and r.total == 2 and r.pass_ratio == 0.5
    assert [t.test_id for t in r.test_results] == ["a", "t1"]
    assert r.test_results[1].error_type == "AssertionError" and "got 4" in r.test_results[1].error_message
    assert r.isolation_tier == probe_isolation().tier and r.duration_s > 0
    ex = r.to_execution("s1", "p1", 0)
    assert isinstance(ex, Execution) and ex.coderl_class == 2
    assert Execution.from_dict(ex.to_dict()) == ex


def test_compile_and_runtime_errors(sb):
    r = sb.run("def f(:\n    pass\n", specs("assert f() == 1"))
    assert r.outcome == "compile_error" and r.error_type == "SyntaxError" and r.error_line == 1
    assert r.test_results[0].status == "not_run" and r.coderl_class == 0
    r = sb.run("x = 1\ny = 1 / 0\n", specs("assert x == 1"))
    assert r.outcome == "runtime_error" and r.error_type == "ZeroDivisionError" and r.error_line == 2
    r = sb.run(GOOD, specs("assert g(1) == 2", "assert f(1) == 2"))
    assert r.outcome == "failed" and r.test_results[0].status == "error"
    assert r.test_results[0].error_type == "NameError" and r.test_results[1].status == "passed"
    r = sb.run("def f():\n    return [][1]\n", specs("assert f() == 1"))
    assert r.test_results[0].error_type == "IndexError" and r.test_results[0].error_line == 2
    r = sb.run(GOOD, [])
    assert r.outcome == "failed" and r.total == 0


def test_bad_test_and_bad_input(sb):
    r = sb.run(GOOD, specs("assert (", "assert f(1) == 2"))
    assert r.test_results[0].status == "error" and r.test_results[0].error_type == "TestError"
    assert r.test_results[1].status == "passed"
    with pytest.raises(TypeError):
        sb.run(b"print(1)", [])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="job 1"):
        sb.run_many([(GOOD, []), (GOOD, ["assert True"])])  # type: ignore[list-item]
    r = sb.run("x = '\x00'", specs("assert True"))
    assert r.outcome == "compile_error"
    r = sb.run("x = 1\n" * 10, specs("assert x == 1"))
    assert r.outcome == "passed"


def test_huge_code_is_rejected_cleanly():
    with Sandbox(limits=SandboxLimits(max_code_bytes=1000), workers=1) as sb:
        r = sb.run("x = 1\n" * 1000, specs("assert x == 1"))
    assert r.outcome == "compile_error" and r.error_type == "CodeTooLarge"


def test_limits_validation():
    with pytest.raises(ValueError, match="timeout_s"):
        SandboxLimits(timeout_s=0)
    with pytest.raises(ValueError, match="memory_mb"):
        SandboxLimits(memory_mb=-1)
    with pytest.raises(ValueError):
        Sandbox(workers=0)


def test_run_many_order_and_imap(sb):
    jobs = [(f"def f(x):\n    return x + {k}\n", specs(f"assert f(0) == {k}", "assert f(1) == 1"))
            for k in range(8)]
    rs = sb.run_many(jobs)
    assert [r.passed for r in rs] == [2] + [1] * 7
    seen = sorted(i for i, _ in sb.imap_unordered(jobs))
    assert seen == list(range(8))


def test_threads_calling_run_concurrently(sb):
    out = {}

    def work(k):
        out[k] = sb.run(f"def f():\n    return {k}\n", specs(f"assert f() == {k}")).outcome

    ts = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert out == {k: "passed" for k in range(6)}


def test_construction_is_cheap_and_close_kills_everything():
    t0 = time.monotonic()
    sb = Sandbox(workers=2)
    assert time.monotonic() - t0 < 1.0
    sb.run("import os\nif os.fork() == 0:\n    import time\n    time.sleep(1000)\n", specs("assert True"))
    slots = [s for s in sb._slots if s.proc is not None]
    pids = [s.proc.pid for s in slots]
    cg_dirs = [d for s in slots if s.cg for d in s.cg.dirs.values()]
    assert pids and cg_dirs
    sb.close()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert not any(d.exists() for d in cg_dirs)
    with pytest.raises(RuntimeError):
        sb.run(GOOD, [])
    sb.close()  # idempotent


def test_slot_recovers_after_supervisor_loss(sb1):
    slot = sb1._slots[0]
    sb1.run(GOOD, specs("assert f(1) == 2"))
    slot.kill()  # as if the slot had died
    r = sb1.run(GOOD, specs("assert f(1) == 2"))
    assert r.outcome == "passed"


def test_total_budget_marks_rest_not_run():
    lim = SandboxLimits(timeout_s=1.5, test_timeout_s=1.0)
    with Sandbox(limits=lim, workers=1) as sb:
        code = "import time\ndef f():\n    time.sleep(0.8)\n    return 1\n"
        r = sb.run(code, specs(*["assert f() == 1"] * 4))
    assert r.outcome == "timeout"
    statuses = [t.status for t in r.test_results]
    assert statuses[-1] == "not_run" and "passed" not in statuses[1:]
    assert r.duration_s < 6


def test_stale_cgroups_are_swept():
    from plumline.sandbox.isolation import CGROUP_ROOT, _own_cgroup_v1, sweep_stale_cgroups

    rep = probe_isolation()
    if rep.cgroup != "v1":
        pytest.skip("needs cgroup v1 to fake a stale group")
    dead = 4_194_305  # above the largest possible pid_max: never a live process
    own = _own_cgroup_v1("pids") or "/"
    d = CGROUP_ROOT / "pids" / own.lstrip("/") / f"plumline-{dead}-0-abcdef"
    d.mkdir()
    try:
        assert sweep_stale_cgroups() >= 1
        assert not d.exists()
    finally:
        if d.exists():
            d.rmdir()


def test_a_failed_tail_assert_does_not_leak_into_the_next_test(sb):
    # Regression: the verdict of a test's last assert (never waited for) used to stay in the verdict
    # pipe and be read by the next test's first waited-for assert, failing a correct test.
    code = "def f(x):\n    return x * 2\n"
    tests = specs("assert f(1) == 3", "for i in range(3):\n    assert f(i) == 2 * i", "assert f(2) == 4",
                  "for i in range(3):\n    assert f(i) == 2 * i")
    r = sb.run(code, tests)
    assert [t.status for t in r.test_results] == ["failed", "passed", "passed", "passed"]


def test_a_test_looping_forever_over_passing_asserts_times_out():
    # Past the recorded-checks cap a passing loop is neither a protocol violation nor a pass.
    r = run_program("def f(x):\n    return False\n",
                    specs("while True:\n    assert f([]) is False", "assert f(1) is False"),
                    limits=SandboxLimits(test_timeout_s=2.0))
    assert [t.status for t in r.test_results] == ["timeout", "passed"] and r.outcome == "timeout"


def test_an_infrastructure_failure_is_retried_once_on_a_fresh_slot(monkeypatch):
    from plumline.sandbox import core

    real, calls = core._execute, []

    def flaky(slot, code, specs, limits, tier, *args):  # the slot dies under the first run only
        calls.append(1)
        if len(calls) == 1:
            raise core._SlotFailure("lost the supervisor")
        return real(slot, code, specs, limits, tier, *args)

    monkeypatch.setattr(core, "_execute", flaky)
    with Sandbox(workers=1) as box:
        r = box.run("def f(x):\n    return x + 1\n", specs("assert f(1) == 2"))
    assert r.outcome == "passed" and len(calls) == 2

    calls.clear()

    def always_broken(*args):
        calls.append(1)
        raise core._SlotFailure("always broken")

    monkeypatch.setattr(core, "_execute", always_broken)
    with Sandbox(workers=1) as box:
        r = box.run("def f(x):\n    return x\n", specs("assert f(1) == 1"))
    assert r.outcome == "sandbox_error" and len(calls) == 2  # retried once, then reported


def test_tests_travel_as_bytecode_when_the_sandbox_reads_ours_and_as_source_otherwise(monkeypatch):
    from plumline.sandbox import core
    from plumline.sandbox.verdict import prepare_test

    src = "def check(c):\n    assert c(2) == 4\n    assert c(3) == 9\ncheck(sq)\n"
    compiled = prepare_test(src, True)
    assert compiled.code is not None and compiled.source == "" and compiled.wire_code[0] == "m"
    assert prepare_test(src).code is None and "__plum_check__" in prepare_test(src).wire_code
    code = "def sq(x):\n    return x * x\n"
    wrong = "def sq(x):\n    return x + x\n"
    results = {}
    for reads_ours in (True, False):
        monkeypatch.setattr(core, "_reads_our_bytecode", lambda python, v=reads_ours: v)
        with Sandbox(workers=1) as sb:
            assert sb._compiled_tests is reads_ours
            results[reads_ours] = [(r.outcome, [t.status for t in r.test_results])
                                   for r in sb.run_many([(code, [TestSpec(code=src)]),
                                                         (wrong, [TestSpec(code=src)])])]
    assert results[True] == results[False] == [("passed", ["passed"]), ("failed", ["failed"])]


def test_a_slot_that_fails_to_arm_is_never_used_half_started(monkeypatch):
    from plumline.sandbox import core

    real_send = core._Slot._send
    fail = {"arm": True}

    def send(self, obj):
        if "bpf" in obj and fail["arm"]:
            obj = {**obj, "bpf": "00"}  # a filter the supervisor cannot load: arming fails
        return real_send(self, obj)

    monkeypatch.setattr(core._Slot, "_send", send)
    with Sandbox(workers=1) as sb:
        r = sb.run("def f():\n    return 1\n", specs("assert f() == 1"))
        assert r.outcome == "sandbox_error", r
        assert sb._slots[0].proc is None  # killed, not left running unarmed
        fail["arm"] = False
        r = sb.run("def f():\n    return 1\n", specs("assert f() == 1"))
        assert r.outcome == "passed", r  # a fresh, armed slot

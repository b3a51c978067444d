"""Crash test: SIGKILL `plumline run` at random moments, rerun it, and compare with a run that was
never interrupted.

Each trial starts the same config in a fresh run folder, kills the whole process group (Beam workers,
sandbox slots, the trainer) after a random delay drawn over the uninterrupted run's duration (or at a
chosen stage), reruns the command to completion, and checks:

- every Parquet file of every round equals the uninterrupted run's, row for row;
- no partial file is left (``beam-temp-*``, ``.*.tmp-*``, checkpoint folders);
- ``plumline validate`` finds nothing (ids unique, pairs trace to executions, counts match);
- the time lost: (time until the kill + the rerun) - the uninterrupted run's time.

The policy is the canned OpenAI-compatible server (bench/canned_openai.py, started here), so every
run sees the same completions; with `--train` a tiny random Llama is trained between two rounds.

    python bench/bench_crash.py --train [--kill-at sample,execute,export,train,random] [--limit 6]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
from plumline.data_schemas import comparable_rows
from plumline.pipeline.config import load_config
from plumline.pipeline.round import enabled_stages

ROOT = Path(__file__).resolve().parents[1]
PLUMLINE = [sys.executable, "-m", "plumline.pipeline.cli"]


def write_config(folder: Path, url: str, limit: int, train_model: str | None) -> Path:
    training = ("training: {method: dpo}\nrounds: 2\ndpo: {train: {max_steps: 1}}\n"
                if train_model else "")
    cfg = folder / "crash.yaml"
    cfg.write_text(f"""name: crash
sources: [{{path: bundled:easy, limit: {limit}}}]
policy: {{kind: openai, model: {train_model or 'canned'}, base_url: "{url}", max_retries: 1}}
sampling: {{n: 4, max_tokens: 64, greedy: true, batch_size: 2}}
tests: {{tests_per_problem: 4, given_tests_role: eval, batch_size: 2}}
validation: {{oracle: true, agreement: true, min_kept_tests: 1}}
export: {{jsonl: true}}
beam: {{cpu_workers: 2}}
sandbox: {{workers: 1}}
{training}""")
    return cfg


# A kill point: "random" (a delay drawn over the uninterrupted run's duration) or a stage name (the
# kill comes 0-0.2 s after the stage before it finished, i.e. while this stage runs).


def run(cfg: Path, out: Path, kill: Callable[[float], bool] | None = None) -> tuple[float, bool]:
    """Run the config into ``out``; SIGKILL the process group as soon as ``kill(elapsed)`` says so.
    Returns (seconds, killed)."""
    start = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "console.log"
    with open(log, "ab") as sink:
        proc = subprocess.Popen([*PLUMLINE, "run", str(cfg), "--out", str(out)], cwd=ROOT,
                                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    while proc.poll() is None:
        if kill is not None and kill(time.monotonic() - start):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            time.sleep(0.5)  # let the kernel reap the group
            return time.monotonic() - start, True
        time.sleep(0.1)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"plumline run failed with exit {proc.returncode} ({out}):\n{tail}")
    return time.monotonic() - start, False


def kill_rule(point: str, cfg: Path, run_dir: Path, ref_seconds: float,
              rng: random.Random) -> Callable[[float], bool]:
    if point == "random":
        delay = rng.uniform(0.05, 0.95) * ref_seconds
        return lambda elapsed: elapsed >= delay
    order = [s.value for s in enabled_stages(load_config(cfg))]
    if point not in order[1:]:
        raise SystemExit(f"--kill-at {point}: this config runs {order}; pick a stage after {order[0]}")
    before = order[order.index(point) - 1]
    wait = rng.uniform(0.0, 0.2)  # stages of a small config last a few seconds, Beam's start included
    since: list[float] = []

    def due(elapsed: float) -> bool:
        stages = run_dir / "round-000" / ".stages"
        if (stages / f"{before}.done").exists() and not (stages / f"{point}.done").exists():
            since[:1] = since[:1] or [elapsed]
            return elapsed - since[0] >= wait
        return False

    return due


def tables(run_dir: Path) -> dict[str, object]:
    return {str(p.relative_to(run_dir)): pq.read_table(p)
            for p in sorted(run_dir.glob("round-*/*.parquet"))}


def leftovers(run_dir: Path) -> list[str]:
    found = [*run_dir.rglob("beam-temp-*"), *run_dir.rglob(".*.tmp-*"), *run_dir.rglob("*.parts")]
    return [str(p.relative_to(run_dir)) for p in found]


def stage_in_flight(run_dir: Path) -> str:
    """The first stage of the last round folder without a marker (what the kill interrupted)."""
    rounds = sorted(run_dir.glob("round-*"))
    if not rounds:
        return "before read"
    done = {p.name.removesuffix(".done") for p in (rounds[-1] / ".stages").glob("*.done")}
    for stage in ("read", "tests", "sample", "execute", "export", "train"):
        if stage not in done:
            return f"{rounds[-1].name}/{stage}"
    return f"{rounds[-1].name}/after export"


def _relocated(value: object, old: str, new: str) -> object:
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, list):
        return [_relocated(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _relocated(v, old, new) for k, v in value.items()}
    return value


def compare(reference: Path, candidate: Path) -> list[str]:
    problems = []
    ref, got = tables(reference), tables(candidate)
    if set(ref) != set(got):
        problems.append(f"files differ: {sorted(set(ref) ^ set(got))}")
    for name in sorted(set(ref) & set(got)):
        # a trained model is recorded by its path, which lies in the run folder: compare up to that
        a = comparable_rows(ref[name])
        b = _relocated(comparable_rows(got[name]), str(candidate), str(reference))
        if a != b:
            first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                         min(len(a), len(b)))
            both = first < min(len(a), len(b))
            fields = sorted(k for k in a[first] if a[first][k] != b[first].get(k)) if both else []
            problems.append(f"{name}: {len(a)} vs {len(b)} rows, first difference at row {first}: {fields}")
    problems += [f"left behind: {p}" for p in leftovers(candidate)]
    res = subprocess.run([*PLUMLINE, "validate", str(candidate)], cwd=ROOT, capture_output=True, text=True,
                         check=False)
    if res.returncode != 0:
        problems.append(f"validate: {res.stdout.strip()[-500:]}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kill-at", default="sample,execute,export,train,random",
                    help="comma-separated kill points, one trial each: a stage name (killed while it runs) "
                         "or 'random'; 'train' needs --train")
    ap.add_argument("--limit", type=int, default=6, help="problems (bundled easy set)")
    ap.add_argument("--train", action="store_true", help="two rounds with DPO training in between")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    server = subprocess.Popen([sys.executable, str(ROOT / "bench" / "canned_openai.py")],
                              stdout=subprocess.PIPE, text=True)
    url = server.stdout.readline().strip()
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="plumline-crash-") as tmp:
            tmp = Path(tmp)
            model = None
            if args.train:
                from plumline.llm.assets import build_tiny_llama
                model = str(build_tiny_llama(tmp / "tiny"))
            cfg = write_config(tmp, url, args.limit, model)
            ref_seconds, _ = run(cfg, tmp / "reference")
            print(f"uninterrupted run: {ref_seconds:.1f} s")
            for trial, point in enumerate(args.kill_at.split(",")):
                out = tmp / f"trial-{trial}"
                killed_at, killed = run(cfg, out, kill=kill_rule(point, cfg, out / "crash", ref_seconds, rng))
                where = stage_in_flight(out / "crash") if killed else "finished before the kill"
                rerun_seconds, _ = run(cfg, out)
                problems = compare(tmp / "reference" / "crash", out / "crash")
                lost = killed_at + rerun_seconds - ref_seconds
                results.append({"trial": trial, "kill_at": point, "killed_after_s": round(killed_at, 1),
                                "in_flight": where, "rerun_s": round(rerun_seconds, 1),
                                "lost_s": round(lost, 1), "identical": not problems, "problems": problems})
                verdict = "identical" if not problems else "DIFFERENT: " + "; ".join(problems)
                print(f"trial {trial}: killed after {killed_at:5.1f} s in {where:<22} "
                      f"rerun {rerun_seconds:5.1f} s  lost {lost:5.1f} s  {verdict}")
    finally:
        server.kill()
    if args.json:
        args.json.write_text(json.dumps({"reference_s": ref_seconds, "trials": results}, indent=2))
    return 0 if all(r["identical"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

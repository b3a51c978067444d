"""CPU stages in-process against Beam worker processes: where starting the processes pays off.

A round's CPU stages (read, execute, export) run on Beam's FnApiRunner, either in the calling process
(``direct_running_mode=in_memory``; the sandbox's slots are threads, one per core) or in one worker
process per core (``multi_processing``), which Beam starts anew for every stage. This bench makes one
round with the canned OpenAI-compatible policy (bench/canned_openai.py: known right and wrong programs,
so execution is real), then for each scale copies its samples ``scale`` times (new sample ids) and
reruns read, execute and export with ``beam.cpu_workers=1`` and ``beam.cpu_workers=<cores>`` in
alternation, ``--reps`` times each. It prints each stage's median seconds (from the stage markers)
and the ratio in-process / processes: below 1, in-process is faster.

    python bench/bench_cpu_stages.py [--limit 40] [--n 4] [--scales 1,10] [--reps 2] [--json OUT]

pipeline/stages.py: IN_PROCESS_BELOW_ROWS is set from this bench's figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from plumline.llm.hardware import cpu_info

ROOT = Path(__file__).resolve().parents[1]
PLUMLINE = [sys.executable, "-m", "plumline.pipeline.cli"]


def cpu_line() -> str:
    cpu = cpu_info()
    return f"{cpu.model}, {cpu.cores} cores; flags: {' '.join(cpu.relevant_flags) or '-'}"


def write_config(folder: Path, url: str, limit: int, n: int) -> Path:
    cfg = folder / "cpu.yaml"
    cfg.write_text(f"""name: cpu
sources: [{{path: bundled:easy, limit: {limit}}}]
policy: {{kind: openai, model: canned, base_url: "{url}", max_retries: 1}}
sampling: {{n: {n}, max_tokens: 64, greedy: true, batch_size: 8}}
tests: {{tests_per_problem: 4, given_tests_role: eval, batch_size: 8}}
validation: {{oracle: true, agreement: true, min_kept_tests: 1}}
training: {{method: none}}
""")
    return cfg


def run(cfg: Path, out: Path, *sets: str) -> None:
    args = [*PLUMLINE, "run", str(cfg), "--out", str(out)]
    for s in sets:
        args += ["--set", s]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"plumline run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                         f"{proc.stderr[-3000:]}")


def replicate_samples(round_dir: Path, original: pa.Table, scale: int) -> int:
    """samples.parquet := ``scale`` copies of ``original``, each copy's sample ids made unique."""
    column = original.schema.get_field_index("sample_id")
    ids = original.column("sample_id").to_pylist()
    copies = [original.set_column(column, "sample_id", pa.array([f"{s}-copy{i}" for s in ids]))
              for i in range(scale)]
    table = pa.concat_tables(copies)
    pq.write_table(table, round_dir / "samples.parquet")
    (round_dir / "samples.jsonl").unlink(missing_ok=True)
    return table.num_rows


def stage_seconds(round_dir: Path, stage: str) -> float:
    return float(json.loads((round_dir / ".stages" / f"{stage}.done").read_text())["seconds"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=40, help="problems (bundled:easy)")
    ap.add_argument("--n", type=int, default=4, help="samples per problem (plus a greedy one)")
    ap.add_argument("--scales", default="1,10", help="copies of the samples to execute and export")
    ap.add_argument("--reps", type=int, default=2, help="runs of each mode at each scale")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    print(f"CPU: {cpu_line()}")
    if cores < 2:
        print("one core: worker processes cannot run in parallel here; nothing to compare")
        return 0
    server = subprocess.Popen([sys.executable, str(ROOT / "bench" / "canned_openai.py")],
                              stdout=subprocess.PIPE, text=True)
    work = Path(tempfile.mkdtemp(prefix="bench-cpu-"))
    results = []
    try:
        url = server.stdout.readline().strip()
        cfg = write_config(work, url, args.limit, args.n)
        out = work / "runs"
        run(cfg, out)
        round_dir = out / "cpu" / "round-000"
        modes = {"in-process": 1, "processes": cores}
        print(f"{'rows':>8} {'stage':>8} {'in-process s':>13} {f'{cores} processes s':>14} {'ratio':>6}")

        def measure(rows: int, stages: tuple[str, ...], before=None) -> None:
            times: dict[str, dict[str, list[float]]] = {m: {s: [] for s in stages} for m in modes}
            for _ in range(args.reps):
                for mode, workers in modes.items():
                    if before:
                        before()
                    for stage in stages:
                        (round_dir / ".stages" / f"{stage}.done").unlink(missing_ok=True)
                    run(cfg, out, f"beam.cpu_workers={workers}")
                    for stage in stages:
                        times[mode][stage].append(stage_seconds(round_dir, stage))
            for stage in stages:
                inp, procs = (statistics.median(times[m][stage]) for m in modes)
                results.append({"rows": rows, "stage": stage, "in_process_s": inp, "processes_s": procs,
                                "processes": cores, "ratio": inp / procs})
                print(f"{rows:>8} {stage:>8} {inp:>13.1f} {procs:>14.1f} {inp / procs:>6.2f}")

        # read (the problems): a rerun of read makes the stages after it run again, so it goes first
        measure(args.limit, ("read",))
        original = pq.read_table(round_dir / "samples.parquet")
        for scale in (int(s) for s in args.scales.split(",")):
            rows = replicate_samples(round_dir, original, scale)
            measure(rows, ("execute", "export"))
    finally:
        server.terminate()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_line(), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The demo end to end, timed the way a new user meets it: wall time, console lines, seconds per stage
per round, held-out pass@1 per round, against the issue's targets (10 minutes on a 2-core AVX2 machine,
at most about 60 console lines without -v).

    python bench/bench_demo.py --out /tmp/demo-bench            # this machine as it is
    python bench/bench_demo.py --out /tmp/demo-avx2 --emulate-avx2
    python bench/bench_demo.py --out /tmp/demo-avx2-cold --emulate-avx2 --cold-cache

``--emulate-avx2`` approximates a CPU without AVX-512/bf16 (an AMD Zen 3, say) on an AVX-512 machine:
torch's kernels (``ATEN_CPU_CAPABILITY``), oneDNN and MKL are capped at AVX2, vLLM loads its AVX2 kernel
library (``bench/avx2_probes/sitecustomize.py``), and the engine and trainer run float32, as plumline's
dtype rule chooses on such a CPU. Clock, cache and memory bandwidth stay this machine's: name it as an
emulation beside any figure. Every run starts in a fresh ``--out`` folder (no resumed stages); vLLM's
compile cache and the prepared model are reused, as on a user's second run, unless ``--cold-cache``
(empty vLLM and inductor caches, as on a first run after setup).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from plumline.llm.hardware import cpu_info

TARGET_S = 600  # the target on a 2-core AVX2 machine, after setup
TARGET_LINES = 60
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
FLOAT32_SETS = ("policy.dtype=float32", "dpo.train.bf16=false")
AVX2_PROBES = Path(__file__).resolve().parent / "avx2_probes"  # vLLM's kernel choice, as without AVX-512


def stage_table(run_dir: Path) -> tuple[list[str], list[list[str]]]:
    """Rows: one per round folder, seconds per stage (as the manifests record them) and eval pass@1."""
    rounds = sorted(p for p in run_dir.glob("round-*") if (p / "manifest.json").is_file())
    manifests = [json.loads((p / "manifest.json").read_text()) for p in rounds]
    stages: list[str] = []
    for m in manifests:
        stages += [s for s in (m.get("stages") or {}) if s not in stages]
    header = ["round", *stages, "total", "greedy pass@1", "pass@1"]
    rows = []
    for p, m in zip(rounds, manifests):
        secs = {s: float(v.get("seconds") or 0.0) for s, v in (m.get("stages") or {}).items()}
        ev = m.get("eval") or {}
        rows.append([p.name, *(f"{secs[s]:.0f}" if s in secs else "-" for s in stages),
                     f"{round_seconds(m.get('stages') or {}):.0f}", _pct(ev.get("greedy_pass@1")),
                     _pct(ev.get("pass@1"))])
    return header, rows


def round_seconds(stages: dict[str, dict]) -> float:
    """A round's stage seconds added up, stages that ran beside each other (``ran_beside``: they
    started together) counted once, by the longest of them."""
    total, counted = 0.0, set()
    for name, info in stages.items():
        if name in counted:
            continue
        group = {name, *(info.get("ran_beside") or ())} & set(stages)
        counted |= group
        total += max(float(stages[s].get("seconds") or 0.0) for s in group)
    return total


# A fixed piece of the demo's arithmetic (a float32 GEMM of SmolLM2's MLP shape, one batch of 256 tokens),
# timed before and after the run in a child with the run's environment: a shared host's speed moves
# stage times by 20-40% from one hour to the next, and this says how fast the host was during this run.
HOST_PROBE = """
import time, torch
a, b = torch.randn(256, 576), torch.randn(576, 1536)
for _ in range(20):
    a @ b
n, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < 3.0:
    a @ b
    n += 1
print(2 * 256 * 576 * 1536 * n / (time.perf_counter() - t0) / 1e9)
"""


def host_gflops(env: dict[str, str]) -> float | None:
    """Float32 GEMM GFLOPS of this host now, under ``env`` (the AVX2 caps when emulating)."""
    proc = subprocess.run([sys.executable, "-c", HOST_PROBE], check=False, env=env, capture_output=True,
                          text=True, timeout=120)
    try:
        return float(proc.stdout.strip())
    except ValueError:
        return None


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="Fresh folder for the run (emptied first).")
    ap.add_argument("--emulate-avx2", action="store_true",
                    help="Cap torch/oneDNN/MKL at AVX2, load vLLM's AVX2 kernels, float32.")
    ap.add_argument("--cold-cache", action="store_true",
                    help="Empty vLLM and inductor caches (a first run after setup); the model stays "
                         "prepared.")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="Extra --set for the demo.")
    args = ap.parse_args()
    cpu = cpu_info()
    emulated = ("; EMULATED AVX2 (float32, torch/oneDNN/MKL capped, vLLM's AVX2 kernels)"
                if args.emulate_avx2 else "")
    emulated += "; COLD vLLM/inductor caches" if args.cold_cache else ""
    print(f"CPU: {cpu.model}, {cpu.cores} cores; flags: {' '.join(cpu.relevant_flags)}; "
          f"native bf16: {cpu.native_bf16}{emulated}")
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    env = {**os.environ, **(AVX2_ENV if args.emulate_avx2 else {})}
    if args.emulate_avx2:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(AVX2_PROBES), env.get("PYTHONPATH")) if p)
    if args.cold_cache:
        caches = args.out / "cold-caches"  # inside --out: emptied with it, nothing of the user's touched
        env.update(VLLM_CACHE_ROOT=str(caches / "vllm"), TORCHINDUCTOR_CACHE_DIR=str(caches / "inductor"))
    sets = [*(FLOAT32_SETS if args.emulate_avx2 else ()), *args.sets]
    cmd = [sys.executable, "-m", "plumline.pipeline.cli", "demo", "--out", str(args.out),
           *(x for s in sets for x in ("--set", s))]
    before = host_gflops(env)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    wall = time.perf_counter() - t0
    after = host_gflops(env)
    print(f"host speed (float32 GEMM, the demo's MLP shape): {before or 0:.0f} GFLOPS before the run, "
          f"{after or 0:.0f} after; compare runs at equal host speed")
    console = proc.stdout.splitlines()
    (args.out / "console.txt").write_text(proc.stdout)
    print(f"exit code {proc.returncode}; wall {wall / 60:.1f} min "
          f"({wall / TARGET_S:.2f}x the 10-minute target); "
          f"{len(console)} console lines ({len(console) / TARGET_LINES:.2f}x the 60-line target); console in "
          f"{args.out / 'console.txt'}")
    header, rows = stage_table(args.out / "demo")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(c).rjust(w) for c, w in zip(r, widths)))
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()

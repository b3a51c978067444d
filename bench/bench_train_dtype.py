"""bf16 mixed precision vs float32 when training on this CPU: seconds per DPO optimizer step.

The trainers turn bf16 on where the hardware runs it fast (AMX, ``amx_bf16``; a CUDA GPU that supports
it) and off elsewhere (on AVX2-only CPUs bf16 is emulated and several times slower; with avx512_bf16
alone float32 measured faster). Run it under ``LD_PRELOAD=<tcmalloc>`` to time what the pipeline's
trainer gets (it preloads tcmalloc).
This measures whether that rule is right on the machine at hand: the same DPO steps on the same pairs,
bf16 on and off, alternated ``--repeats`` times so load drifts hit both, and prints the ratio.

    python bench/bench_train_dtype.py runs/demo/round-000/dpo.parquet --steps 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from plumline.llm.hardware import cpu_info
from plumline.trainers.dpo import DpoTrainingConfig, train_dpo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="A dpo.parquet (e.g. a demo round's).")
    ap.add_argument("--model", default=None, help="Policy folder (default: the bundled SmolLM2).")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    if args.model is None:
        from plumline.llm.assets import prepare_smollm2
        args.model = str(prepare_smollm2())
    cpu = cpu_info()
    print(f"CPU: {cpu.model}; native bf16: {cpu.native_bf16}; flags: {' '.join(cpu.relevant_flags)}")
    per_step: dict[str, list[float]] = {"float32": [], "bf16": []}
    for _ in range(args.repeats):
        for name, bf16 in (("float32", False), ("bf16", True)):
            cfg = DpoTrainingConfig(max_steps=args.steps, per_device_train_batch_size=args.batch,
                                    gradient_accumulation_steps=1, bf16=bf16, save=False)
            with tempfile.TemporaryDirectory() as out:
                report = train_dpo([args.data], args.model, Path(out) / "m", cfg)
            per_step[name].append(report.runtime_s / max(1, report.steps))
            print(f"{name:8s} {per_step[name][-1]:7.1f} s/step")
    f32, b16 = statistics.median(per_step["float32"]), statistics.median(per_step["bf16"])
    print(f"median s/step: float32 {f32:.1f}, bf16 {b16:.1f}; bf16 / float32 = {b16 / f32:.2f} "
          f"({'bf16 faster' if b16 < f32 else 'float32 faster'})")


if __name__ == "__main__":
    main()

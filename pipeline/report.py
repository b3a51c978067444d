"""``report.html``: one self-contained page over every round of a run (``plumline report RUN_DIR``;
the round loop rewrites it after each round).

Everything is read back from the run folder: each round's ``manifest.json``, its Parquet files (as
records, by attribute: column names live in ``plumline.data_schemas``) and the run's ``rounds.json``.
The plots are plotly figures with plotly's JavaScript inlined once, so the page opens offline: no
external script, stylesheet, font or image (``tests/pipeline/test_report_browser.py`` renders it in
headless Chromium with every host unresolvable and checks each plot drew).
"""

from __future__ import annotations

import html
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from plumline.data_schemas import Execution, PairingStats, Record, Sample, Stage, TestCase, from_table
from plumline.data_schemas.records import PrmRow
from plumline.pipeline.artifacts import artifact_path
from plumline.pipeline.evaluation import ROUNDS_JSON
from plumline.transforms.logic.evaluation import GREEDY_KEY

log = logging.getLogger(__name__)

REPORT_NAME = "report.html"
PLOT_CLASS = "plumline-plot"  # every figure's outer element carries it (the browser test looks for it)


@dataclass
class RoundData:
    """What the report needs of one round folder."""

    round: int
    manifest: dict[str, Any]
    pass_ratios: list[float] = field(default_factory=list)
    outcomes: Counter = field(default_factory=Counter)
    coderl_classes: Counter = field(default_factory=Counter)
    tests: Counter = field(default_factory=Counter)  # (origin, "kept" or the drop reason) -> count
    pairs_per_problem: list[int] = field(default_factory=list)
    completion_tokens: int = 0
    prm_rows: int = 0  # rows of prm.parquet (0: the round labelled nothing)
    first_bad_positions: list[float] = field(default_factory=list)  # of the searched rows, in (0, 1]

    @property
    def label(self) -> str:
        return f"round {self.round}" + (" (eval only)" if self.manifest.get("eval_only") else "")

    @property
    def stage_seconds(self) -> dict[str, float]:
        stages = self.manifest.get("stages") or {}
        return {name: float(info.get("seconds") or 0.0) for name, info in stages.items()}

    @property
    def prm(self) -> dict[str, Any]:
        """The manifest's ``prm`` section (labelling counts and cost; empty when the stage was off)."""
        return self.manifest.get("prm") or {}

    def tokens_per_second(self) -> float | None:
        seconds = self.stage_seconds.get(Stage.SAMPLE.value)
        if not seconds or not self.completion_tokens:
            return None
        return self.completion_tokens / seconds


def _records(path: Path, cls: type[Record]) -> list[Any]:
    if not path.exists():
        return []
    return from_table(pq.read_table(path), cls)


def read_round(folder: Path) -> RoundData | None:
    """A round folder's data, or None when it has no manifest yet (a round still running)."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    data = RoundData(round=int(manifest.get("round", folder.name.split("-")[-1])), manifest=manifest)
    executions: list[Execution] = _records(artifact_path(folder, "executions"), Execution)
    data.pass_ratios = [e.pass_ratio for e in executions]
    data.outcomes = Counter(e.outcome for e in executions)
    data.coderl_classes = Counter(e.coderl_class for e in executions)
    tests: list[TestCase] = _records(artifact_path(folder, "tests"), TestCase)
    data.tests = Counter((t.origin, "kept" if t.kept else (t.drop_reason or "unknown")) for t in tests)
    stats: list[PairingStats] = _records(artifact_path(folder, "pair_stats"), PairingStats)
    data.pairs_per_problem = [s.pairs for s in stats]
    samples: list[Sample] = _records(artifact_path(folder, "samples"), Sample)
    data.completion_tokens = sum(s.completion_tokens for s in samples)
    prm: list[PrmRow] = _records(artifact_path(folder, "prm"), PrmRow)
    data.prm_rows = len(prm)
    data.first_bad_positions = [first_bad_position(r.first_bad_step, len(r.labels)) for r in prm
                                if r.first_bad_step is not None]
    return data


def first_bad_position(first_bad_step: int, steps: int) -> float:
    """Where a program first goes wrong, as the share of its steps up to and including the first bad
    one: 1.0 when only the last step is bad, 1/steps when the first already is (the manifest's
    ``prm.mean_first_bad_fraction`` averages the same quantity)."""
    return (first_bad_step + 1) / steps


def read_run(run_dir: Path) -> tuple[list[RoundData], dict[str, Any] | None]:
    """Every finished round (by number) and ``rounds.json`` when present."""
    rounds = [d for d in (read_round(p) for p in sorted(Path(run_dir).glob("round-[0-9][0-9][0-9]"))
                          if p.is_dir()) if d is not None]
    try:
        rounds_json = json.loads((Path(run_dir) / ROUNDS_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        rounds_json = None
    return sorted(rounds, key=lambda d: d.round), rounds_json


# --- figures --------------------------------------------------------------------------------------

def _figure(title: str, xaxis: str, yaxis: str, **layout: Any):
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.update_layout(title=title, xaxis_title=xaxis, yaxis_title=yaxis, template="plotly_white",
                      height=380, margin={"l": 60, "r": 20, "t": 50, "b": 60},
                      font={"family": "sans-serif"}, **layout)
    return fig


def fig_pass_ratio(rounds: list[RoundData]):
    import plotly.graph_objects as go

    fig = _figure("Pass-ratio distribution of sampled programs (kept tests)", "pass ratio", "executions",
                  barmode="group")
    for d in rounds:
        if d.pass_ratios:
            fig.add_trace(go.Bar(x=RATIO_BINS, y=ratio_counts(d.pass_ratios), name=d.label))
    return fig


# Pass ratios in tenths, and "all passed" on its own: the bar the PLUM rule's chosen programs come from.
RATIO_BINS = [f"{i / 10:.1f}-{(i + 1) / 10:.1f}" for i in range(10)] + ["1 (all)"]


def ratio_counts(ratios: list[float]) -> list[int]:
    """Counts per ``RATIO_BINS``: [0, 0.1), ..., [0.9, 1), then exactly 1."""
    counts = [0] * len(RATIO_BINS)
    for r in ratios:
        counts[10 if r >= 1.0 else min(9, max(0, int(r * 10)))] += 1
    return counts


# First-bad positions in tenths of the program, right-closed: (0, 10%], ..., (90%, 100%].
POSITION_BINS = [f"{i * 10}-{(i + 1) * 10}%" for i in range(10)]


def position_counts(positions: list[float]) -> list[int]:
    """Counts per ``POSITION_BINS`` of positions in (0, 1] (a bug on the last line of a 10-line
    program, 1.0, is in the last bin; one on its third line, 0.3, in the third)."""
    counts = [0] * len(POSITION_BINS)
    for p in positions:
        counts[min(9, max(0, math.ceil(round(p * 10, 9)) - 1))] += 1
    return counts


def fig_prm_first_bad(rounds: list[RoundData]):
    import plotly.graph_objects as go

    fig = _figure("PRM labels: where the first bad step sits (share of the program's steps up to it)",
                  "first bad step / steps", "labelled programs", barmode="group")
    for d in rounds:
        if d.first_bad_positions:
            fig.add_trace(go.Bar(x=POSITION_BINS, y=position_counts(d.first_bad_positions), name=d.label))
    return fig


def prm_cost_rows(rounds: list[RoundData]) -> list[list[Any]]:
    """One row per round that labelled programs, from its manifest's ``prm`` section (``PRM_COST``)."""
    rows = []
    for d in rounds:
        if not d.prm_rows:
            continue
        p = d.prm
        positions = d.first_bad_positions
        rows.append([d.label, p.get("programs"), p.get("rows", d.prm_rows), p.get("not_labelled"),
                     p.get("probes"), p.get("completions"), p.get("executions"),
                     _seconds(p.get("seconds_per_program")), _seconds(p.get("labelling_seconds")),
                     sum(positions) / len(positions) if positions else None])  # a share: shown in %
    return rows


def _seconds(value: Any) -> str | None:
    return None if value is None else f"{float(value):.2f}"  # not a share: _fmt shows floats <= 1 in %


PRM_COST = ["round", "programs", "labelled", "not labelled", "probes", "completions", "executions",
            "seconds / program", "labelling seconds", "mean first-bad position"]


_OUTCOME_COLORS = {"passed": "#2ca02c", "failed": "#ff7f0e", "runtime_error": "#d62728",
                   "compile_error": "#9467bd", "timeout": "#8c564b", "memory_limit": "#e377c2",
                   "output_limit": "#7f7f7f", "sandbox_error": "#17becf"}


def fig_outcomes(rounds: list[RoundData]):
    import plotly.graph_objects as go

    fig = _figure("Execution outcomes by class", "round", "executions", barmode="stack")
    labels = [d.label for d in rounds]
    for outcome in sorted({o for d in rounds for o in d.outcomes}, key=lambda o: (o != "passed", o)):
        fig.add_trace(go.Bar(x=labels, y=[d.outcomes.get(outcome, 0) for d in rounds], name=outcome,
                             marker_color=_OUTCOME_COLORS.get(outcome)))
    return fig


def fig_tests(rounds: list[RoundData]):
    import plotly.graph_objects as go

    fig = _figure("Tests written, kept and dropped (by reason), by origin", "round / origin", "tests",
                  barmode="stack")
    keys = sorted({(d.round, origin) for d in rounds for origin, _ in d.tests})
    x = [f"r{r} {origin}" for r, origin in keys]
    by_round = {d.round: d for d in rounds}
    statuses = sorted({s for d in rounds for _, s in d.tests}, key=lambda s: (s != "kept", s))
    for status in statuses:
        name = status if status == "kept" else f"dropped: {status}"
        fig.add_trace(go.Bar(x=x, y=[by_round[r].tests.get((origin, status), 0) for r, origin in keys],
                             name=name, marker_color="#2ca02c" if status == "kept" else None))
    return fig


def fig_pairs(rounds: list[RoundData]):
    import plotly.graph_objects as go

    fig = _figure("DPO pairs per problem", "pairs", "problems", barmode="group")
    for d in rounds:
        if d.pairs_per_problem:
            counts = Counter(d.pairs_per_problem)
            xs = sorted(counts)
            fig.add_trace(go.Bar(x=xs, y=[counts[x] for x in xs], name=d.label))
    fig.update_xaxes(dtick=1)
    return fig


def eval_rows(rounds: list[RoundData], rounds_json: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per round with its eval scores: ``rounds.json`` when present, else the manifests."""
    if rounds_json and rounds_json.get("rounds"):
        return [r for r in rounds_json["rounds"] if any(k.startswith("pass@") or k == GREEDY_KEY for k in r)]
    rows = []
    for d in rounds:
        ev = d.manifest.get("eval") or {}
        scores = {k: v for k, v in ev.items() if k.startswith("pass@") or k == GREEDY_KEY}
        if scores:
            rows.append({"round": d.round, **scores})
    return rows


def fig_eval(rows: list[dict[str, Any]]):
    import plotly.graph_objects as go

    fig = _figure("Held-out evaluation across rounds", "round (the policy it sampled from)", "score",
                  yaxis_range=[0, 1.05])
    keys = sorted({k for r in rows for k in r if k.startswith("pass@") or k == GREEDY_KEY},
                  key=lambda k: (k == GREEDY_KEY, len(k), k))
    for key in keys:
        pts = [(r["round"], r[key]) for r in rows if r.get(key) is not None]
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], name=key,
                                 mode="lines+markers"))
    fig.update_xaxes(dtick=1)
    return fig


def fig_stage_time(rounds: list[RoundData]):
    import plotly.graph_objects as go

    fig = _figure("Time per stage", "round", "seconds", barmode="stack")
    labels = [d.label for d in rounds]
    order = [s.value for s in Stage]
    for stage in sorted({s for d in rounds for s in d.stage_seconds}, key=lambda s: (
            order.index(s) if s in order else len(order), s)):
        fig.add_trace(go.Bar(x=labels, y=[d.stage_seconds.get(stage, 0.0) for d in rounds], name=stage))
    return fig


def fig_tokens(rounds: list[RoundData]):
    import plotly.graph_objects as go

    fig = _figure("Sampling throughput: completion tokens per second of the sample stage", "round",
                  "tokens / s")
    pts = [(d.label, d.tokens_per_second()) for d in rounds if d.tokens_per_second() is not None]
    fig.add_trace(go.Bar(x=[p[0] for p in pts], y=[round(p[1], 1) for p in pts], name="tokens/s",
                         text=[f"{p[1]:.1f}" for p in pts], textposition="auto"))
    return fig


# --- the page -------------------------------------------------------------------------------------

def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1%}" if 0 <= value <= 1 else f"{value:.1f}"
    return str(value)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _summary_table(rounds: list[RoundData]) -> str:
    rows = []
    for d in rounds:
        m = d.manifest
        ex, tests, pol = m.get("executions") or {}, m.get("tests") or {}, m.get("policy") or {}
        counts = m.get("counts") or {}
        tps = d.tokens_per_second()
        rows.append([d.label, pol.get("model"), counts.get("problems"),
                     (m.get("samples") or {}).get("total"), ex.get("pass_rate"),
                     f"{tests.get('kept', '-')}/{tests.get('total', '-')}", counts.get("dpo"),
                     (m.get("kto") or {}).get("rows"), (m.get("critic") or {}).get("rows"),
                     (m.get("errors") or {}).get("total"), None if tps is None else round(tps, 1),
                     m.get("config_hash")])
    return _table(["round", "policy", "problems", "samples", "pass rate", "tests kept", "dpo pairs",
                   "kto rows", "critic rows", "errors", "tokens/s", "config hash"], rows)


_CSS = """
body { font-family: sans-serif; margin: 24px auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0; } .sub { color: #666; margin-top: 4px; }
table { border-collapse: collapse; margin: 12px 0 24px; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
.plumline-plot { border: 1px solid #eee; margin: 16px 0; }
.note { color: #666; font-style: italic; }
"""


def build_report(run_dir: Path) -> tuple[str, list[str]]:
    """The page's HTML and the ids of its plots (in page order)."""
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    run_dir = Path(run_dir)
    rounds, rounds_json = read_run(run_dir)
    evals = eval_rows(rounds, rounds_json)
    figures: list[tuple[str, str, Any]] = [
        ("pass-ratio", "Pass ratios", fig_pass_ratio(rounds)),
        ("outcomes", "Outcomes", fig_outcomes(rounds)),
        ("tests", "Tests", fig_tests(rounds)),
        ("pairs", "Pairs per problem", fig_pairs(rounds)),
        # the PRM panel only for a run where some round labelled programs (the prm stage)
        *([("prm-first-bad", "Process supervision (PRM labels)", fig_prm_first_bad(rounds))]
          if any(d.prm_rows for d in rounds) else []),
        ("eval", "Evaluation", fig_eval(evals)),
        ("stage-time", "Time per stage", fig_stage_time(rounds)),
        ("tokens", "Tokens per second", fig_tokens(rounds)),
    ]
    notes = {
        "eval": None if evals else "No held-out evaluation in this run (the config has no eval sources).",
        "tokens": None if any(d.tokens_per_second() for d in rounds) else "No sampling stage timed yet.",
    }
    tables = {"prm-first-bad": "<p>Labelling cost per round (the manifest's <code>prm</code> section): "
                               "programs handed to labelling, rows written, probes, continuations asked "
                               "for and executed.</p>" + _table(PRM_COST, prm_cost_rows(rounds))}
    name = (rounds_json or {}).get("run") or (rounds[0].manifest.get("run") if rounds else run_dir.name)
    parts = [f"<h1>plumline run: {html.escape(str(name))}</h1>",
             f"<p class='sub'>{len(rounds)} round(s) in {html.escape(str(run_dir))}</p>",
             "<h2>Rounds</h2>",
             _summary_table(rounds) if rounds else "<p class='note'>No finished round.</p>"]
    if evals:
        keys = sorted({k for r in evals for k in r if k.startswith("pass@") or k == GREEDY_KEY})
        parts += ["<h2>Evaluation scores</h2>",
                  _table(["round", *keys], [[r["round"], *(r.get(k) for k in keys)] for r in evals])]
    ids = []
    for plot_id, heading, fig in figures:
        div_id = f"plot-{plot_id}"
        ids.append(div_id)
        note = notes.get(plot_id)
        parts.append(f"<h2>{html.escape(heading)}</h2>" + (f"<p class='note'>{html.escape(note)}</p>" if note
                                                            else "") + tables.get(plot_id, ""))
        inner = pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id,
                            config={"displaylogo": False, "responsive": True})
        parts.append(f"<div class='{PLOT_CLASS}' data-plot='{div_id}'>{inner}</div>")
    page = ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>plumline report: {html.escape(str(name))}</title><style>{_CSS}</style>"
            f"<script type='text/javascript'>{get_plotlyjs()}</script></head>"
            f"<body>{''.join(parts)}</body></html>\n")
    return page, ids


def write_report(run_dir: Path) -> Path:
    """Write ``RUN_DIR/report.html`` (atomically) and return its path."""
    from plumline.pipeline.layout import atomic_write_text

    page, _ = build_report(run_dir)
    path = Path(run_dir) / REPORT_NAME
    atomic_write_text(path, page)
    return path


def try_write_report(run_dir: Path) -> Path | None:
    """``write_report`` for the round loop: a report that cannot be drawn (plotly missing, an
    unreadable file) is a logged warning, never a failed run."""
    try:
        return write_report(run_dir)
    except Exception as exc:  # noqa: BLE001 - the data is what matters; the report can be rebuilt
        log.warning("report.html not written (%s: %s); rebuild it with `plumline report %s`",
                    type(exc).__name__, exc, run_dir)
        return None

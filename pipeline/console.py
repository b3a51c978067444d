"""What a run shows a person, and where everything else goes.

Quiet by default: every log record (plumline's, vLLM's, transformers', Beam's, torch's) goes to
``runs/<name>/plumline.log``, and so does whatever any process writes to its stdout or stderr (vLLM's
engine process, Beam's worker processes, C libraries): the run's file descriptors 1 and 2 point at
the log file while the stages run, and the console writes to a copy of the real stderr. The console
shows plumline's warnings, one progress bar per stage (items done of total, rate, ETA; tokens/s
while generating, executions/s while executing), one line per finished stage, then the summary.
``-v`` shows everything on the console (and still writes the log file).

Live progress crosses processes through ``plumline.llm.progress`` (a folder per stage that every
process writes its counters into and this process polls).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import pyarrow.parquet as pq
from plumline.data_schemas import Stage
from plumline.llm import progress as live
from plumline.pipeline.artifacts import ARTIFACTS
from plumline.pipeline.layout import RoundLayout
from rich import box
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

if TYPE_CHECKING:
    from plumline.pipeline.config import RunConfig
    from plumline.pipeline.layout import StageMarker

LOG_NAME = "plumline.log"
LIBRARY_LOGGERS = ("vllm", "transformers", "apache_beam", "torch", "datasets", "trl", "accelerate",
                   "httpx", "urllib3", "filelock", "huggingface_hub")
POLL_S = 0.5


class _PlumlineWarnings(logging.Filter):
    """The quiet console: plumline's own warnings and errors only (the rest is in the log file)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return (record.levelno >= logging.WARNING and getattr(record, "console", True)
                and record.name.split(".")[0] in ("plumline", "__main__"))


FILE_ONLY = {"console": False}  # logging extra= for records meant for the log file only (tracebacks)


_SELF_CONFIGURED = ("vllm",)


def setup_logging(console: Console, verbose: bool, log_file: Path | None = None) -> None:
    """Console handler (everything with -v, plumline warnings otherwise) and the run's log file."""
    handler = RichHandler(console=console, show_path=False, rich_tracebacks=True, show_time=verbose)
    if not verbose:
        handler.addFilter(_PlumlineWarnings())
    handlers: list[logging.Handler] = [handler]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"))
        handlers.append(file_handler)
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True)
    # vLLM gives its logger a stdout handler of its own and stops it propagating when it is imported;
    # in this process its records go through the handlers above like every other library's.
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and name.split(".")[0] in _SELF_CONFIGURED:
            # its dictConfig also disabled the loggers that existed then
            logger.handlers.clear()
            logger.propagate = True
            logger.disabled = False
            logger.setLevel(logging.NOTSET)
    logging.getLogger("plumline").setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.captureWarnings(True)
    if not verbose:
        # Beam relays every local worker's start-up chatter through this one; keep the log readable.
        logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(logging.WARNING)
        logging.getLogger("apache_beam.typehints").setLevel(logging.WARNING)  # one line per type hint
    # Engine processes read these when they start (vLLM configures its own loggers onto stdout, which
    # the quiet mode points at the log file). No progress bars of libraries in the log file.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "DEBUG" if verbose else "INFO")
    if not verbose:
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@contextlib.contextmanager
def output_to_log(console: Console, log_file: Path) -> Iterator[None]:
    """File descriptors 1 and 2 (this process and every process it starts) write to ``log_file``;
    ``console`` keeps writing to the real stderr. Restored on exit."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        saved = (os.dup(1), os.dup(2))
    except OSError:  # no real descriptors (an embedding host): nothing to redirect
        yield
        return
    real_err = os.fdopen(os.dup(saved[1]), "w", encoding="utf-8", errors="replace", buffering=1)
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    # Python-level streams too, in case they are not descriptors 1 and 2 (a test runner's capture).
    py_streams = sys.stdout, sys.stderr
    to_log = open(log_file, "a", encoding="utf-8", errors="replace", buffering=1)  # noqa: SIM115
    sys.stdout = sys.stderr = to_log
    console.file = real_err
    try:
        yield
    finally:
        to_log.flush()  # left open: loggers that captured it (vLLM's) keep writing into the log
        sys.stdout, sys.stderr = py_streams
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        console.file = None  # back to sys.stderr
        real_err.close()


# --- progress ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Measure:
    """What a stage's bar counts: a live-progress key, its unit, where its total comes from (the files
    of earlier stages, ``stage_total``, or a live key the stage reports once it knows), and further
    counters shown beside it as (live key, unit, rate unit)."""

    key: str
    unit: str
    rate_unit: str
    generates: bool = False  # a generation stage: rates count from the first engine call, tokens shown
    total_key: str | None = None
    extras: tuple[tuple[str, str, str], ...] = ()
    rate_key: str | None = None  # the counter the bar's rate follows (None: ``key``; tokens if generating)
    start_key: str | None = None  # its first report starts the rates' clock (None: ``key``, or the
    #                               first generate call, after the engine started, when generating)

    @property
    def clock_key(self) -> str:
        return self.start_key or ("completions_total" if self.generates else self.key)


MEASURES = {
    Stage.TESTS: Measure("completions", "replies", "replies", generates=True, total_key="completions_total"),
    Stage.SAMPLE: Measure("completions", "samples", "samples", generates=True, total_key="completions_total"),
    Stage.EXECUTE: Measure("executions", "executions", "exec"),
    # total: from the engine
    Stage.EVAL: Measure("completions", "samples", "samples", generates=True, total_key="completions_total"),
    # programs labelled of those selected (the stage reports the total once it has planned its batches);
    # each program costs continuations (prm.k per probe) and their executions: shown beside it
    Stage.PRM: Measure(live.PRM_PROGRAMS, "programs", "programs", total_key=live.PRM_PROGRAMS_TOTAL,
                       extras=((live.PRM_COMPLETIONS, "completions", "completions"),
                               ("executions", "executions", "exec"), ("tokens", "tokens", "tok")),
                       rate_key=live.PRM_COMPLETIONS,  # programs finish a batch at a time
                       start_key=live.PRM_BATCHES),  # a batch began labelling (its engine is up)
}


def _same_count(artifact: str, rows: int, shown: tuple[str, int] | None) -> bool:
    """An artifact's row count that the live measure already printed (``200 samples`` twice on a line:
    ``samples`` after the sample stage, ``eval_samples`` after eval)."""
    if shown is None:
        return False
    unit, count = shown
    return rows == count and (artifact == unit or artifact.endswith("_" + unit))


def _rows(path: Path) -> int | None:
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception:  # noqa: BLE001 - no file yet: no total
        return None


def stage_total(cfg: RunConfig, stage: Stage, round_dir: Path) -> int | None:
    """Items the stage will count, from the files earlier stages wrote (None: unknown)."""
    if stage == Stage.TESTS:
        problems = _rows(round_dir / "problems.parquet")
        return None if problems is None or not cfg.tests.enabled else problems * cfg.tests.num_replies
    if stage == Stage.SAMPLE:
        problems = _rows(round_dir / "problems.parquet")
        return None if problems is None else problems * (cfg.sampling.n + int(cfg.sampling.greedy))
    if stage == Stage.EXECUTE:
        return _rows(round_dir / "samples.parquet")
    return None


def _rate(value: float, unit: str) -> str:
    return f"{value:,.1f} {unit}/s" if value < 100 else f"{value:,.0f} {unit}/s"


@dataclass
class _Running:
    round: int
    stage: Stage
    folder: Path
    measure: Measure | None
    total: int | None
    task: Any
    started: float
    first_seen: float | None = None  # when work was first reported (rates count from there)
    counts: dict[str, float] | None = None


class RunProgress:
    """Per-stage progress bars fed by ``plumline.llm.progress``; hooks for ``run_rounds``.

    On a terminal each running stage has a live bar (two at once when a round's stages share an engine);
    every finished stage prints one line."""

    def __init__(self, console: Console, cfg: RunConfig, run_dir: Path):
        self.console, self.cfg, self.run_dir = console, cfg, run_dir
        self.progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
            TextColumn("{task.fields[count]}"), TextColumn("{task.fields[rate]}"),
            TextColumn("ETA"), TimeRemainingColumn(), TextColumn("elapsed"), TimeElapsedColumn(),
            console=console, transient=True, disable=not console.is_terminal)
        self._running: dict[tuple[int, Stage], _Running] = {}  # stages of a round can run together
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll_loop, name="plumline-progress", daemon=True)

    def __enter__(self) -> Self:
        self.progress.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        with self._lock:
            for cur in self._running.values():  # the stages that failed
                self.progress.remove_task(cur.task)
            self._running.clear()
        live.close_channel()
        self.progress.stop()

    # -- hooks --------------------------------------------------------------------------------------
    def stage_started(self, round_: int, stage: Stage) -> None:
        """A stage begins: its channel (``RoundLayout.progress_dir``) opened process-wide, for the
        worker processes it starts (stages running together report through their threads' channels)."""
        layout = RoundLayout(self.run_dir, round_)
        folder = live.open_channel(layout.progress_dir(stage))
        measure = MEASURES.get(stage)
        total = stage_total(self.cfg, stage, layout.dir) if measure else None
        task = self.progress.add_task(f"round {round_} {stage.value:8}", total=total, count="", rate="")
        with self._lock:
            self._running[(round_, stage)] = _Running(round_, stage, folder, measure, total, task,
                                                      time.monotonic())

    def stage_done(self, round_: int, stage: Stage, marker: StageMarker, ran: bool) -> None:
        live.flush()
        with self._lock:
            cur = self._running.pop((round_, stage), None)
        if cur is None:
            return
        self._update(cur)
        self.progress.remove_task(cur.task)
        if os.environ.get(live.ENV) == str(cur.folder):
            live.close_channel()
        self.console.print(self.stage_line(cur, marker, ran), soft_wrap=True)

    # -- drawing ------------------------------------------------------------------------------------
    def stage_line(self, cur: _Running, marker: StageMarker, ran: bool) -> str:
        head = f"round {cur.round} {cur.stage.value:8}"
        if not ran:
            if "reused_from_round" in marker.info:
                return (f"{head} [dim]same inputs and settings as round {marker.info['reused_from_round']}: "
                        f"its outputs reused[/]")
            return f"{head} [dim]done earlier ({marker.seconds:.0f} s), kept[/]"
        parts = [f"{marker.seconds:6.1f} s"]
        if marker.info.get("ran_beside"):  # its seconds overlap theirs: not to be added up
            parts[0] += f" (beside {', '.join(marker.info['ran_beside'])})"
        counts = cur.counts or {}
        shown: tuple[str, int] | None = None  # (unit, count) the live measure already printed
        if cur.measure is not None and counts.get(cur.measure.key):
            done = int(counts[cur.measure.key])
            span = time.monotonic() - (cur.first_seen or cur.started)
            rate = _rate(done / max(span, 1e-9), cur.measure.rate_unit)
            parts.append(f"{done:,} {cur.measure.unit} ({rate})")
            shown = (cur.measure.unit, done)
            if cur.measure.generates and counts.get("tokens"):
                tokens = int(counts["tokens"])
                parts.append(f"{tokens:,} tokens ({_rate(tokens / max(span, 1e-9), 'tok')})")
            for key, unit, rate_unit in cur.measure.extras:
                if counts.get(key):
                    rate = _rate(counts[key] / max(span, 1e-9), rate_unit)
                    parts.append(f"{int(counts[key]):,} {unit} ({rate})")
        rows = ", ".join(f"{n:,} {name}" for name, n in marker.rows.items()
                         if name in ARTIFACTS and not ARTIFACTS[name].internal
                         and not _same_count(name, n, shown))
        if rows:
            parts.append(rows)
        return f"{head} " + "  ·  ".join(parts)

    def _poll_loop(self) -> None:
        while not self._stop.wait(POLL_S):
            with self._lock:
                for cur in self._running.values():
                    self._update(cur)

    def _update(self, cur: _Running) -> None:
        counts = live.read_progress(cur.folder)
        cur.counts = counts
        if cur.measure is None:
            return
        done = counts.get(cur.measure.key, 0)
        # Rates count from the first generate call (after the engine started) or the first item.
        started = counts.get(cur.measure.clock_key)
        if started and cur.first_seen is None:
            cur.first_seen = time.monotonic()
        total_key = cur.measure.total_key
        if total_key and counts.get(total_key):
            cur.total = max(cur.total or 0, int(counts[total_key]))
        rate = ""
        if cur.first_seen is not None:
            span = max(time.monotonic() - cur.first_seen, 1e-9)
            if cur.measure.generates and counts.get("tokens"):
                rate = _rate(counts["tokens"] / span, "tok")
            elif cur.measure.rate_key:
                unit = next((u for k, _, u in cur.measure.extras if k == cur.measure.rate_key), "")
                rate = _rate(counts.get(cur.measure.rate_key, 0) / span, unit)
            else:
                rate = _rate(done / span, cur.measure.rate_unit)
        count = f"{int(done):,}/{cur.total:,}" if cur.total else f"{int(done):,}"
        extras = "".join(f" · {int(counts[key]):,} {unit}" for key, unit, _ in cur.measure.extras
                         if counts.get(key))
        self.progress.update(cur.task, completed=done, total=cur.total, rate=rate,
                             count=f"{count} {cur.measure.unit}{extras}")


# --- the summary ------------------------------------------------------------------------------------

def summary_table(manifests: list[dict[str, Any]]) -> Table:
    """The run in one table, a row per round (narrow enough for an 80-column terminal): the held-out
    eval columns when a round evaluated, the prm rows when the prm stage ran (its manifest section)."""
    evaluated = any(m.get("eval") for m in manifests)
    labelled = any("prm" in m for m in manifests)
    # one more column: one space between columns (the box's) instead of two, to stay in 80 columns
    table = Table(title="plumline run (eval: held-out pass@1, greedy and sampled)", box=box.SIMPLE_HEAD,
                  collapse_padding=True, pad_edge=False, padding=0 if labelled else (0, 1))
    cols = ("round", "problems", "samples", "passed", "tests kept", "pairs", "kto", *(("prm",) * labelled),
            "errors")
    for col in (*cols, "greedy", "pass@1") if evaluated else cols:
        table.add_column(col, justify="right")
    for m in manifests:
        ev = m.get("eval") or {}
        held_out = [] if not evaluated else [
            "-" if ev.get(key) is None else f"{ev[key]:.1%}" for key in ("greedy_pass@1", "pass@1")]
        errors = str(m.get("errors", {}).get("total", "-"))
        if m.get("eval_only"):  # the last trained model, evaluated only
            table.add_row(str(m["round"]), "(eval)", *["-"] * (len(cols) - 3), errors, *held_out)
            continue
        ex, tests = m.get("executions") or {}, m.get("tests") or {}
        rate = ex.get("pass_rate")
        prm = [str((m.get("prm") or {}).get("rows", "-"))] if labelled else []
        table.add_row(str(m["round"]), str(m.get("counts", {}).get("problems", "-")),
                      str(m.get("samples", {}).get("total", "-")), "-" if rate is None else f"{rate:.1%}",
                      str(tests.get("kept", "-")), str(m.get("counts", {}).get("dpo", "-")),
                      str(m.get("kto", {}).get("rows", "-")), *prm, errors, *held_out)
    return table


def slow_config_warnings(cfg: RunConfig) -> list[str]:
    """Settings known to be slow on this machine (each logged once as a warning by the caller)."""
    from plumline.llm.hardware import choose_dtype, cpu_info, engine_device
    from plumline.pipeline.stages import cpu_workers

    out = []
    backends = [("policy", cfg.policy)]
    if cfg.tests.writer is not None:
        backends.append(("tests.writer", cfg.tests.writer))
    for field, b in backends:
        if b.kind in ("vllm", "transformers") and b.dtype != "auto":
            choice = choose_dtype(b.dtype, engine_device(b.kind, b.device))
            if choice.warning:
                out.append(f"{field}.dtype: {choice.warning}")
    method = cfg.training.method
    if method != "none" and getattr(cfg, method).train.bf16:
        choice = choose_dtype("bfloat16", engine_device("transformers"))
        if choice.warning:
            out.append(f"{method}.train.bf16: {choice.warning}")
    cores = cpu_info().cores
    workers = cpu_workers(cfg)
    if cfg.sandbox.workers is not None and cfg.sandbox.workers * workers > cores:
        out.append(f"sandbox.workers {cfg.sandbox.workers} x beam.cpu_workers {workers} = "
                   f"{cfg.sandbox.workers * workers} sandbox slots on {cores} cores: executions will "
                   f"queue for the CPU and hit their time limits (leave sandbox.workers unset)")
    elif workers > cores:
        out.append(f"beam.cpu_workers {workers} on {cores} cores: worker processes will fight for "
                   f"the CPU (leave beam.cpu_workers unset)")
    return out

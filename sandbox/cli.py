"""``plumline exec``: run a program against tests in the sandbox, one-off or as a streaming batch.

    plumline exec --code sol.py --tests tests.py [--json]
    plumline exec --batch jobs.jsonl --out results.jsonl [--workers N]

One typer command (``exec_cli``), mounted on ``plumline`` by ``register`` and run on its own by
``python -m plumline.sandbox``; ``exec_command`` is the plain function behind it.

A batch job line is ``{"id": ..., "code": "...", "tests": ["assert ...", {"kind": "io", ...}]}``, optionally
with ``"entry_point"`` (see ``--entry-point``).
Results are appended as jobs finish (one JSON line each, with the job id), so a crash mid-batch
loses nothing already written; a malformed line yields ``{"id", "line", "error"}`` and the batch goes on.
"""

from __future__ import annotations

import json
import logging
import sys
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from plumline.data_schemas import RecordError, TestSpec

from .core import ProgramResult, Sandbox, SandboxLimits
from .verdict import split_tests

log = logging.getLogger(__name__)


class ExecExit(IntEnum):
    """Exit codes of ``plumline exec`` / ``python -m plumline.sandbox``."""

    PASSED = 0  # the program passed every test; batch: every line was a well-formed job
    NOT_PASSED = 1  # a test failed, or error / timeout; batch: some lines were malformed
    USAGE = 2  # bad arguments or unreadable input files


EXIT_MEANINGS = {
    ExecExit.PASSED: "passed every test (--batch: every line was a job)",
    ExecExit.NOT_PASSED: "a test failed, an error or a timeout (--batch: some lines were malformed)",
    ExecExit.USAGE: "bad arguments or unreadable files",
}


def epilog() -> str:
    return "Exit codes: " + "; ".join(f"{int(c)} {EXIT_MEANINGS[c]}" for c in ExecExit) + "."


def _limits(timeout: float | None, memory_mb: int | None) -> SandboxLimits:
    kw: dict[str, Any] = {}
    if timeout is not None:
        kw["timeout_s"] = float(timeout)
        kw["test_timeout_s"] = min(SandboxLimits().test_timeout_s, float(timeout))
    if memory_mb is not None:
        kw["memory_mb"] = int(memory_mb)
    return SandboxLimits(**kw)


ENTRY_POINT_HELP = ("The function under test; needed only when it shadows a builtin (def sum): tests "
                    "otherwise see such names as the builtin, so a candidate cannot rig them.")


def result_json(r: ProgramResult) -> dict:
    return r.to_dict()


def _parse_job(line: str, lineno: int) -> tuple[Any, str, list[TestSpec], str | None]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"line {lineno}: not JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise TypeError(f"line {lineno}: a job must be a JSON object")
    job_id = obj.get("id")
    code = obj.get("code")
    if not isinstance(code, str):
        raise TypeError(f"line {lineno}: 'code' must be a string")
    entry_point = obj.get("entry_point")
    if entry_point is not None and not (isinstance(entry_point, str) and entry_point.isidentifier()):
        raise ValueError(f"line {lineno}: 'entry_point' must be a Python identifier")
    tests_in = obj.get("tests", [])
    if not isinstance(tests_in, list):
        raise TypeError(f"line {lineno}: 'tests' must be a list")
    tests: list[TestSpec] = []
    for k, t in enumerate(tests_in):
        try:
            if isinstance(t, str):
                tests.append(TestSpec(code=t, test_id=f"t{k}"))
            elif isinstance(t, dict):
                tests.append(TestSpec.from_dict(t))
            else:
                raise TypeError(f"expected a string or an object, got {type(t).__name__}")
        except (RecordError, ValueError, TypeError) as exc:
            raise TypeError(f"line {lineno}: tests[{k}]: {exc}") from None
    return job_id, code, tests, entry_point


def _batch(batch: Path, out: Path, workers: int | None, limits: SandboxLimits) -> ExecExit:
    n_ok = n_bad = 0
    with Sandbox(limits=limits, workers=workers) as sb, open(out, "a", encoding="utf-8") as fout, \
            open(batch, encoding="utf-8", errors="replace") as fin:
        window = sb.workers * 4

        def emit(obj: dict) -> None:
            fout.write(json.dumps(obj, ensure_ascii=False) + "\n")
            fout.flush()

        with ThreadPoolExecutor(max_workers=sb.workers, thread_name_prefix="plumline-exec") as ex:
            inflight: dict = {}

            def drain(block: bool) -> None:
                nonlocal n_ok
                if not inflight:
                    return
                done, _ = wait(list(inflight), return_when=FIRST_COMPLETED, timeout=None if block else 0)
                for fut in done:
                    job_id, lineno = inflight.pop(fut)
                    try:
                        res = fut.result()
                        emit({"id": job_id, "line": lineno, **result_json(res)})
                        n_ok += 1
                    except Exception as exc:  # noqa: BLE001 - one job must not end the batch
                        emit({"id": job_id, "line": lineno, "error": f"{type(exc).__name__}: {exc}"})

            for lineno, line in enumerate(fin, 1):
                if not line.strip():
                    continue
                try:
                    job_id, code, tests, entry_point = _parse_job(line, lineno)
                except (ValueError, TypeError) as exc:
                    emit({"id": None, "line": lineno, "error": str(exc)})
                    n_bad += 1
                    continue
                while len(inflight) >= window:
                    drain(True)
                inflight[ex.submit(sb.run, code, tests, entry_point)] = (job_id, lineno)
            while inflight:
                drain(True)
    log.info("batch done: %d results, %d malformed lines", n_ok, n_bad)
    return ExecExit.PASSED if n_bad == 0 else ExecExit.NOT_PASSED


def exec_command(code: Path | None, tests: Path | None, json_out: bool, batch: Path | None, out: Path | None,
                 workers: int | None, timeout: float | None, memory_mb: int | None,
                 entry_point: str | None = None) -> ExecExit:
    """What ``plumline exec`` does, as a plain function returning its ``ExecExit`` code."""
    try:
        limits = _limits(timeout, memory_mb)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExecExit.USAGE
    if batch is not None:
        if out is None:
            print("error: --batch needs --out", file=sys.stderr)
            return ExecExit.USAGE
        if not Path(batch).is_file():
            print(f"error: batch file {batch} not found", file=sys.stderr)
            return ExecExit.USAGE
        return _batch(Path(batch), Path(out), workers, limits)
    if entry_point is not None and not entry_point.isidentifier():
        print(f"error: --entry-point must be a Python identifier, got {entry_point!r}", file=sys.stderr)
        return ExecExit.USAGE
    if code is None or tests is None:
        print("error: give --code FILE and --tests FILE, or --batch JOBS.jsonl --out RESULTS.jsonl",
              file=sys.stderr)
        return ExecExit.USAGE
    try:
        src = Path(code).read_text(encoding="utf-8", errors="surrogateescape")
        test_src = Path(tests).read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExecExit.USAGE
    specs = [TestSpec(code=t, test_id=f"t{k}") for k, t in enumerate(split_tests(test_src))]
    with Sandbox(limits=limits, workers=1) as sb:
        res = sb.run(src, specs, entry_point)
    if json_out:
        print(json.dumps(result_json(res), ensure_ascii=False))
    else:
        print(f"outcome: {res.outcome}  passed {res.passed}/{res.total}  tier {res.isolation_tier}  "
              f"{res.duration_s:.3f}s")
        for t in res.test_results:
            extra = f"  {t.error_type}: {t.error_message or ''}" if t.error_type else ""
            print(f"  {t.test_id}: {t.status}{extra}")
        if res.error_type:
            print(f"error: {res.error_type} at line {res.error_line}")
    return ExecExit.PASSED if res.outcome == "passed" else ExecExit.NOT_PASSED


_DEFAULTS = SandboxLimits()


def exec_cli(  # every option of `plumline exec` is declared once, here
    code: Annotated[Path | None, typer.Option("--code", help="Candidate program file (Python).")] = None,
    tests: Annotated[Path | None, typer.Option(
        "--tests", help="File of plain assert statements, one test per top-level assert (earlier "
        "imports and assignments are kept for the asserts after them).")] = None,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print the result as one JSON object (the last line).")] = False,
    batch: Annotated[Path | None, typer.Option(
        "--batch", help='JOBS.jsonl, one job a line: {"id", "code", "tests": [...], "entry_point"?}; '
        "needs --out.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="RESULTS.jsonl for --batch: one JSON line per job, appended as jobs finish.")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, help="Parallel sandbox slots for --batch (default: one per core).")] = None,
    timeout: Annotated[float | None, typer.Option(
        "--timeout",
        help=f"Wall-clock budget per program in seconds (default {_DEFAULTS.timeout_s:g}).")] = None,
    memory_mb: Annotated[int | None, typer.Option(
        "--memory-mb", help=f"Memory cap per program in MiB (default {_DEFAULTS.memory_mb}).")] = None,
    entry_point: Annotated[str | None, typer.Option("--entry-point", help=ENTRY_POINT_HELP)] = None,
) -> None:
    """Run untrusted Python against tests in the sandbox.

    One program: --code FILE --tests FILE. A streaming batch: --batch JOBS.jsonl --out RESULTS.jsonl."""
    raise typer.Exit(int(exec_command(code, tests, json_out, batch, out, workers, timeout, memory_mb,
                                      entry_point)))


def register(app: typer.Typer, name: str = "exec") -> None:
    """Mount ``plumline exec`` on a typer app: ``register(app)``."""
    app.command(name, epilog=epilog())(exec_cli)


def main(argv: list[str] | None = None) -> None:
    """``python -m plumline.sandbox``: ``plumline exec`` on its own (exits with an ``ExecExit`` code)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app = typer.Typer(add_completion=False)
    register(app)  # one command: typer runs it without a command name
    app(args=argv, prog_name="python -m plumline.sandbox")


if __name__ == "__main__":
    main()

"""``plumline exec``: run a program against tests in the sandbox, one-off or as a streaming batch.

    plumline exec --code sol.py --tests tests.py [--json]
    plumline exec --batch jobs.jsonl --out results.jsonl [--workers N]

A batch job line is ``{"id": ..., "code": "...", "tests": ["assert ...", {"kind": "io", ...}]}``, optionally
with ``"entry_point"`` (see ``--entry-point``).
Results are appended as jobs finish (one JSON line each, with the job id), so a crash mid-batch
loses nothing already written; a malformed line yields ``{"id", "line", "error"}`` and the batch goes on.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from plumline.data_schemas import RecordError, TestSpec

from .core import ProgramResult, Sandbox, SandboxLimits
from .verdict import split_tests

log = logging.getLogger(__name__)


def _limits(timeout: float | None, memory_mb: int | None) -> SandboxLimits:
    kw: dict[str, Any] = {}
    if timeout is not None:
        kw["timeout_s"] = float(timeout)
        kw["test_timeout_s"] = min(SandboxLimits().test_timeout_s, float(timeout))
    if memory_mb is not None:
        kw["memory_mb"] = int(memory_mb)
    return SandboxLimits(**kw)


ENTRY_POINT_HELP = ("the function under test; needed only when it shadows a builtin (def sum): tests "
                    "otherwise see such names as the builtin, so a candidate cannot rig them")


def result_json(r: ProgramResult) -> dict:
    return r.to_dict()


def _parse_job(line: str, lineno: int) -> tuple[Any, str, list[TestSpec], str | None]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"line {lineno}: not JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"line {lineno}: a job must be a JSON object")
    job_id = obj.get("id")
    code = obj.get("code")
    if not isinstance(code, str):
        raise ValueError(f"line {lineno}: 'code' must be a string")
    entry_point = obj.get("entry_point")
    if entry_point is not None and not (isinstance(entry_point, str) and entry_point.isidentifier()):
        raise ValueError(f"line {lineno}: 'entry_point' must be a Python identifier")
    tests_in = obj.get("tests", [])
    if not isinstance(tests_in, list):
        raise ValueError(f"line {lineno}: 'tests' must be a list")
    tests: list[TestSpec] = []
    for k, t in enumerate(tests_in):
        try:
            if isinstance(t, str):
                tests.append(TestSpec(code=t, test_id=f"t{k}"))
            elif isinstance(t, dict):
                tests.append(TestSpec.from_dict(t))
            else:
                raise ValueError(f"expected a string or an object, got {type(t).__name__}")
        except (RecordError, ValueError, TypeError) as exc:
            raise ValueError(f"line {lineno}: tests[{k}]: {exc}") from None
    return job_id, code, tests, entry_point


def _batch(batch: Path, out: Path, workers: int | None, limits: SandboxLimits) -> int:
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
                except ValueError as exc:
                    emit({"id": None, "line": lineno, "error": str(exc)})
                    n_bad += 1
                    continue
                while len(inflight) >= window:
                    drain(True)
                inflight[ex.submit(sb.run, code, tests, entry_point)] = (job_id, lineno)
            while inflight:
                drain(True)
    log.info("batch done: %d results, %d malformed lines", n_ok, n_bad)
    return 0 if n_bad == 0 else 1


def exec_command(code: Path | None, tests: Path | None, json_out: bool, batch: Path | None, out: Path | None,
                 workers: int | None, timeout: float | None, memory_mb: int | None,
                 entry_point: str | None = None) -> int:
    """Entry point of ``plumline exec``. Returns the exit code: 0 passed (or batch fully read),
    1 not passed (or malformed batch lines), 2 usage error."""
    try:
        limits = _limits(timeout, memory_mb)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if batch is not None:
        if out is None:
            print("error: --batch needs --out", file=sys.stderr)
            return 2
        if not Path(batch).is_file():
            print(f"error: batch file {batch} not found", file=sys.stderr)
            return 2
        return _batch(Path(batch), Path(out), workers, limits)
    if entry_point is not None and not entry_point.isidentifier():
        print(f"error: --entry-point must be a Python identifier, got {entry_point!r}", file=sys.stderr)
        return 2
    if code is None or tests is None:
        print("error: give --code FILE and --tests FILE, or --batch JOBS.jsonl --out RESULTS.jsonl",
              file=sys.stderr)
        return 2
    try:
        src = Path(code).read_text(encoding="utf-8", errors="surrogateescape")
        test_src = Path(tests).read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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
    return 0 if res.outcome == "passed" else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="plumline exec", description=__doc__.split("\n")[0])
    p.add_argument("--code", type=Path)
    p.add_argument("--tests", type=Path)
    p.add_argument("--json", dest="json_out", action="store_true")
    p.add_argument("--batch", type=Path)
    p.add_argument("--out", type=Path)
    p.add_argument("--workers", type=int)
    p.add_argument("--timeout", type=float, help="wall-clock budget per program (s)")
    p.add_argument("--memory-mb", type=int)
    p.add_argument("--entry-point", help=ENTRY_POINT_HELP)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    a = build_parser().parse_args(argv)
    return exec_command(a.code, a.tests, a.json_out, a.batch, a.out, a.workers, a.timeout, a.memory_mb,
                        a.entry_point)


def exec_cli(  # a typer-friendly signature: app.command("exec")(exec_cli)
    code: Path = None,  # type: ignore[assignment]
    tests: Path = None,  # type: ignore[assignment]
    json_out: bool = False,
    batch: Path = None,  # type: ignore[assignment]
    out: Path = None,  # type: ignore[assignment]
    workers: int = None,  # type: ignore[assignment]
    timeout: float = None,  # type: ignore[assignment]
    memory_mb: int = None,  # type: ignore[assignment]
    entry_point: str = None,  # type: ignore[assignment]
) -> None:
    raise SystemExit(exec_command(code, tests, json_out, batch, out, workers, timeout, memory_mb, entry_point))


def _typer_command() -> Any:
    """``exec_cli`` with typer options spelled as in the issue (``--json`` etc.)."""
    import typer

    def command(
        code: Path = typer.Option(None, "--code", help="candidate program file"),
        tests: Path = typer.Option(None, "--tests", help="file of plain assert statements"),
        json_out: bool = typer.Option(False, "--json", help="print one JSON object as the last line"),
        batch: Path = typer.Option(None, "--batch", help="JOBS.jsonl: {id, code, tests}"),
        out: Path = typer.Option(None, "--out", help="RESULTS.jsonl (appended as jobs finish)"),
        workers: int = typer.Option(None, "--workers", help="parallel slots (default: one per core)"),
        timeout: float = typer.Option(None, "--timeout", help="wall-clock budget per program (s)"),
        memory_mb: int = typer.Option(None, "--memory-mb", help="memory cap per process (MiB)"),
        entry_point: str = typer.Option(None, "--entry-point", help=ENTRY_POINT_HELP),
    ) -> None:
        """Run untrusted Python against tests in the sandbox."""
        raise typer.Exit(exec_command(code, tests, json_out, batch, out, workers, timeout, memory_mb, entry_point))

    return command


def register(app: Any, name: str = "exec") -> None:
    """Mount ``plumline exec`` on a typer app: ``register(app)``."""
    app.command(name)(_typer_command())


if __name__ == "__main__":
    sys.exit(main())

"""Read stage at scale: rows/s and peak RSS of reading problems, against baselines measured in the same run.

Files (written under --dir, default a temporary folder):
- ``problems.jsonl``: --rows rows (default 100,000) of which 1% are broken, one every 100 lines, cycling
  through ten kinds of bad input (malformed JSON, invalid UTF-8, not an object, missing or mistyped
  fields, NUL, lone surrogate, duplicate id, a line cut short);
- ``long-line.jsonl``: five lines, one a valid problem whose prompt is --line-mb MB (default 50) and one
  a malformed line as long.

Each measurement runs in its own process (``--child MODE FILE``); a sampler thread records the peak RSS
of that process plus all its descendants (Beam's worker processes), and ``ru_maxrss`` for itself:
- ``size``: the file's size (what reading it whole costs at least);
- ``read_bytes``: ``Path.read_bytes()`` (the old read stage began so);
- ``json_lines``: plain ``json.loads`` over the lines, nothing else (the parsing floor);
- ``whole``: the old path, ``parse_jsonl_bytes(Path.read_bytes())`` (the file read whole, then split),
  rows counted and dropped (no id deduplication);
- ``pure``: ``read_problems`` (streaming), rows counted and dropped;
- ``beam``: ``ReadProblems`` on the FnApiRunner with 2 multi-process workers, as a round runs it; the
  problems' ids and the errors are written to files, so a test can check that nothing was lost.

    nice -n 10 python bench/bench_read.py [--rows 100000] [--line-mb 50] [--skip-beam] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Self

BROKEN_EVERY, BROKEN_AT = 100, 37  # line i (0-based) is broken when i % 100 == 37

PROMPT = ('def f{i}(values: list[int]) -> int:\n    """Return the sum of the even numbers in values, '
          'counting each one once; problem {i}. {pad}"""\n')


def good_row(i: int) -> dict[str, Any]:
    return {"problem_id": f"bench/{i}", "prompt": PROMPT.format(i=i, pad="x" * 200), "entry_point": f"f{i}",
            "given_tests": [{"code": f"assert f{i}([1, 2, 4]) == 6"}, {"code": f"assert f{i}([]) == 0"}],
            "metadata": {"n": i}}


# kind, reason fragment, the bad line for row i
BAD_KINDS: list[tuple[str, str, Any]] = [
    ("bad_input", "malformed JSON", lambda i: b'{"prompt": "p", broken'),
    ("bad_input", "not UTF-8", lambda i: b'{"prompt": "caf\xe9", "entry_point": "f"}'),
    ("bad_input", "expected a JSON object per line", lambda i: b"[1, 2, 3]"),
    ("bad_input", "prompt", lambda i: json.dumps({"entry_point": "f", "given_tests": []}).encode()),
    ("bad_input", "expected str", lambda i: json.dumps({**good_row(i), "prompt": 42}).encode()),
    ("bad_input", "NUL", lambda i: json.dumps({**good_row(i), "prompt": "a\x00b"}).encode()),
    ("bad_input", "lone surrogate", lambda i: json.dumps({**good_row(i)})[:-1].encode()
     + b', "note": "\\ud800"}'),
    ("duplicate_id", "duplicate problem id",
     lambda i: json.dumps({**good_row(i), "problem_id": f"bench/{i - 50}", "prompt": "dup"}).encode()),
    ("bad_input", "given_tests", lambda i: json.dumps({**good_row(i), "given_tests": 5}).encode()),
    ("bad_input", "malformed JSON", lambda i: json.dumps(good_row(i)).encode()[:60]),
]


def write_problems(path: Path, rows: int) -> dict[str, Any]:
    """The 1%-broken problems file; returns what a reader must find: good ids and bad lines."""
    good: list[str] = []
    bad: dict[int, tuple[str, str]] = {}
    with path.open("wb") as f:
        for i in range(rows):
            if i % BROKEN_EVERY == BROKEN_AT:
                kind, fragment, make = BAD_KINDS[(i // BROKEN_EVERY) % len(BAD_KINDS)]
                f.write(make(i) + b"\n")
                bad[i + 1] = (kind, fragment)
            else:
                row = good_row(i)
                f.write(json.dumps(row).encode() + b"\n")
                good.append(row["problem_id"])
    return {"good": good, "bad": bad}


def write_long_line(path: Path, mb: int) -> dict[str, Any]:
    """Five lines: good, a good one with an ``mb`` MB prompt, good, a malformed one as long, good."""
    n = mb * 1_000_000
    with path.open("wb") as f:
        f.write(json.dumps(good_row(1)).encode() + b"\n")
        f.write(b'{"problem_id": "bench/huge", "entry_point": "f", "prompt": "' + b"y" * n + b'"}\n')
        f.write(json.dumps(good_row(3)).encode() + b"\n")
        f.write(b'{"problem_id": "bench/broken", "prompt": "' + b"z" * n + b"\n")  # never closed
        f.write(json.dumps(good_row(5)).encode() + b"\n")
    return {"good": ["bench/1", "bench/huge", "bench/3", "bench/5"],
            "bad": {4: ("bad_input", "malformed JSON")}, "huge_len": n}


# ------------------------------------------------------------------------------------------- children


class PeakRss:
    """Samples the RSS of this process and all its descendants (Beam workers) every ``period`` s."""

    def __init__(self, period: float = 0.02):
        import psutil

        self._me = psutil.Process()
        self._period = period
        self.before = self._me.memory_info().rss
        self.peak_total = self.peak_self = self.peak_child = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        own = self._me.memory_info().rss
        children = []
        for c in self._me.children(recursive=True):
            try:
                children.append(c.memory_info().rss)
            except psutil.Error:
                pass
        self.peak_self = max(self.peak_self, own)
        self.peak_child = max([self.peak_child, *children])
        self.peak_total = max(self.peak_total, own + sum(children))

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            self._sample()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def _child(mode: str, path: str, out: str, max_line_bytes: int | None) -> dict[str, Any]:
    import resource

    from plumline.data_schemas import Problem
    from plumline.transforms.logic.readers import SourceConfig, parse_jsonl_bytes, read_problems

    cfg = SourceConfig(path=path, **({"max_line_bytes": max_line_bytes} if max_line_bytes else {}))
    rows = errors = 0
    t0 = time.perf_counter()
    with PeakRss() as rss:
        if mode == "read_bytes":
            rows = len(Path(path).read_bytes())
        elif mode == "json_lines":
            with open(path, "rb") as f:
                for line in f:
                    try:
                        json.loads(line)
                        rows += 1
                    except ValueError:
                        errors += 1
        elif mode == "whole":
            for _, item in parse_jsonl_bytes(Path(path).read_bytes(), path, cfg):
                if isinstance(item, Problem):
                    rows += 1
                else:
                    errors += 1
        elif mode == "pure":
            for item in read_problems(cfg):
                if isinstance(item, Problem):
                    rows += 1
                else:
                    errors += 1
        elif mode == "beam":
            rows, errors = _beam(cfg, Path(out))
        else:
            raise SystemExit(f"unknown mode {mode}")
    seconds = time.perf_counter() - t0
    mib = 1 << 20
    return {"mode": mode, "rows": rows, "errors": errors, "seconds": round(seconds, 3),
            "rows_per_s": round(rows / seconds) if seconds and mode != "read_bytes" else None,
            "rss_before_mib": round(rss.before / mib, 1), "peak_self_mib": round(rss.peak_self / mib, 1),
            "peak_worker_mib": round(rss.peak_child / mib, 1),
            "peak_total_mib": round(rss.peak_total / mib, 1),
            "ru_maxrss_self_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def _beam(cfg: Any, out: Path) -> tuple[int, int]:
    problems, errors = run_beam_read([cfg], out)
    return len(problems), len(errors)


def run_beam_read(sources: list[Any], out: Path) -> tuple[dict[str, int], list[tuple[str, str, str]]]:
    """ReadProblems as a round runs a CPU stage (FnApiRunner, 2 workers, multi_processing); returns
    ``beam_outputs``: problem id -> prompt length, and (input, kind, reason) per error."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from plumline.transforms.read import ReadProblems

    out.mkdir(parents=True, exist_ok=True)
    opts = PipelineOptions(["--direct_num_workers=2", "--direct_running_mode=multi_processing"])
    with beam.Pipeline(runner=FnApiRunner(), options=opts) as p:
        read = p | ReadProblems(sources)
        (read["problems"] | "Ids" >> beam.Map(lambda x: f"{x.problem_id}\t{len(x.prompt)}")
         | "WriteIds" >> beam.io.WriteToText(str(out / "problems"), shard_name_template="-SSSSS"))
        (read["errors"] | "Errs" >> beam.Map(lambda e: json.dumps([e.input, e.kind, e.reason]))
         | "WriteErrs" >> beam.io.WriteToText(str(out / "errors"), shard_name_template="-SSSSS"))
    return beam_outputs(out)


def beam_outputs(out: Path) -> tuple[dict[str, int], list[tuple[str, str, str]]]:
    """What a ``beam`` child wrote: problem id -> prompt length, and (input, kind, reason) per error."""
    problems: dict[str, int] = {}
    for f in sorted(out.glob("problems-*")):
        for line in f.open():
            pid, n = line.rstrip("\n").rsplit("\t", 1)
            problems[pid] = int(n)
    errors = [tuple(json.loads(line)) for f in sorted(out.glob("errors-*")) for line in f.open()]
    return problems, errors  # type: ignore[return-value]


def measure(mode: str, path: Path, out: Path | None = None, max_line_bytes: int | None = None,
            timeout: float = 900) -> dict[str, Any]:
    """Run one measurement in a fresh process and return its figures."""
    if mode == "size":
        return {"mode": mode, "bytes": path.stat().st_size, "mib": round(path.stat().st_size / (1 << 20), 1)}
    cmd = [sys.executable, __file__, "--child", mode, str(path), "--out", str(out or path.parent / "out")]
    if max_line_bytes:
        cmd += ["--max-line-bytes", str(max_line_bytes)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cpu() -> str:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    avx = "avx512f" in Path("/proc/cpuinfo").read_text()
    return f"{model}, {os.cpu_count()} cores, avx512 {'yes' if avx else 'no'}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--line-mb", type=int, default=50)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--skip-beam", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "FILE"), help=argparse.SUPPRESS)
    ap.add_argument("--out", default="", help=argparse.SUPPRESS)
    ap.add_argument("--max-line-bytes", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.child[0], args.child[1], args.out, args.max_line_bytes)))
        return
    folder = args.dir or Path(tempfile.mkdtemp(prefix="bench-read-"))
    folder.mkdir(parents=True, exist_ok=True)
    files = {"problems": (folder / "problems.jsonl", lambda p: write_problems(p, args.rows)),
             "long-line": (folder / "long-line.jsonl", lambda p: write_long_line(p, args.line_mb))}
    print(f"# read stage bench: {_cpu()}; files in {folder}")
    results: list[dict[str, Any]] = []
    for name, (path, write) in files.items():
        expected = write(path)
        modes = ["size", "read_bytes", "json_lines", "whole", "pure"] + ([] if args.skip_beam else ["beam"])
        print(f"\n## {name}: {path.stat().st_size / (1 << 20):.1f} MiB, {len(expected['good'])} good rows, "
              f"{len(expected['bad'])} bad")
        print(f"{'mode':<11} {'rows':>8} {'errors':>7} {'s':>7} {'rows/s':>8} {'before':>8} {'peak':>8} "
              f"{'worker':>8} {'total':>8}  (MiB)")
        for mode in modes:
            r = {"file": name, **measure(mode, path, folder / f"out-{name}")}
            results.append(r)
            if mode == "size":
                print(f"{'size':<11} {r['mib']:>8} MiB")
                continue
            print(f"{mode:<11} {r['rows']:>8} {r['errors']:>7} {r['seconds']:>7} {r['rows_per_s'] or '-':>8} "
                  f"{r['rss_before_mib']:>8} {r['peak_self_mib']:>8} {r['peak_worker_mib']:>8} "
                  f"{r['peak_total_mib']:>8}")
    if args.json:
        args.json.write_text(json.dumps({"cpu": _cpu(), "results": results}, indent=1))


if __name__ == "__main__":
    main()

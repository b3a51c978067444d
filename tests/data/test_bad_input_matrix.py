"""The read stage's bad-input matrix (issue 14): every malformed input keeps every good row and names each
bad one (``file:line`` or ``file#row``, and its ErrorKind), in the pure reader and in the real Beam read
stage (ReadProblems on the FnApiRunner, 2 multi-process workers, as a round runs a CPU stage); files are
streamed, so memory is bounded by a line (or a Parquet row group), not the file.

Heavy cases (100,000 rows with 1% broken, a 50 MB line; peak RSS measured in a child process by
bench/bench_read.py) are marked ``slow``.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from plumline.data_schemas import ErrorKind, ErrorRecord, Problem, Stage
from plumline.transforms.logic.readers import (
    LineSplitter,
    SourceConfig,
    parse_jsonl_stream,
    read_problems,
)
from plumline.transforms.logic.readers.lines import CHUNK_BYTES, LineTooLong

BAD, MISSING, DUP = ErrorKind.BAD_INPUT.value, ErrorKind.MISSING_INPUT.value, ErrorKind.DUPLICATE_ID.value


def _bench():
    path = Path(__file__).resolve().parents[2] / "bench" / "bench_read.py"
    spec = importlib.util.spec_from_file_location("bench_read", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def good(stem: str, n: int, **over: Any) -> dict[str, Any]:
    return {"problem_id": f"{stem}/{n}", "prompt": f"def f(x):\n    '''Row {n} of {stem}.'''\n",
            "entry_point": "f", "given_tests": [{"code": "assert f(1) is None"}], **over}


def g(stem: str, n: int, **over: Any) -> bytes:
    return json.dumps(good(stem, n, **over)).encode()


def _parquet_bytes(stem: str, rows: int, group: int) -> bytes:
    pad = "x" * 40
    table = pa.table({"problem_id": [f"{stem}/{i}" for i in range(rows)],
                      "prompt": [f"def f(x):\n    '''Row {i} of {stem} {pad}.'''\n" for i in range(rows)],
                      "entry_point": ["f"] * rows})
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=group, compression="snappy")
    return sink.getvalue()


def _corrupt_row_group(data: bytes, group: int) -> bytes:
    """Overwrite the middle of one row group's first column chunk (its footer stays readable)."""
    col = pq.ParquetFile(pa.BufferReader(data)).metadata.row_group(group).column(0)
    start = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
    out = bytearray(data)
    out[start + 30:start + col.total_compressed_size - 10] = b"\xab" * (col.total_compressed_size - 40)
    return bytes(out)


# name -> (file bytes, SourceConfig fields, good row numbers, {location suffix: (kind, reason fragment)})
# The location suffix is ":<line>" (JSONL, 1-based), "#<row>" (Parquet, 0-based) or "" (the whole file).
MATRIX: dict[str, tuple[bytes, dict[str, Any], list[int], dict[str, tuple[str, str]]]] = {
    "empty.jsonl": (b"", {}, [], {":0": (MISSING, "empty input")}),
    "blank.jsonl": (b"\n   \n\r\n", {}, [], {":0": (MISSING, "empty input")}),
    "invalid_json.jsonl": (b"\n".join([g("invalid_json", 1), b"{broken", g("invalid_json", 3),
                                       b'{"prompt": "unterminated']),
                           {}, [1, 3], {":2": (BAD, "malformed JSON"), ":4": (BAD, "malformed JSON")}),
    "not_object.jsonl": (b"\n".join([g("not_object", 1), b"[1, 2]", b'"text"', b"42", b"null",
                                     g("not_object", 6)]),
                         {}, [1, 6],
                         {f":{i}": (BAD, "expected a JSON object per line") for i in (2, 3, 4, 5)}),
    "fields.jsonl": (b"\n".join([
        g("fields", 1),
        json.dumps({"entry_point": "f"}).encode(),                            # 2 prompt missing
        json.dumps({"prompt": 42, "entry_point": "f"}).encode(),              # 3 prompt mistyped
        g("fields", 4, given_tests=5),                                        # 4 tests mistyped
        g("fields", 5, entry_point=["f"]),                                    # 5 entry point mistyped
        g("fields", 6, metadata="{not json", extra=1),                        # 6 metadata not JSON
        g("fields", 7, given_tests=[{"kind": "assert", "code": ""}]),         # 7 empty test
        g("fields", 8)]),
        {}, [1, 8], {":2": (BAD, "prompt"), ":3": (BAD, "expected str"), ":4": (BAD, "given_tests"),
                     ":5": (BAD, "entry_point"), ":6": (BAD, "metadata"), ":7": (BAD, "code")}),
    "duplicates.jsonl": (b"\n".join([g("duplicates", 1), g("duplicates", 1, prompt="later"),
                                     g("duplicates", 3)]),
                         {}, [1, 3], {":2": (DUP, "first seen at {path}:1")}),
    "utf8.jsonl": (b"\n".join([g("utf8", 1), b'{"prompt": "caf\xe9", "entry_point": "f"}', b"\xff\xfe\x00",
                               g("utf8", 4)]),
                   {}, [1, 4], {":2": (BAD, "not UTF-8"), ":3": (BAD, "not UTF-8")}),
    "bom_crlf.jsonl": (b"\xef\xbb\xbf" + g("bom_crlf", 1) + b"\r\n" + g("bom_crlf", 2) + b"\r\n",
                       {}, [1, 2], {}),
    "nul_surrogate.jsonl": (b"\n".join([
        g("nul_surrogate", 1),
        g("nul_surrogate", 2, prompt="a\x00b"),                               # 2 NUL (\u0000) in the prompt
        b'{"prompt": "a\x00b", "entry_point": "f"}',                          # 3 raw NUL byte: not JSON
        g("nul_surrogate", 4)[:-1] + b', "note": "x\\ud800y"}',               # 4 lone surrogate in a column
        b'{"prompt": "p\\udc00", "entry_point": "f"}',                        # 5 lone surrogate in the prompt
        b'{"\\ud800": 1, "prompt": "p", "entry_point": "f"}',                 # 6 lone surrogate in a key
        g("nul_surrogate", 7, prompt="pair \\ud83d\\ude00 ok"),               # 7 good: escaped text
        g("nul_surrogate", 8)[:-1] + b', "note": "\\ud83d\\ude00"}',          # 8 good: a valid pair
        g("nul_surrogate", 9, metadata={"raw": "v\x00w"}),                    # 9 good: NUL kept in metadata
        g("nul_surrogate", 10, given_tests=[{"code": "assert f(1)\x00"}])]),  # 10 NUL in a test
        {}, [1, 7, 8, 9],
        {":2": (BAD, "NUL"), ":3": (BAD, "malformed JSON"), ":4": (BAD, "lone surrogate"),
         ":5": (BAD, "lone surrogate"), ":6": (BAD, "lone surrogate"), ":10": (BAD, "NUL")}),
    "field_map.jsonl": (b"\n".join([
        json.dumps({"problem_id": "field_map/1", "question": "q", "entry_point": "f"}).encode(),
        json.dumps({"prompt": "p", "entry_point": "f"}).encode()]),
                        {"field_map": {"prompt": "question"}}, [1],
                        {":2": (BAD, "mapped column 'question' does not exist")}),
    "too_long.jsonl": (b"\n".join([g("too_long", 1), b'{"prompt": "' + b"x" * 5000 + b'"}', g("too_long", 3),
                                   b"y" * 3000]),
                       {"max_line_bytes": 1000}, [1, 3],
                       {":2": (BAD, "line too long: 5,014 bytes"),
                        ":4": (BAD, "line too long: 3,000 bytes")}),
    "truncated.parquet": (_parquet_bytes("truncated", 50, 10)[:-300], {}, [],
                          {"": (BAD, "not a readable Parquet file")}),
    "empty.parquet": (b"", {}, [], {"#0": (MISSING, "empty input")}),
    "corrupt_group.parquet": (_corrupt_row_group(_parquet_bytes("corrupt_group", 300, 100), 1), {},
                              [*range(100), *range(200, 300)],
                              {"#100": (BAD, "unreadable Parquet row group 1 (rows 100-199 not read)")}),
}
GZIP_ROWS = 3000


def _cut_gzip(path: Path) -> None:
    lines = b"".join(g("cut", i) + b"\n" for i in range(1, GZIP_ROWS + 1))
    data = gzip.compress(lines)
    path.write_bytes(data[: len(data) * 6 // 10])


def _write_matrix(folder: Path) -> list[SourceConfig]:
    sources = []
    for name, (data, fields, _, _) in MATRIX.items():
        (folder / name).write_bytes(data)
        sources.append(SourceConfig(path=str(folder / name), **fields))
    _cut_gzip(folder / "cut.jsonl.gz")
    sources.append(SourceConfig(path=str(folder / "cut.jsonl.gz")))
    return sources


def _split(items: list) -> tuple[list[Problem], list[ErrorRecord]]:
    probs = [i for i in items if isinstance(i, Problem)]
    errs = [i for i in items if isinstance(i, ErrorRecord)]
    assert len(probs) + len(errs) == len(items)
    return probs, errs


@pytest.mark.parametrize("name", list(MATRIX))
def test_matrix_pure_reader(tmp_path, name):
    data, fields, good_rows, bad = MATRIX[name]
    path = tmp_path / name
    path.write_bytes(data)
    probs, errs = _split(list(read_problems(SourceConfig(path=str(path), **fields))))
    stem = name.split(".")[0]
    assert sorted(p.problem_id for p in probs) == sorted(f"{stem}/{n}" for n in good_rows)
    got = {e.input[len(str(path)):]: e for e in errs}
    assert all(e.input.startswith(str(path)) for e in errs)
    assert len(got) == len(errs) and set(got) == set(bad), [(e.input, e.reason) for e in errs]
    for where, (kind, fragment) in bad.items():
        e = got[where]
        assert e.stage == Stage.READ and e.kind == kind, (where, e)
        assert fragment.format(path=path) in e.reason, (where, e.reason)
        assert len(e.detail) <= 300


def test_nul_in_metadata_and_escaped_text_are_kept_faithfully(tmp_path):
    data, _, _, _ = MATRIX["nul_surrogate.jsonl"]
    path = tmp_path / "nul_surrogate.jsonl"
    path.write_bytes(data)
    probs = {p.problem_id: p for p in read_problems(SourceConfig(path=str(path))) if isinstance(p, Problem)}
    assert probs["nul_surrogate/9"].metadata["raw"] == "v\x00w"
    assert probs["nul_surrogate/7"].prompt == "pair \\ud83d\\ude00 ok"
    assert probs["nul_surrogate/8"].metadata["note"] == "\U0001f600"


def test_gzip_cut_short_keeps_every_line_before_the_cut(tmp_path):
    path = tmp_path / "cut.jsonl.gz"
    _cut_gzip(path)
    probs, errs = _split(list(read_problems(SourceConfig(path=str(path)))))
    (e,) = errs
    n = len(probs)
    assert [p.problem_id for p in probs] == [f"cut/{i}" for i in range(1, n + 1)]  # a prefix, in order
    assert n > GZIP_ROWS // 3  # most of what the 60% left could be read was read
    assert e.input == f"{path}:{n + 1}" and e.kind == BAD and "gzip file cut short" in e.reason
    assert f"lines 1-{n} were read" in e.reason


def test_corrupt_gzip_header_and_not_gzip_after_magic(tmp_path):
    path = tmp_path / "bad.jsonl.gz"
    path.write_bytes(b"\x1f\x8b" + b"\x00" * 40)
    (e,) = read_problems(SourceConfig(path=str(path)))
    assert isinstance(e, ErrorRecord) and e.input == f"{path}:1" and e.kind == BAD and "gzip" in e.reason


def test_matrix_through_beam_matches_pure_reader(tmp_path):
    """The real read stage, 2 worker processes: the same problems and the same errors as the pure reader."""
    sources = _write_matrix(tmp_path)
    pure_probs, pure_errs = _split(list(read_problems(sources)))
    bench = _bench()
    problems, errors = bench.run_beam_read(sources, tmp_path / "out")
    assert problems == {p.problem_id: len(p.prompt) for p in pure_probs}
    assert sorted(errors) == sorted((e.input, e.kind, e.reason) for e in pure_errs)
    assert len(pure_errs) == sum(len(bad) for _, _, _, bad in MATRIX.values()) + 1  # + the cut gzip


# ------------------------------------------------------------------------------------------- streaming


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"", b"a", b"bc", b"\n", b"\r\n", b"{}", b"x" * 9, b"\n\n"]), max_size=40),
       st.integers(1, 8), st.integers(1, 12))
def test_line_splitter_numbers_lines_like_split(pieces, chunk, limit):
    data = b"".join(pieces)
    stream = io.BytesIO(data)
    got = list(LineSplitter(stream.read, limit, chunk=chunk))
    want = [(i, ln) for i, ln in enumerate(data.split(b"\n"), start=1)]
    if want and want[-1][1] == b"":
        want.pop()  # a final newline ends the last line; it does not start another
    assert [i for i, _ in got] == [i for i, _ in want]
    for (_, line), (_, expected) in zip(got, want, strict=True):
        if len(expected) > limit:
            assert line == LineTooLong(len(expected))
        else:
            assert bytes(line) == expected


class _CountingStream(io.BytesIO):
    def __init__(self, data: bytes):
        super().__init__(data)
        self.served = 0

    def read(self, n: int | None = -1) -> bytes:
        out = super().read(n)
        self.served += len(out)
        return out

    read1 = read


def test_jsonl_is_streamed_not_read_whole():
    data = b"".join(g("s", i) + b"\n" for i in range(1, 50001))  # ~4.5 MB
    stream = _CountingStream(data)
    items = parse_jsonl_stream(stream, "s.jsonl", SourceConfig(path="s.jsonl"))
    first = next(items)
    assert first[1].problem_id == "s/1"
    assert stream.served <= 2 * CHUNK_BYTES < len(data)
    assert sum(1 for _ in items) == 49999


class _FailingStream(io.BytesIO):
    def __init__(self, data: bytes, fail_after: int):
        super().__init__(data)
        self._left = fail_after

    def read(self, n: int | None = -1) -> bytes:
        if self._left <= 0:
            raise OSError("disk went away")
        out = super().read(min(n if n and n > 0 else self._left, self._left))
        self._left -= len(out)
        return out

    read1 = read


def test_a_stream_failing_part_way_keeps_the_rows_before_it():
    lines = [g("f", i) for i in range(1, 101)]
    data = b"\n".join(lines) + b"\n"
    cut = len(b"\n".join(lines[:40])) + 1 + 10  # 10 bytes into line 41
    items = list(parse_jsonl_stream(_FailingStream(data, cut), "f.jsonl", SourceConfig(path="f.jsonl")))
    probs, errs = _split([i for _, i in items])
    assert [p.problem_id for p in probs] == [f"f/{i}" for i in range(1, 41)]
    (e,) = errs
    assert e.input == "f.jsonl:41" and "file unreadable at line 41 (10 bytes of it arrived" in e.reason


def test_max_line_bytes_is_described_and_validated():
    field = SourceConfig.model_fields["max_line_bytes"]
    assert field.default == 64 << 20 and "line" in (field.description or "")
    with pytest.raises(ValueError):
        SourceConfig(path="x.jsonl", max_line_bytes=0)


# ------------------------------------------------------------------------------------------- at scale


@pytest.mark.slow
def test_100k_rows_1pct_broken_pure_and_beam_lose_nothing(tmp_path):
    bench = _bench()
    path = tmp_path / "problems.jsonl"
    expected = bench.write_problems(path, 100_000)
    assert len(expected["good"]) == 99_000 and len(expected["bad"]) == 1_000
    want_errors = {f"{path}:{line}": kind for line, (kind, _) in expected["bad"].items()}

    probs, errs = _split(list(read_problems(SourceConfig(path=str(path)))))
    assert [p.problem_id for p in probs] == expected["good"]
    assert {e.input: e.kind for e in errs} == want_errors and len(errs) == 1_000
    for e in errs:
        _, fragment = expected["bad"][int(e.input.rsplit(":", 1)[1])]
        assert fragment in e.reason, (e.input, e.reason)

    problems, errors = bench.run_beam_read([SourceConfig(path=str(path))], tmp_path / "out")
    assert sorted(problems) == sorted(expected["good"])
    assert sorted((i, k, r) for i, k, r in errors) == sorted((e.input, e.kind, e.reason) for e in errs)

    rss = bench.measure("pure", path)
    assert rss["rows"] == 99_000 and rss["errors"] == 1_000
    # streaming: the 50 MB file is never held; what grows is the set of ids seen (~100k short strings)
    assert rss["peak_self_mib"] - rss["rss_before_mib"] < 48, rss


@pytest.mark.slow
def test_50mb_line_is_read_with_bounded_memory_or_rejected_over_the_limit(tmp_path):
    bench = _bench()
    path = tmp_path / "long-line.jsonl"
    expected = bench.write_long_line(path, 50)
    n = expected["huge_len"]

    probs, errs = _split(list(read_problems(SourceConfig(path=str(path)))))
    assert [p.problem_id for p in probs] == expected["good"]
    assert len(probs[1].prompt) == n
    (e,) = errs
    assert e.input == f"{path}:4" and e.kind == BAD and "malformed JSON" in e.reason and len(e.detail) <= 300
    del probs, errs

    small = SourceConfig(path=str(path), max_line_bytes=16 << 20)
    probs, errs = _split(list(read_problems(small)))
    assert [p.problem_id for p in probs] == ["bench/1", "bench/3", "bench/5"]
    assert [(x.input, x.kind) for x in errs] == [(f"{path}:2", BAD), (f"{path}:4", BAD)]
    assert all("line too long" in x.reason and "not parsed" in x.reason for x in errs)

    problems, errors = bench.run_beam_read([SourceConfig(path=str(path))], tmp_path / "out")
    assert problems == {"bench/1": problems["bench/1"], "bench/huge": n, "bench/3": problems["bench/3"],
                        "bench/5": problems["bench/5"]}
    assert [(i, k) for i, k, _ in errors] == [(f"{path}:4", BAD)]

    mb = n / (1 << 20)
    rss = bench.measure("pure", path)
    assert rss["peak_self_mib"] - rss["rss_before_mib"] < 4 * mb, rss  # the line held at most ~3 times
    rss = bench.measure("pure", path, max_line_bytes=16 << 20)
    assert rss["peak_self_mib"] - rss["rss_before_mib"] < 24, rss  # over the limit: never held


def test_random_corruption_of_a_jsonl_file_never_loses_an_untouched_line(tmp_path):
    rng = random.Random(14)
    lines = [g("r", i) for i in range(1, 301)]
    broken = set(rng.sample(range(300), 30))
    for i in broken:
        raw = bytearray(lines[i])
        raw[rng.randrange(len(raw))] = rng.choice(b'\x00\xff{}[]":,\\')
        lines[i] = bytes(raw)
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"\n".join(lines))
    probs, errs = _split(list(read_problems(SourceConfig(path=str(path)))))
    ids = {p.problem_id for p in probs}
    assert {f"r/{i + 1}" for i in range(300) if i not in broken} <= ids
    assert {int(e.input.rsplit(":", 1)[1]) - 1 for e in errs} <= broken
    assert len(probs) + len(errs) == 300

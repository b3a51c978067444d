"""Readers: plumline JSONL, foreign tables with a field map, HumanEval, MBPP, HF saved datasets; errors as
data."""

from __future__ import annotations

import gzip
import json
import string
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plumline.data_schemas import ErrorKind, ErrorRecord, Problem, Stage
from plumline.transforms.logic.readers import (
    SourceConfig,
    drop_duplicate_ids,
    humaneval_row_to_problem,
    infer_entry_point,
    iter_located,
    mbpp_row_to_problem,
    parse_jsonl_bytes,
    read_problems,
    split_check_function,
)


def _split(items):
    probs = [i for i in items if isinstance(i, Problem)]
    errs = [i for i in items if isinstance(i, ErrorRecord)]
    assert len(probs) + len(errs) == len(items)
    return probs, errs


GOOD = {"prompt": "def f(x):\n    \"\"\"Return x.\"\"\"\n", "entry_point": "f",
        "reference_solution": "def f(x):\n    return x\n", "given_tests": [{"code": "assert f(1) == 1"}]}


# ---------------------------------------------------------------------------------------------- JSONL


def test_plumline_jsonl_roundtrip_and_ids(write_jsonl):
    path = write_jsonl("mine.jsonl", [GOOD, {**GOOD, "prompt": "def g(): pass", "entry_point": "g",
                                             "problem_id": "keep/me"}])
    probs, errs = _split(list(read_problems(SourceConfig(path=str(path)))))
    assert errs == []
    assert [p.source for p in probs] == ["mine", "mine"]  # derived from the file name
    assert probs[0].problem_id == Problem.make_id("mine", GOOD["prompt"], "f")
    assert probs[1].problem_id == "keep/me"
    assert probs[0].given_tests[0].code == "assert f(1) == 1"


def test_each_bad_line_is_an_error_and_the_rest_is_read(write_jsonl):
    path = write_jsonl("bad.jsonl", [
        GOOD,                                   # 1 ok
        "{not json",                            # 2 malformed
        b"\xff\xfe{\"prompt\": \"x\"}",         # 3 not utf-8
        {**GOOD, "prompt": 42},                 # 4 mistyped
        {"entry_point": "f"},                   # 5 missing prompt
        "[1, 2]",                               # 6 not an object
        "",                                     # 7 blank: skipped silently
        {**GOOD, "prompt": "other", "given_tests": "assert f(2) == 2"},  # 8 ok, string test accepted
        {**GOOD, "prompt": "p3", "given_tests": [{"kind": "assert", "code": ""}]},  # 9 empty assert
        "[" * 100000,                           # 10 hostile nesting
        '{"prompt": ' + "9" * 5000 + "}",       # 11 int beyond Python's digit limit
    ])
    probs, errs = _split(list(read_problems(SourceConfig(path=str(path)))))
    assert len(probs) == 2
    assert probs[1].given_tests[0].code == "assert f(2) == 2"
    by_line = {e.input.rsplit(":", 1)[1]: e for e in errs}
    assert set(by_line) == {"2", "3", "4", "5", "6", "9", "10", "11"}
    assert all(e.stage == Stage.READ and e.kind == ErrorKind.BAD_INPUT and e.input.startswith(str(path))
               for e in errs)
    assert "malformed JSON" in by_line["2"].reason
    assert "not UTF-8" in by_line["3"].reason
    assert "prompt" in by_line["4"].reason and "expected str" in by_line["4"].reason
    assert "prompt" in by_line["5"].reason
    assert "JSON object" in by_line["6"].reason
    assert "code" in by_line["9"].reason
    assert len(by_line["10"].detail) <= 300


def test_empty_file_is_one_error(write_jsonl):
    path = write_jsonl("empty.jsonl", [])
    items = list(read_problems(SourceConfig(path=str(path))))
    assert len(items) == 1 and isinstance(items[0], ErrorRecord)
    assert "empty input" in items[0].reason and items[0].input.startswith(str(path))
    assert items[0].kind == ErrorKind.MISSING_INPUT


def test_missing_file_and_empty_glob(tmp_path):
    items = list(read_problems(SourceConfig(path=str(tmp_path / "nope.jsonl"))))
    assert len(items) == 1 and "no such file" in items[0].reason
    items += list(read_problems(SourceConfig(path=str(tmp_path / "*.jsonl"))))
    assert len(items) == 2 and "no file matches" in items[1].reason
    assert all(e.stage == Stage.READ and e.kind == ErrorKind.MISSING_INPUT for e in items)


def test_field_map_and_missing_column(write_jsonl):
    rows = [{"question": "Add numbers", "solution": "def add(a, b):\n    return a + b", "fn": "add",
             "difficulty": "easy"}]
    path = write_jsonl("foreign.jsonl", rows)
    cfg = SourceConfig(path=str(path), field_map={"prompt": "question", "reference_solution": "solution",
                                                 "entry_point": "fn"}, source="foreign")
    (p,) = read_problems(cfg)
    assert isinstance(p, Problem)
    assert p.prompt == "Add numbers" and p.entry_point == "add" and p.source == "foreign"
    assert p.metadata == {"difficulty": "easy"}  # extra columns fold into metadata by default
    bad = SourceConfig(path=str(path), field_map={"prompt": "no_such_column"})
    (e,) = read_problems(bad)
    assert isinstance(e, ErrorRecord) and "no_such_column" in e.reason and "does not exist" in e.reason
    strict = SourceConfig(path=str(path), field_map={"prompt": "question"}, extra_columns="error")
    (e,) = read_problems(strict)
    assert isinstance(e, ErrorRecord) and "unknown column" in e.reason


def test_duplicate_ids_keep_first_and_name_both(write_jsonl):
    a = write_jsonl("a.jsonl", [{**GOOD, "problem_id": "X"}, {**GOOD, "problem_id": "X", "prompt": "later"}])
    b = write_jsonl("b.jsonl", [{**GOOD, "problem_id": "X", "prompt": "other file"}])
    items = list(read_problems([SourceConfig(path=str(a)), SourceConfig(path=str(b))]))
    probs, errs = _split(items)
    assert [p.prompt for p in probs] == [GOOD["prompt"]]
    assert len(errs) == 2
    for e in errs:
        assert "duplicate problem id 'X'" in e.reason and f"{a}:1" in e.reason
        assert e.kind == ErrorKind.DUPLICATE_ID and e.problem_id == "X"
    assert {e.input for e in errs} == {f"{a}:2", f"{b}:1"}


def test_duplicate_dedupe_is_order_independent(write_jsonl):
    a = write_jsonl("a.jsonl", [{**GOOD, "problem_id": "X"}, {**GOOD, "problem_id": "X", "prompt": "later"}])
    located = list(iter_located(SourceConfig(path=str(a))))
    fwd = [(str(l), type(i).__name__) for l, i in drop_duplicate_ids(located)]
    rev = [(str(l), type(i).__name__) for l, i in drop_duplicate_ids(reversed(located))]
    assert fwd == rev == [(f"{a}:1", "Problem"), (f"{a}:2", "ErrorRecord")]


def test_limit_and_gzip(tmp_path):
    path = tmp_path / "many.jsonl.gz"
    with gzip.open(path, "wt") as f:
        for i in range(10):
            f.write(json.dumps({**GOOD, "prompt": f"p{i}"}) + "\n")
    probs, errs = _split(list(read_problems(SourceConfig(path=str(path), limit=3))))
    assert errs == [] and [p.prompt for p in probs] == ["p0", "p1", "p2"]
    assert probs[0].source == "many"


def test_glob_reads_files_in_sorted_order(write_jsonl, tmp_path):
    write_jsonl("b.jsonl", [{**GOOD, "prompt": "b"}])
    write_jsonl("a.jsonl", [{**GOOD, "prompt": "a"}])
    probs, _ = _split(list(read_problems(SourceConfig(path=str(tmp_path / "*.jsonl"), source="s"))))
    assert [p.prompt for p in probs] == ["a", "b"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_crash(data):
    items = [i for _, i in parse_jsonl_bytes(data, "fuzz.jsonl", SourceConfig(path="fuzz.jsonl"))]
    for it in items:
        assert isinstance(it, (Problem, ErrorRecord))
        if isinstance(it, ErrorRecord):
            assert it.stage == "read" and it.input.startswith("fuzz.jsonl") and it.reason


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["prompt", "entry_point", "given_tests", "metadata", "problem_id",
                                        "source", "reference_solution", "junk"]),
                       st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                                    lambda c: (st.lists(c, max_size=3)
                                               | st.dictionaries(st.text(max_size=5), c, max_size=3)),
                                    max_leaves=8)))
def test_arbitrary_rows_never_crash(row):
    line = json.dumps(row).encode()
    for _, it in parse_jsonl_bytes(line, "rows.jsonl", SourceConfig(path="rows.jsonl")):
        assert isinstance(it, (Problem, ErrorRecord))


# ---------------------------------------------------------------------------------------------- Parquet / HF


def test_parquet_rows_and_errors(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"question": ["q1", None, "q3"], "fn": ["f", "g", "h"]}), path)
    cfg = SourceConfig(path=str(path), field_map={"prompt": "question", "entry_point": "fn"})
    items = list(read_problems(cfg))
    probs, errs = _split(items)
    assert [p.prompt for p in probs] == ["q1", "q3"]
    assert len(errs) == 1 and errs[0].input == f"{path}#1" and "prompt" in errs[0].reason


def test_not_a_parquet_file(tmp_path):
    path = tmp_path / "t.parquet"
    path.write_bytes(b"this is not parquet")
    (e,) = read_problems(SourceConfig(path=str(path)))
    assert isinstance(e, ErrorRecord) and "Parquet" in e.reason


def test_hf_disk_dataset_and_dict(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = {"prompt": ["p1", "p2"], "entry_point": ["f", "g"]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "ds"))
    probs, errs = _split(list(read_problems(SourceConfig(path=str(tmp_path / "ds"), source="hf"))))
    assert errs == [] and [p.prompt for p in probs] == ["p1", "p2"]
    validation = datasets.Dataset.from_dict({"prompt": ["v"], "entry_point": ["v"]})
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows), "validation": validation})
    dd.save_to_disk(str(tmp_path / "dd"))
    probs, errs = _split(list(read_problems(SourceConfig(path=str(tmp_path / "dd"), split="validation"))))
    assert errs == [] and [p.prompt for p in probs] == ["v"]
    (e,) = read_problems(SourceConfig(path=str(tmp_path / "dd")))  # two splits, none named test
    assert isinstance(e, ErrorRecord) and "split" in e.reason


# ---------------------------------------------------------------------------------------------- HumanEval


def test_bundled_humaneval_all_164():
    probs, errs = _split(list(read_problems(SourceConfig(path="bundled:humaneval"))))
    assert errs == [] and len(probs) == 164
    p0 = probs[0]
    assert p0.problem_id == "HumanEval/0" and p0.source == "humaneval"
    assert p0.reference_solution.startswith(p0.prompt)
    assert p0.metadata["humaneval_metadata"] == {"author": "jt", "dataset": "test"}
    assert len(p0.given_tests) == 7
    assert all("candidate" not in t.code and "has_close_elements(" in t.code for t in p0.given_tests)
    # no trivial `assert True` snippets survive
    assert not any(t.code.strip().startswith("assert True") for p in probs for t in p.given_tests)


def test_humaneval_reference_solutions_pass_their_split_tests():
    """Trusted data (the dataset's own canonical solutions), so plain exec is acceptable here."""
    probs, _ = _split(list(read_problems(SourceConfig(path="bundled:humaneval", limit=40))))
    for p in probs:
        for t in p.given_tests:
            ns: dict = {}
            exec(p.reference_solution, ns)  # noqa: S102
            exec(t.code, ns)  # noqa: S102


def test_split_check_keeps_setup_local_and_helpers():
    code = (
        "import math\n"
        "def helper(x):\n    return x * 2\n"
        "METADATA = {'k': 1}\n"
        "def check(fn):\n"
        "    assert fn(1) == 2\n"
        "    str = 'shadow'\n"
        "    assert fn(2) == helper(2), str\n"
        "    for i in range(3):\n        assert fn(i) == 2 * i\n"
        "    assert True\n"
        "    print('done')\n"
    )
    snippets, meta = split_check_function(code, "double")
    assert meta == {"k": 1}
    assert len(snippets) == 3
    assert snippets[0].endswith("assert double(1) == 2")
    assert snippets[0].startswith("import math\ndef helper")
    assert "def _plumline_check():" in snippets[1] and "str = 'shadow'" in snippets[1]
    assert "str = 'shadow'" in snippets[2]  # setup carried to later snippets
    double_src = "def double(x):\n    return 2 * x\n"
    for s in snippets:
        ns: dict = {}
        exec(double_src, ns)  # noqa: S102
        exec(s, ns)  # noqa: S102
        assert "str" not in ns  # the shadowing assignment stayed local


@pytest.mark.parametrize("code,msg", [("def check(:\n", "does not parse"), ("x = 1\n", "no 'def check"),
                                      ("def check():\n    pass\n", "no argument")])
def test_split_check_bad_input(code, msg):
    with pytest.raises(ValueError, match=msg):
        split_check_function(code, "f")


def test_humaneval_row_errors():
    cfg = SourceConfig(format="humaneval")
    with pytest.raises(Exception, match="entry_point"):
        humaneval_row_to_problem({"task_id": "t", "prompt": "p", "entry_point": "not valid",
                                  "test": "def check(c): assert c()"}, cfg, "x:1")
    with pytest.raises(Exception, match="test"):
        humaneval_row_to_problem({"task_id": "t", "prompt": "p", "entry_point": "f",
                                  "test": "def check(c): pass"}, cfg, "x:1")


# ---------------------------------------------------------------------------------------------- MBPP


MBPP_ROW = {"task_id": 11,
            "text": "Write a python function to remove first and last occurrence of a given character.",
            "code": "def helper(s):\n    return s\n\ndef remove_Occ(s, ch):\n"
                    "    s = s.replace(ch, '', 1)\n    return s[::-1].replace(ch, '', 1)[::-1]\n",
            "test_list": ["assert remove_Occ(\"hello\",\"l\") == \"heo\"",
                          "assert remove_Occ(\"abcda\",\"a\") == \"bcd\""],
            "test_imports": ["import math"]}


def test_mbpp_row(write_jsonl):
    path = write_jsonl("mbpp.jsonl", [MBPP_ROW, {**MBPP_ROW, "task_id": 12, "test_list": []}])
    probs, errs = _split(list(read_problems(SourceConfig(path=str(path), format="mbpp"))))
    (p,) = probs
    assert p.problem_id == "MBPP/11" and p.entry_point == "remove_Occ" and p.source == "mbpp"
    assert "Your code should pass this test:" in p.prompt and "remove_Occ(" in p.prompt
    assert p.given_tests[0].code.startswith("import math\n")
    assert len(p.given_tests) == 2 and len(p.example_tests) == 1
    for t in p.given_tests:
        ns: dict = {}
        exec(p.reference_solution, ns)  # noqa: S102
        exec(t.code, ns)  # noqa: S102
    assert len(errs) == 1 and "test_list" in errs[0].reason and errs[0].input == f"{path}:2"


def test_mbpp_prompt_column_and_no_example():
    row = {k: v for k, v in MBPP_ROW.items() if k != "text"} | {"prompt": "Remove chars."}
    p = mbpp_row_to_problem(row, SourceConfig(format="mbpp", mbpp_example_in_prompt=False), "x:1")
    assert p.prompt == "Remove chars." and p.example_tests == ()


def test_infer_entry_point():
    assert infer_entry_point("def a(): pass\ndef b(): pass", ["assert b() == 1"]) == "b"
    assert infer_entry_point("def a(): pass\ndef b(): pass", ["assert len([]) == 0"]) == "b"
    assert infer_entry_point("def broken(:", ["assert broken(1)"]) == "broken"
    with pytest.raises(Exception, match="entry point"):
        infer_entry_point("x = 1", ["assert len(x) == 1"])


# ---------------------------------------------------------------------------------------------- misc


def test_unknown_format_and_bundled_name(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("a,b\n")
    (e,) = read_problems(SourceConfig(path=str(p)))
    assert isinstance(e, ErrorRecord) and "format" in e.reason
    (e,) = read_problems(SourceConfig(path="bundled:nope"))
    assert isinstance(e, ErrorRecord) and "unknown bundled" in e.reason and e.kind == ErrorKind.BAD_INPUT


def test_source_config_rejects_unknown_keys():
    with pytest.raises(Exception, match="extra"):
        SourceConfig(path="x", formats="jsonl")  # type: ignore[call-arg]
    for name, f in SourceConfig.model_fields.items():
        assert f.description, name


def test_large_file_is_fast(tmp_path):
    path = tmp_path / "big.jsonl"
    with path.open("w") as f:
        for i in range(20000):
            prompt = "".join(string.ascii_letters[(i + j) % 52] for j in range(8)) + str(i)
            f.write(json.dumps({**GOOD, "prompt": prompt}) + "\n")
    probs, errs = _split(list(read_problems(SourceConfig(path=str(path)))))
    assert len(probs) == 20000 and errs == []
    assert len({p.problem_id for p in probs}) == 20000


def test_path_with_colons_is_reported_whole(tmp_path):
    d = tmp_path / "a:b"
    d.mkdir()
    path = d / "x.jsonl"
    path.write_text("{oops\n")
    (e,) = read_problems(SourceConfig(path=str(path)))
    assert e.input == f"{path}:1"
    assert Path(str(path)).exists()

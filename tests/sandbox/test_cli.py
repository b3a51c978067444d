"""``python -m plumline.sandbox`` / ``plumline exec``: single runs and streaming batches."""

import json
import subprocess
import sys

from plumline.sandbox.cli import ExecExit, exec_command


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "plumline.sandbox", *args], check=False, capture_output=True,
                          text=True, timeout=timeout)


def test_single_json(tmp_path):
    (tmp_path / "sol.py").write_text("def add(a, b):\n    return a + b\n")
    (tmp_path / "t.py").write_text("import math\nassert add(1, 2) == 3\nx = 5\nassert add(x, 1) == 6\n"
                                   "assert add(0, 0) == 1\n")
    p = _cli("--code", str(tmp_path / "sol.py"), "--tests", str(tmp_path / "t.py"), "--json")
    assert p.returncode == 1, p.stderr
    obj = json.loads(p.stdout.strip().splitlines()[-1])
    assert obj["outcome"] == "failed" and obj["passed"] == 2 and obj["total"] == 3
    assert abs(obj["pass_ratio"] - 2 / 3) < 1e-9 and obj["isolation_tier"]
    assert [t["status"] for t in obj["test_results"]] == ["passed", "passed", "failed"]


def test_single_human_and_usage(tmp_path, capsys):
    (tmp_path / "sol.py").write_text("def f():\n    return 1\n")
    (tmp_path / "t.py").write_text("assert f() == 1\n")
    assert exec_command(tmp_path / "sol.py", tmp_path / "t.py", False, None, None, None, None, None) == 0
    assert "outcome: passed" in capsys.readouterr().out
    usage = ExecExit.USAGE
    sol, tests = tmp_path / "sol.py", tmp_path / "t.py"
    assert exec_command(None, None, False, None, None, None, None, None) == usage
    assert exec_command(tmp_path / "missing.py", tests, False, None, None, None, None, None) == usage
    assert exec_command(sol, tests, False, None, None, None, -1, None) == usage
    assert exec_command(None, None, False, tmp_path / "jobs.jsonl", None, None, None, None) == usage  # no out


def test_exit_codes_and_help():
    assert [(c.name, int(c)) for c in ExecExit] == [("PASSED", 0), ("NOT_PASSED", 1), ("USAGE", 2)]
    p = _cli("--help")
    assert p.returncode == 0
    text = " ".join(p.stdout.split())
    for opt in ("--code", "--tests", "--json", "--batch", "--out", "--workers", "--timeout", "--memory-mb",
                "--entry-point"):
        assert opt in text
    assert "Exit codes: 0 passed every test" in text and "2 bad arguments" in text
    assert _cli("--no-such-option").returncode == ExecExit.USAGE


def test_mounted_on_plumline(tmp_path):
    from plumline.pipeline.cli import app
    from typer.testing import CliRunner

    (tmp_path / "s.py").write_text("def f():\n    return 2\n")
    (tmp_path / "t.py").write_text("assert f() == 1\n")
    r = CliRunner().invoke(app, ["exec", "--code", str(tmp_path / "s.py"), "--tests", str(tmp_path / "t.py")])
    assert r.exit_code == ExecExit.NOT_PASSED, r.output
    assert "outcome: failed" in r.output


def test_batch_streams_and_survives_bad_lines(tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    lines = [
        json.dumps({"id": "a", "code": "def f():\n    return 1\n", "tests": ["assert f() == 1"]}),
        "not json",
        json.dumps({"id": "b", "code": "while True: pass", "tests": ["assert True"]}),
        json.dumps({"id": "c", "code": 5, "tests": []}),
        json.dumps({"id": "d", "code": "print(input())",
                    "tests": [{"kind": "io", "stdin": "hi", "expected_stdout": "hi"}]}),
        json.dumps({"id": "e", "code": "x=1", "tests": [{"kind": "bogus"}]}),
        "",
    ]
    jobs.write_text("\n".join(lines) + "\n")
    out = tmp_path / "res.jsonl"
    p = _cli("--batch", str(jobs), "--out", str(out), "--workers", "2", "--timeout", "2")
    assert p.returncode == ExecExit.NOT_PASSED  # malformed lines were reported
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    by_line = {r["line"]: r for r in rows}
    assert set(by_line) == {1, 2, 3, 4, 5, 6}
    assert by_line[1]["id"] == "a" and by_line[1]["outcome"] == "passed"
    assert "line 2" in by_line[2]["error"]
    assert by_line[3]["outcome"] == "timeout"
    assert "line 4" in by_line[4]["error"] and "code" in by_line[4]["error"]
    assert by_line[5]["outcome"] == "passed"
    assert "tests[0]" in by_line[6]["error"]


def test_typer_mount(tmp_path):
    import typer
    from plumline.sandbox.cli import register
    from typer.testing import CliRunner

    app = typer.Typer()
    register(app)

    @app.command()
    def other() -> None:  # a second command, so "exec" is a real subcommand
        pass

    (tmp_path / "s.py").write_text("def f():\n    return 1\n")
    (tmp_path / "t.py").write_text("assert f() == 1\n")
    r = CliRunner().invoke(app, ["exec", "--code", str(tmp_path / "s.py"), "--tests", str(tmp_path / "t.py"),
                                 "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.strip().splitlines()[-1])["outcome"] == "passed"


def test_entry_point_that_shadows_a_builtin(tmp_path):
    (tmp_path / "sol.py").write_text("def max(xs):\n    return -1\n")
    (tmp_path / "t.py").write_text("assert max([1, 2]) == -1\n")
    args = ("--code", str(tmp_path / "sol.py"), "--tests", str(tmp_path / "t.py"), "--json")
    assert _cli(*args).returncode == 0  # as in plain Python, the tests call the candidate's max
    assert _cli(*args, "--entry-point", "max").returncode == 0
    # With an entry point, only it may shadow a builtin: a helper named max does not reach the tests.
    (tmp_path / "helper.py").write_text(
        "def max(xs):\n    return -1\n\ndef top(xs):\n    return sorted(xs)[-1]\n")
    (tmp_path / "t2.py").write_text("assert top([1, 2]) == max([1, 2])\n")
    helper = ("--code", str(tmp_path / "helper.py"), "--tests", str(tmp_path / "t2.py"), "--json")
    assert _cli(*helper).returncode == 1  # plain Python: the test's max is the candidate's (-1)
    assert _cli(*helper, "--entry-point", "top").returncode == 0  # the test's max is the builtin
    bad = _cli(*args, "--entry-point", "not-a-name")
    assert bad.returncode == ExecExit.USAGE and "identifier" in bad.stderr
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"id": "a", "code": "def max(xs):\n    return -1\n",
                                "tests": ["assert max([3]) == -1"], "entry_point": "max"}) + "\n"
                    + json.dumps({"id": "b", "code": "x = 1\n", "tests": [], "entry_point": 5}) + "\n")
    out = tmp_path / "res.jsonl"
    _cli("--batch", str(jobs), "--out", str(out), "--workers", "1")
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows["a"]["outcome"] == "passed" and "entry_point" in rows[None]["error"]

"""The same config and seeds give the same dataset, row for row, across runs and worker counts."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from plumline.data_schemas import comparable_rows
from plumline.pipeline.config import load_config
from plumline.pipeline.round import run_rounds
from plumline.pipeline.validate import validate_run


def _run(tmp_path: Path, url: str, name: str, workers: int) -> Path:
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(f"""
name: {name}
out_dir: {tmp_path / 'runs'}
sources: [{{path: bundled:easy, limit: 5}}]
policy: {{kind: openai, model: canned, base_url: "{url}", max_retries: 1}}
sampling: {{n: 4, max_tokens: 64, batch_size: 2}}
tests: {{tests_per_problem: 4, given_tests_role: eval, batch_size: 2}}
validation: {{oracle: true, agreement: true, min_kept_tests: 1}}
export: {{jsonl: true}}
beam: {{cpu_workers: {workers}}}
sandbox: {{workers: 1}}
""")
    config = load_config(cfg)
    run_rounds(config, Path(config.out_dir) / name)
    return Path(config.out_dir) / name / "round-000"


@pytest.mark.slow
def test_two_runs_with_one_and_two_workers_write_identical_files(tmp_path, canned):
    _, url = canned
    one = _run(tmp_path, url, "one", workers=1)
    two = _run(tmp_path, url, "two", workers=2)
    files = sorted(p.name for p in one.glob("*.parquet"))
    assert files == sorted(p.name for p in two.glob("*.parquet")) and "dpo.parquet" in files
    assert all(pq.read_table(one / f).num_rows > 0 for f in ("dpo.parquet", "samples.parquet"))
    for name in files:
        a, b = pq.read_table(one / name), pq.read_table(two / name)
        assert a.schema.equals(b.schema) and comparable_rows(a) == comparable_rows(b), name
    assert validate_run(one.parent) == [] and validate_run(two.parent) == []
    # Every file without time measurements in it is identical to the byte (the JSONL copies too).
    for name in ("problems", "samples", "tests", "dpo", "kto", "critic"):
        assert pq.read_table(one / f"{name}.parquet").equals(pq.read_table(two / f"{name}.parquet")), name
        assert (one / f"{name}.jsonl").read_bytes() == (two / f"{name}.jsonl").read_bytes(), name

"""Fixtures of the pipeline tests: a test double for a remote model, the canned OpenAI-compatible
server of bench/canned_openai.py (known right and wrong answers for the bundled easy problems), and
one small round run against it (``canned_round``)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "canned_openai", Path(__file__).resolve().parents[2] / "bench" / "canned_openai.py")
canned_openai = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(canned_openai)
CannedModel, serve, load_easy, wrong_test = (canned_openai.CannedModel, canned_openai.serve,
                                             canned_openai.load_easy, canned_openai.wrong_test)


@pytest.fixture(autouse=True)
def _beam_temp_folders_removed(monkeypatch):
    """Beam makes a temp folder for every Pipeline and removes it only when the pipeline runs; the
    pipelines a test builds without running (Dataflow jobs checked offline, Dask translations) would
    leave theirs in the machine's temp folder. Only this test's own pipelines' folders are removed."""
    from apache_beam import pipeline as beam_pipeline

    made: list[str] = []
    init = beam_pipeline.Pipeline.__init__

    def recording_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self.local_tempdir)

    monkeypatch.setattr(beam_pipeline.Pipeline, "__init__", recording_init)
    yield
    for folder in made:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def canned():
    """(CannedModel, base_url) of a canned OpenAI-compatible server on 127.0.0.1."""
    model = CannedModel()
    server, url = serve(model)
    yield model, url
    server.shutdown()


# One round on 5 bundled easy problems with the canned policy: tests written, validated (oracle and
# agreement), samples executed, pairs exported (with JSON-lines copies).
CANNED_ROUND = """
name: {name}
out_dir: {out}
sources: [{{path: bundled:easy, limit: 5}}]
policy: {{kind: openai, model: canned, base_url: "{url}", max_retries: 1}}
sampling: {{n: 4, max_tokens: 64, batch_size: 2}}
tests: {{tests_per_problem: 4, given_tests_role: eval, batch_size: 2}}
validation: {{oracle: true, agreement: true, min_kept_tests: 1}}
export: {{jsonl: true}}
beam: {{cpu_workers: {workers}, runner: {runner}}}
sandbox: {{workers: 1}}
"""


@pytest.fixture
def canned_round(tmp_path, canned):
    """``canned_round(name, workers=2, runner="FnApiRunner")``: run ``CANNED_ROUND`` as run ``name``
    under ``tmp_path/runs`` and return its ``round-000`` folder (the same config but for the Beam
    workers and runner, so two runs can be compared file by file)."""
    _, url = canned

    def run(name: str, *, workers: int = 2, runner: str = "FnApiRunner") -> Path:
        from plumline.pipeline.config import load_config
        from plumline.pipeline.round import run_rounds

        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(CANNED_ROUND.format(name=name, out=tmp_path / "runs", url=url, workers=workers,
                                           runner=runner))
        config = load_config(cfg)
        run_dir = Path(config.out_dir) / config.name
        run_rounds(config, run_dir)
        return run_dir / "round-000"

    return run

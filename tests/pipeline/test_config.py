"""Config loading: YAML + pydantic, --set overrides, errors naming the field and the file."""

from pathlib import Path

import pytest
import yaml
from plumline.data_schemas.overrides import OverrideError, parse_override
from plumline.pipeline.config import (
    ConfigError,
    RunConfig,
    config_problems,
    describe_fields,
    dump_config,
    load_config,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", ["demo.yaml", "humaneval.yaml", "tiny.yaml"])
def test_shipped_configs_validate(name):
    cfg = load_config(CONFIGS / name)
    assert cfg.sources
    # The resolved config round-trips: what a run writes to config.yaml loads back unchanged.
    again = RunConfig.model_validate(yaml.safe_load(dump_config(cfg)))
    assert again == cfg


def test_overrides_apply_with_yaml_types(tmp_path):
    cfg = load_config(CONFIGS / "demo.yaml", ["sampling.n=3", "sampling.temperature=0.5",
                                              "sampling.greedy=false", "sources.0.limit=7",
                                              "prompt.system_prompt=Be brief."])
    assert cfg.sampling.n == 3 and cfg.sampling.temperature == 0.5 and cfg.sampling.greedy is False
    assert cfg.sources[0].limit == 7 and cfg.prompt.system_prompt == "Be brief."


def test_unknown_field_names_field_and_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources: [{path: x.jsonl}]\npolicy: {model: m}\nsampling:\n  nn: 3\n")
    with pytest.raises(ConfigError) as exc:
        load_config(bad)
    assert "sampling.nn" in str(exc.value) and str(bad) in str(exc.value)


def test_mistyped_value_names_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources: [{path: x.jsonl}]\nsampling:\n  n: many\n")
    with pytest.raises(ConfigError, match=r"sampling\.n"):
        load_config(bad)


def test_override_errors():
    with pytest.raises(OverrideError, match="dotted.key=value"):
        parse_override("sampling.n")
    with pytest.raises(ConfigError, match="dotted.key=value"):
        load_config(CONFIGS / "demo.yaml", ["sampling.n"])
    with pytest.raises(ConfigError, match="sampling.n"):
        load_config(CONFIGS / "demo.yaml", ["sampling.n=-1"])
    with pytest.raises(ConfigError, match="list index"):
        load_config(CONFIGS / "demo.yaml", ["sources.9.limit=1"])


def test_missing_sources_and_files(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="sources"):
        load_config(empty)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    notyaml = tmp_path / "list.yaml"
    notyaml.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(notyaml)


def test_relative_source_paths_resolve_against_config_folder(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "p.jsonl").write_text("{}\n")
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("sources: [{path: data/p.jsonl}]\npolicy: {model: m}\n")
    cfg = load_config(cfg_file)
    assert Path(cfg.sources[0].path) == tmp_path / "data" / "p.jsonl"


def test_layout_has_one_home_per_knob():
    """The sections of the target layout; no seed but the run's, no knob in two sections."""
    assert list(RunConfig.model_fields) == [
        "name", "out_dir", "rounds", "seed", "sources", "policy", "prompt", "sampling", "tests", "validation",
        "sandbox", "dpo", "kto", "critic", "export", "eval", "prm", "training", "beam"]
    names = [name for name, _, _ in describe_fields()]
    seeds = [n for n in names if n.rsplit(".", 1)[-1] == "seed"]
    assert seeds == ["seed"]
    assert "sampling.instruction" not in names and "policy.system_prompt" not in names
    assert {"prompt.instruction", "prompt.system_prompt", "kto.rows.enabled", "critic.rows.enabled",
            "export.format", "export.jsonl", "training.method", "dpo.pairs.strategy"} <= set(names)
    assert not [n for n in names if n.startswith("dpo.pairs.") and ("kto" in n or "format" in n)]


def test_every_field_is_listed_and_described():
    rows = describe_fields()
    names = {r[0] for r in rows}
    assert len(names) == len(rows)  # no field twice
    expected = {
        "sampling.n", "policy.model", "sandbox.limits", "sandbox.limits.timeout_s",  # a nested dataclass
        "sandbox.limits.memory_mb",
        "sources", "sources[*].path", "sources[*].format", "sources[*].limit",  # list items
        "tests.writer", "tests.writer.model", "tests.writer.kind",  # an optional section (X | None)
        "dpo.train", "dpo.train.beta", "dpo.train.save", "dpo.train.lora", "dpo.train.lora.r",
        "dpo.train.lora.merge_on_save", "kto.train.desirable_weight", "kto.train.lora.alpha",
        "kto.rows.max_undesirable_ratio", "critic.rows.dedupe", "beam.runner",
        "critic.rows.include_references", "critic.train.class_weights", "critic.train.eval_fraction",
    }
    assert expected <= names, sorted(expected - names)
    undocumented = [name for name, _, desc in rows if not desc.strip()]
    assert undocumented == []
    defaults = {name: default for name, default, _ in rows}
    assert defaults["tests.writer"] == "None" and defaults["dpo.train.lora"] == "None"
    assert defaults["sandbox.limits.timeout_s"] == "10.0" and defaults["sampling.n"] == "8"


def test_cli_config_fields_lists_nested_fields():
    from plumline.pipeline.cli import app
    from typer.testing import CliRunner

    res = CliRunner().invoke(app, ["config", "fields", "dpo.train.lora"])
    assert res.exit_code == 0, res.output
    assert "dpo.train.lora.merge_on_save" in res.output


_BASE = {"sources": [{"path": "bundled:easy"}], "policy": {"model": "m"}}


def _problems(**sections) -> list[tuple[str, str]]:
    return config_problems(RunConfig.model_validate({**_BASE, **sections}))


@pytest.mark.parametrize("sections, field", [
    ({"rounds": 2, "training": {"method": "dpo"}, "dpo": {"train": {"save": False}}}, "dpo.train.save"),
    ({"rounds": 3, "training": {"method": "kto"}, "kto": {"train": {"save": False}}}, "kto.train.save"),
    ({"rounds": 2, "training": {"method": "dpo"}, "dpo": {"train": {"lora": {"merge_on_save": False}}}},
     "dpo.train.lora.merge_on_save"),
    ({"training": {"method": "kto"}, "kto": {"rows": {"enabled": False}}}, "kto.rows.enabled"),
    ({"training": {"method": "dpo"}, "sampling": {"n": 1, "greedy": False}}, "sampling.n"),
    ({"training": {"method": "dpo"}, "sampling": {"n": 1}, "dpo": {"pairs": {"include_greedy": False}}},
     "sampling.n"),
    ({"training": {"method": "dpo"}, "sampling": {"temperature": 0}}, "sampling.temperature"),
    ({"export": {"format": "conversational"}, "policy": {"model": "m", "chat": False}}, "export.format"),
    ({"policy": {"model": "m", "max_model_len": 512}, "sampling": {"max_tokens": 512},
      "tests": {"max_tokens": 64}}, "sampling.max_tokens"),
    ({"policy": {"model": "m", "max_model_len": 600}}, "tests.max_tokens"),  # the policy writes the tests
    ({"tests": {"writer": {"model": "w", "max_model_len": 100}, "max_tokens": 200}}, "tests.max_tokens"),
    ({"tests": {"enabled": False, "use_examples": False, "given_tests_role": "eval"}}, "tests.enabled"),
    ({"policy": {"model": " "}}, "policy.model"),
])
def test_configs_that_cannot_work_are_named(sections, field):
    assert [f for f, _ in _problems(**sections)] == [field]


@pytest.mark.parametrize("sections", [
    {"rounds": 1, "training": {"method": "dpo"}, "dpo": {"train": {"save": False}}},  # a dry run
    {"rounds": 2, "training": {"method": "none"}, "dpo": {"train": {"save": False}}},  # not training
    {"rounds": 2, "training": {"method": "dpo"}, "kto": {"train": {"save": False}}},  # the other method
    {"training": {"method": "dpo"}, "kto": {"rows": {"enabled": False}}},
    {"training": {"method": "dpo"}, "sampling": {"n": 1, "greedy": True}},  # n + greedy = 2 candidates
    {"sampling": {"temperature": 0}},
    {"export": {"format": "conversational"}},  # chat: auto
    {"tests": {"enabled": False}},  # example tests remain
    {"tests": {"enabled": False, "use_examples": False, "given_tests_role": "train"}},
])
def test_configs_that_can_work_pass(sections):
    assert _problems(**sections) == []


def test_load_config_rejects_before_any_work_naming_field_and_file(tmp_path):
    bad = tmp_path / "loop.yaml"
    bad.write_text("sources: [{path: bundled:easy}]\npolicy: {model: m}\nrounds: 2\n"
                   "training: {method: dpo}\ndpo: {train: {save: false}}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(bad)
    assert "dpo.train.save" in str(exc.value) and str(bad) in str(exc.value)
    with pytest.raises(ConfigError, match="kto.rows.enabled") as exc:
        load_config(CONFIGS / "demo.yaml", ["training.method=kto", "kto.rows.enabled=false"])
    assert "demo.yaml" in str(exc.value) and "--set" in str(exc.value)


def test_a_run_configs_prm_train_section_is_what_plumline_train_prm_reads(tmp_path):
    """prm holds the labelling knobs flat and the trainer's under prm.train (like critic.train)."""
    from plumline.trainers.config import load_config as load_trainer_config
    from plumline.trainers.prm import PrmTrainingConfig

    path = tmp_path / "run.yaml"
    path.write_text("sources: [{path: bundled:easy}]\npolicy: {model: m}\n"
                    "prm: {enabled: true, k: 2, train: {max_steps: 7}}\n")
    run = load_config(path)
    assert run.prm.k == 2 and run.prm.train.max_steps == 7
    assert load_trainer_config(PrmTrainingConfig, "prm", path).max_steps == 7

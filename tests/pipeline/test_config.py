"""Config loading: YAML + pydantic, --set overrides, errors naming the field and the file."""

from pathlib import Path

import pytest
import yaml
from plumline.data_schemas.overrides import OverrideError, parse_override
from plumline.pipeline.config import (
    ConfigError,
    RunConfig,
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
                                              "policy.system_prompt=null"])
    assert cfg.sampling.n == 3 and cfg.sampling.temperature == 0.5 and cfg.sampling.greedy is False
    assert cfg.sources[0].limit == 7 and cfg.policy.system_prompt is None


def test_unknown_field_names_field_and_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources: [{path: x.jsonl}]\nsampling:\n  nn: 3\n")
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
    cfg_file.write_text("sources: [{path: data/p.jsonl}]\n")
    cfg = load_config(cfg_file)
    assert Path(cfg.sources[0].path) == tmp_path / "data" / "p.jsonl"


def test_section_hash_tracks_only_named_sections():
    a = load_config(CONFIGS / "demo.yaml")
    b = load_config(CONFIGS / "demo.yaml", ["pairing.max_pairs_per_problem=2"])
    assert a.section_hash("sampling") == b.section_hash("sampling")
    assert a.section_hash("pairing") != b.section_hash("pairing")


def test_every_field_is_described():
    rows = describe_fields()
    names = {r[0] for r in rows}
    assert {"sampling.n", "policy.model", "pairing.strategy", "sandbox.limits"} <= names
    undocumented = [name for name, _, desc in rows if not desc and not name.startswith("sandbox.limits.")]
    assert undocumented == []

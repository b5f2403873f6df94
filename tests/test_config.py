"""Config loading: strict keys, types, YAML errors, overrides, presets."""

from pathlib import Path

import pytest

from acodm_ray.config import ConfigError, load_config

PRESETS = sorted(Path("configs").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_presets_load(preset):
    cfg = load_config(preset)
    assert cfg.train.steps > 0


def test_overrides_and_defaults():
    cfg = load_config(
        "configs/tiny.yaml", ["train.steps=3", "mixer.name=uniform", "train.betas=[0.8, 0.9]"]
    )
    assert cfg.train.steps == 3 and cfg.mixer.name == "uniform" and cfg.train.betas == (0.8, 0.9)


def test_scientific_notation_is_a_number_in_overrides_and_files(tmp_path):
    """PyYAML reads `6e-3` (no dot) as a string; a user typing `--set train.lr=6e-3` means a number."""
    cfg = load_config(
        "configs/tiny.yaml", ["train.lr=6e-3", "train.min_lr=1E-5", "train.weight_decay=.5e-1"]
    )
    assert (cfg.train.lr, cfg.train.min_lr, cfg.train.weight_decay) == (6e-3, 1e-5, 0.05)
    preset = tmp_path / "sci.yaml"
    preset.write_text("train: {lr: 2e-3}\n")
    assert load_config(preset).train.lr == 2e-3
    with pytest.raises(ConfigError, match="config.train.steps: expected an integer, got str '1e3'"):
        load_config(None, ["train.steps=1e3"])  # an integer field does not take a float spelling
    with pytest.raises(ConfigError, match="config.train.lr: expected a number, got str '6e'"):
        load_config(None, ["train.lr=6e"])


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["train.stepz=3"], r"config.train: unknown key\(s\) \['stepz'\]"),
        (["bogus.x=1"], r"config: unknown key\(s\) \['bogus'\]"),
        (["train.steps=many"], "config.train.steps: expected an integer, got str 'many'"),
        (["train.lr=true"], "config.train.lr: expected a number"),
        (["corpus.domains=python"], "config.corpus.domains: expected a list"),
        (["train.steps=0"], "train.steps must be positive"),
        (["model.num_heads=3"], "divisible"),
        (["mixer.odm_variant=ucb"], "odm_variant"),
        (
            ["agent.value_units=episode"],
            r"agent.value_units must be one of \['horizon', 'relative'\]",
        ),
        (["train"], "must look like section.key=value"),
    ],
)
def test_bad_values_name_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, overrides)


def test_malformed_and_missing_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {steps: 3\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(listy)


def test_yaml_is_loaded_safely(tmp_path):
    """A YAML tag that would run a command is refused, and the command never ran: its marker (in
    this test's own tmp dir) stays absent; the control shows an unsafe loader would create it."""
    import yaml

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(evil)
    assert not marker.exists()
    with pytest.raises(ConfigError, match=r"override .name=.*: the value is not valid YAML"):
        load_config(None, [f"name=!!python/object/apply:os.system ['touch {marker}']"])
    assert not marker.exists()
    yaml.unsafe_load(evil.read_text())  # control: the payload is real
    assert marker.exists()

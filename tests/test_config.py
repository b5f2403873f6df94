"""Config loading: strict keys, types, YAML errors, overrides, presets."""

import re
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


# ------------------------------------------------------------- the field as the one source of truth


def config_fields(cls=None, prefix=""):
    """(dotted key, annotation, dataclass field, its class) of every field of the config tree."""
    import dataclasses
    import typing

    from acodm_ray.config import ExperimentConfig

    cls = cls or ExperimentConfig
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        yield key, hints[f.name], f, cls
        if dataclasses.is_dataclass(hints[f.name]):
            yield from config_fields(hints[f.name], f"{key}.")


def choice_fields():
    from acodm_ray.typed_config import choices

    return [(key, choices(tp)) for key, tp, _, _ in config_fields() if choices(tp)]


def test_every_field_has_one_docstring_and_a_default_it_allows():
    import dataclasses

    from acodm_ray.config import ExperimentConfig
    from acodm_ray.typed_config import choices, field_docs

    missing = [key for key, _, f, cls in config_fields() if not field_docs(cls).get(f.name)]
    assert missing == []
    cfg = ExperimentConfig()
    for key, tp, _, _ in config_fields():
        value = cfg
        for part in key.split("."):
            value = getattr(value, part)
        assert choices(tp) is None or value in choices(tp) or dataclasses.is_dataclass(value), key
    assert len(choice_fields()) >= 14  # coverage, device, dtype, score, ..., wandb_mode


@pytest.mark.parametrize("key, allowed", choice_fields(), ids=[k for k, _ in choice_fields()])
def test_a_choice_outside_its_literal_is_refused_by_name(key, allowed):
    """Loaded or built in code, a value outside the field's Literal is an error naming the key and
    the allowed values: the Literal is the list every check reads."""
    import dataclasses

    from acodm_ray.config import validate

    listed = ".*".join(re.escape(repr(value)) for value in allowed)
    with pytest.raises(ConfigError, match=rf"config\.{re.escape(key)}\b.*{listed}"):
        load_config(None, [f"{key}=no_such_value"])
    cfg = load_config(None)
    section, name = key.rsplit(".", 1)
    part = cfg
    for attr in section.split("."):
        part = getattr(part, attr)
    with pytest.raises(ConfigError, match=rf"config\.{re.escape(key)}\b.*{listed}"):
        object.__setattr__(part, name, "no_such_value")
        validate(cfg)
    assert dataclasses.is_dataclass(part)


def test_allowed_values_are_listed_once():
    """No module of ours spells a field's allowed values again (a tuple, a list or a set of the same
    strings): code that needs them takes typing.get_args of the field's Literal."""
    import ast

    sets = {frozenset(allowed): key for key, allowed in choice_fields() if len(allowed) > 1}
    again = []
    for path in [*Path("acodm_ray").rglob("*.py"), *Path("policies").rglob("*.py"),
                 *Path("envs").rglob("*.py"), *Path("jobs").rglob("*.py")]:  # fmt: skip
        tree = ast.parse(path.read_text())
        literals = {  # Literal["a", "b"] itself: the one list
            id(n.slice)
            for n in ast.walk(tree)
            if isinstance(n, ast.Subscript) and getattr(n.value, "id", None) == "Literal"
        }
        for node in ast.walk(tree):
            if id(node) in literals:
                continue
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and node.elts:
                values = [e.value for e in node.elts if isinstance(e, ast.Constant)]
                if len(values) == len(node.elts) and frozenset(values) in sets:
                    again.append(f"{path}:{node.lineno} lists {sets[frozenset(values)]}'s values")
    assert again == []


def test_derived_tuples_are_the_literals():
    from typing import get_args

    from acodm_ray.agent.config import VALUE_UNITS, ValueUnits
    from acodm_ray.config_train import Coverage, EvalWeighting, MixerName, Score
    from acodm_ray.mixers import MIXERS
    from acodm_ray.sampler import COVERAGES
    from acodm_ray.signals import EVAL_WEIGHTINGS, SCORES

    assert COVERAGES == get_args(Coverage)
    assert set(SCORES) == set(get_args(Score)) - {"auto"}  # "auto" resolves to one of SCORES
    assert EVAL_WEIGHTINGS == get_args(EvalWeighting) and MIXERS == get_args(MixerName)
    assert VALUE_UNITS == get_args(ValueUnits)


def test_a_config_written_with_the_retired_extra_section_still_loads(tmp_path):
    """Run dirs written before `extra` went hold `extra: {}` in config.yaml (a resume reads it)."""
    old = tmp_path / "config.yaml"
    old.write_text("name: old\nextra: {}\ntrain: {steps: 3}\n")
    cfg = load_config(old)
    assert (cfg.name, cfg.train.steps) == ("old", 3) and not hasattr(cfg, "extra")
    from acodm_ray.config import to_dict

    assert "extra" not in to_dict(cfg)


def test_docs_config_md_is_what_the_fields_generate():
    """docs/config.md is generated from the fields (`acodm config docs`); regenerate it after
    changing a field, its default or its docstring."""
    from acodm_ray.config_docs import render

    assert Path("docs/config.md").read_text() == render()
    text = render()
    for key, allowed in choice_fields():
        row = next(line for line in text.splitlines() if line.startswith(f"| `{key}` |"))
        assert all(f"`{value}`" in row for value in allowed), row


def test_config_show_prints_what_the_comparison_builds(capsys):
    """`acodm config show --method M --stage S` is the comparison's own proxy_config/target_config."""
    import yaml

    from acodm_ray import cli
    from acodm_ray.compare import load_compare_config, proxy_config, target_config
    from acodm_ray.config import to_dict

    def show(*argv):
        assert cli.main(["config", "show", "--config", "configs/demo.yaml", *argv]) == 0
        return yaml.safe_load(capsys.readouterr().out)

    cmp = load_compare_config("configs/demo.yaml")
    assert show("--method", "acodm-paper", "--stage", "proxy") == to_dict(
        proxy_config(cmp, 0, "acodm-paper")
    )
    assert show("--method", "acodm-reference", "--seed", "2") == to_dict(
        target_config(cmp, "acodm-reference", 2)
    )
    quick = load_compare_config("configs/demo.yaml", ["train.lr=0.01"], quick=True)
    assert show(
        "--quick", "--method", "acodm@small", "--stage", "proxy", "--set", "train.lr=0.01"
    ) == (to_dict(proxy_config(quick, 0, "acodm@small")))
    assert show("--set", "train.steps=7") == to_dict(
        load_config("configs/demo.yaml", ["train.steps=7"])
    )
    assert (
        cli.main(
            [
                "config",
                "show",
                "--config",
                "configs/demo.yaml",
                "--method",
                "odm",
                "--stage",
                "proxy",
            ]
        )
        == 2
    )
    assert "'odm' has no proxy stage" in capsys.readouterr().err


def test_flags_that_set_a_field_take_its_help_and_choices():
    import sys
    from typing import get_args

    from acodm_ray import cli
    from acodm_ray.config import ExperimentConfig
    from acodm_ray.config_jobs import Algo
    from acodm_ray.config_train import MixerName
    from acodm_ray.typed_config import field_help

    sys.path.insert(0, str(Path("jobs").resolve()))
    import proxy_rl

    pretrain = cli.build_parser()._subparsers._group_actions[0].choices["pretrain"]
    mixer = next(a for a in pretrain._actions if "--mixer" in a.option_strings)
    assert tuple(mixer.choices) == get_args(MixerName)
    assert mixer.help == field_help(ExperimentConfig, "mixer.name")
    help_text = " ".join(proxy_rl_help(proxy_rl).split())
    assert " ".join(field_help(ExperimentConfig, "rl.iterations").split()) in help_text
    assert "{" + ",".join(get_args(Algo)) + "}" in help_text


def proxy_rl_help(module) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        module.main(["--help"])
    return out.getvalue()

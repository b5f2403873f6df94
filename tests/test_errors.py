"""One error base: every error acodm-ray raises on purpose is an `AcodmError` (and keeps its built-in
base), and the jobs report `USER_ERRORS` as one line and exit 2 while a bug keeps its traceback."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from pathlib import Path

import pytest

import acodm_ray
from acodm_ray.errors import USER_ERRORS, AcodmError, ConfigError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "jobs"))
import _common  # noqa: E402


def _own_error_classes() -> list[type]:
    """Every exception class defined in acodm_ray's modules (not re-exported ones)."""
    found = []
    for info in pkgutil.walk_packages(acodm_ray.__path__, "acodm_ray."):
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == info.name:
                found.append(obj)
    return found


def test_every_error_of_ours_has_the_one_base_and_keeps_its_builtin_one():
    classes = _own_error_classes()
    names = {c.__name__ for c in classes}
    assert {
        "ConfigError",
        "CompareError",
        "WeightsError",
        "UnknownDomainError",
        "NonFiniteLossError",
        "PolicyServerError",
        "TargetTrainingError",
    } <= names
    assert [c.__name__ for c in classes if not issubclass(c, AcodmError)] == []
    assert all(
        len(inspect.getmro(c)) > 3 for c in classes if c is not AcodmError
    )  # a built-in base besides
    from acodm_ray.config import ConfigError as from_config
    from acodm_ray.data.corpus_errors import CorpusFileNotFoundError

    assert from_config is ConfigError and issubclass(ConfigError, ValueError)
    assert issubclass(CorpusFileNotFoundError, FileNotFoundError)


def test_a_job_prints_a_user_error_as_one_line_and_exits_2(capsys):
    def bad_config() -> int:
        raise ConfigError("train.steps must be >= 1, got 0")

    assert _common.run_job("proxy_rl", bad_config) == 2
    assert capsys.readouterr().err == "proxy_rl: error: train.steps must be >= 1, got 0\n"
    assert all(issubclass(e, Exception) for e in USER_ERRORS)


def test_a_bug_in_a_job_keeps_its_traceback():
    def bug() -> int:
        raise KeyError("oops")

    with pytest.raises(KeyError):
        _common.run_job("compare", bug)


def test_set_flags_keeps_only_the_given_flags_in_order():
    assert _common.set_flags({"rl.algo": "sac", "rl.iterations": None, "compare.seeds": 0}) == [
        "rl.algo=sac",
        "compare.seeds=0",
    ]


@pytest.mark.parametrize("job", ["proxy_rl", "target_pretrain", "compare"])
def test_a_job_refuses_an_old_run_before_it_starts_ray(job, tmp_path, monkeypatch, capsys):
    """`_common.run_dir_for` checks the run directory first: an existing run is refused with the
    flags that would take it, and nothing (Ray, a corpus load) starts or is written."""
    module = importlib.import_module(job)
    monkeypatch.setattr(
        _common,  # the jobs start Ray through _common.start, once their plan is checked
        "init_ray",
        lambda *a, **k: pytest.fail("Ray started before the run dir was checked"),
    )
    old = tmp_path / "old"
    old.mkdir()
    (old / "summary.json").write_text("{}")
    args = [
        "--config",
        str(ROOT / "configs" / "tiny.yaml"),
        "--output-dir",
        str(tmp_path),
        "--name",
        "old",
    ]
    assert module.main(args) == 2
    err = capsys.readouterr().err
    assert f"{job}: error: run directory {old} already exists; pass --resume" in err
    assert [p.name for p in old.iterdir()] == ["summary.json"]
    assert module.main([*args[:-1], "missing", "--resume"]) == 2
    assert "cannot resume: run directory" in capsys.readouterr().err

"""Experiment tracking: TensorBoard by default, MLflow / W&B opt-in and optional."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from acodm_ray import tracking
from acodm_ray.config import ConfigError, ExperimentConfig, from_dict, load_config, to_dict
from acodm_ray.tracking import (
    ResultLogger,
    TrackingConfig,
    TrackingError,
    flatten_scalars,
    mlflow_tracking_uri,
)


def _pretend_missing(monkeypatch, *names):
    """Make `names` look uninstalled, whatever this environment has."""
    real = tracking.importlib.util.find_spec
    monkeypatch.setattr(
        tracking.importlib.util,
        "find_spec",
        lambda name, *a, **k: None if name in names else real(name, *a, **k),
    )


def test_defaults_are_tensorboard_only_and_offline():
    tc = ExperimentConfig().tracking
    assert (tc.tensorboard, tc.mlflow, tc.wandb) == (True, False, False)
    assert tc.wandb_mode == "offline" and tc.mlflow_tracking_uri is None
    tracking.require_backends(tc)  # nothing enabled: nothing required


def test_default_logger_writes_tensorboard_events(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = load_config("configs/tiny.yaml")
    with ResultLogger(cfg, tmp_path / "run", params=to_dict(cfg)) as results:
        assert results.backends == ["tensorboard"]
        for it in (1, 2):
            results.log(
                {
                    "env_runners": {"episode_return_mean": 0.5 * it},
                    "nan": math.nan,
                    "text": "x",
                    "flag": True,
                },
                step=it,
            )
    events = list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    assert acc.Tags()["scalars"] == ["env_runners/episode_return_mean"]
    assert [(e.step, e.value) for e in acc.Scalars("env_runners/episode_return_mean")] == [
        (1, 0.5),
        (2, 1.0),
    ]
    assert not (tmp_path / "run" / "tracking.json").exists()  # no MLflow / W&B run ids to remember


def test_tensorboard_can_be_turned_off(tmp_path):
    cfg = load_config(None, ["tracking.tensorboard=false"])
    with ResultLogger(cfg, tmp_path / "run") as results:
        assert results.backends == []
        results.log({"a": 1.0}, step=1)
    assert not (tmp_path / "run" / "tensorboard").exists()


@pytest.mark.parametrize("pkg", ["mlflow", "wandb"])
def test_enabled_but_missing_backend_names_the_install_command(tmp_path, monkeypatch, pkg):
    _pretend_missing(monkeypatch, pkg)
    cfg = load_config(None, [f"tracking.{pkg}=true"])
    with pytest.raises(TrackingError, match=rf"tracking\.{pkg}=true .*`pip install {pkg}`"):
        ResultLogger(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything was written
    assert issubclass(TrackingError, ValueError)  # the entry points' `except ValueError` prints it


def test_both_missing_are_named_together(monkeypatch):
    _pretend_missing(monkeypatch, "mlflow", "wandb")
    cfg = load_config(None, ["tracking.mlflow=true", "tracking.wandb=true"])
    with pytest.raises(TrackingError, match="pip install mlflow.*pip install wandb"):
        tracking.require_backends(cfg)


def test_config_keys_and_values_are_validated():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['mlfow'\]"):
        load_config(None, ["tracking.mlfow=true"])
    with pytest.raises(ConfigError, match="tracking.mlflow: expected bool"):
        load_config(None, ["tracking.mlflow=maybe"])
    with pytest.raises(ConfigError, match="tracking.wandb_mode must be one of"):
        load_config(None, ["tracking.wandb_mode=cloud"])
    with pytest.raises(ConfigError, match="tracking.wandb_project must not be empty"):
        load_config(None, ["tracking.wandb_project=' '"])
    cfg = load_config(
        "configs/demo.yaml", ["tracking.mlflow=true", "tracking.mlflow_experiment=proxy"]
    )
    assert cfg.tracking == TrackingConfig(mlflow=True, mlflow_experiment="proxy")
    assert (
        from_dict(ExperimentConfig, to_dict(cfg)).tracking == cfg.tracking
    )  # round trip (env configs)


def test_mlflow_uri_defaults_to_a_file_store_in_the_run_dir(tmp_path):
    assert (
        mlflow_tracking_uri(TrackingConfig(mlflow=True), tmp_path / "r")
        == (tmp_path / "r" / "mlruns").as_uri()
    )
    assert (
        mlflow_tracking_uri(
            TrackingConfig(mlflow=True, mlflow_tracking_uri="http://mlflow:5000"), None
        )
        == "http://mlflow:5000"
    )
    with pytest.raises(TrackingError, match="run dir"):
        mlflow_tracking_uri(TrackingConfig(mlflow=True), None)


def test_flatten_scalars_keeps_finite_numbers_only():
    import numpy as np

    flat = flatten_scalars(
        {
            "a": 1,
            "b": {"c": np.float32(2.5), "d": math.inf, "e": None},
            "f": "s",
            "g": False,
            "h": np.int64(3),
        }
    )
    assert flat == {"a": 1.0, "b/c": 2.5, "h": 3.0}


def test_mlflow_run_is_logged_and_resumed(tmp_path):
    import mlflow  # in the test extras: this never skips

    cfg = load_config(None, ["tracking.mlflow=true", "tracking.tensorboard=false"])
    with ResultLogger(cfg, tmp_path / "run", params={"train": {"lr": 0.1}}) as results:
        results.log({"loss": 2.0, "loss/python_code": 3.0, "timers/x(y)": 1.0}, step=1)
    with ResultLogger(cfg, tmp_path / "run", resume=True) as results:
        results.log({"loss": 1.0}, step=2)
    client = mlflow.tracking.MlflowClient(tracking_uri=(tmp_path / "run" / "mlruns").as_uri())
    runs = client.search_runs([client.get_experiment_by_name("acodm").experiment_id])
    assert len(runs) == 1 and runs[0].data.params == {"train.lr": "0.1"}
    assert [(m.step, m.value) for m in client.get_metric_history(runs[0].info.run_id, "loss")] == [
        (1, 2.0),
        (2, 1.0),
    ]
    # `/` becomes `.`: the file store would need `loss` as a file and as a directory otherwise
    assert set(runs[0].data.metrics) == {"loss", "loss.python_code", "timers.x_y_"}


def _wandb_transaction_log(session: Path, run_id: str) -> bytes:
    """The bytes an offline W&B run wrote. finish() returns before wandb's service has flushed the
    transaction log (CI once read a file holding only its 7-byte header); shutting the service down
    closes every log, so the test reads what the run wrote, not how far the flush has got."""
    import wandb

    wandb.teardown()
    return (session / f"run-{run_id}.wandb").read_bytes()


def test_wandb_offline_run_needs_no_account_and_resumes_the_same_run(tmp_path, monkeypatch):
    import wandb  # noqa: F401  (in the test extras: this never skips)

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfg = load_config(None, ["tracking.wandb=true", "tracking.tensorboard=false"])
    with ResultLogger(cfg, tmp_path / "run") as results:
        assert results.backends == ["wandb"]
        results.log({"loss": 2.0}, step=1)
    with ResultLogger(cfg, tmp_path / "run", resume=True) as results:
        results.log({"loss": 1.0}, step=2)
    run_id = json.loads((tmp_path / "run" / "tracking.json").read_text())["wandb_run_id"]
    offline = sorted((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(offline) == 2  # one per session, both continuing the one run id
    assert {p.name.rsplit("-", 1)[1] for p in offline} == {run_id}
    for session in offline:
        assert b"loss" in _wandb_transaction_log(session, run_id)  # the metric was recorded


def test_wandb_runs_open_at_once_in_one_process_do_not_end_each_other(tmp_path, monkeypatch):
    """`jobs/compare.py` finishes several targets at once on threads of one driver: opening a run
    must not finish another logger's run (wandb's reinit=True would, and its upload then fails)."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfg = load_config(None, ["tracking.wandb=true", "tracking.tensorboard=false"])
    (tmp_path / "a.txt").write_text("a")
    with ResultLogger(cfg, tmp_path / "first") as first:
        with ResultLogger(cfg, tmp_path / "second") as second:
            second.log({"loss": 1.0}, step=1)
        first.log({"loss": 2.0}, step=1)
        assert first.log_artifacts({"notes": tmp_path / "a.txt"}) == ["notes"]
    for name in ("first", "second"):
        run_id = json.loads((tmp_path / name / "tracking.json").read_text())["wandb_run_id"]
        (session,) = (tmp_path / name / "wandb").glob(f"offline-run-*-{run_id}")
        assert b"loss" in _wandb_transaction_log(session, run_id)

"""Every job logs to MLflow (local file store) and W&B (offline) when asked, against the real packages.

One MLflow run per run dir: params = the resolved config, metrics = every scalar the job logs,
artifacts = the exported policy / HF model / plots / summary; a resumed run continues the same run.
`acodm pretrain` is tested here; the Ray jobs are tested where they already run end to end, in
tests/test_readme.py: `make demo` (jobs/proxy_rl.py) with a config that turns both trackers on, and
the README's comparison smoke test (jobs/compare.py: its proxy stages, its Ray Train target runs
through jobs/target_pretrain.py's run_target, and the comparison itself) with both turned on.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from acodm_ray.config import load_config
from tests.conftest import tiny_config

TRACK = {"mlflow": "true", "wandb": "true"}


def mlflow_runs(store: Path) -> tuple[MlflowClient, list]:
    client = MlflowClient(tracking_uri=store.resolve().as_uri())
    experiment = client.get_experiment_by_name("acodm")
    assert experiment is not None, f"no MLflow experiment in {store}"
    return client, client.search_runs([experiment.experiment_id])


def artifact_names(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    return {Path(a.path).name for a in client.list_artifacts(run_id, path)}


def history(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return [m.step for m in client.get_metric_history(run_id, key)]


def only_run(store: Path, run_dir: Path):
    client, runs = mlflow_runs(store)
    mine = [r for r in runs if r.data.tags.get("run_dir") == str(run_dir.resolve())]
    assert len(mine) == 1, [r.data.tags.get("run_dir") for r in runs]
    return client, mine[0]


def assert_wandb_offline_run(run_dir: Path) -> None:
    assert list((run_dir / "wandb").glob("offline-run-*")), f"no offline W&B run under {run_dir}"


def test_pretrain_logs_every_step_and_resume_continues_the_run(
    tiny_prepared, tmp_path, monkeypatch
):
    from acodm_ray.pretrain import pretrain

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    run_dir = tmp_path / "run"
    cfg = tiny_config(train={"steps": 4, "eval_every": 2, "checkpoint_every": 2}, tracking=TRACK)
    pretrain(cfg, run_dir, progress=False)
    longer = tiny_config(train={"steps": 6, "eval_every": 2, "checkpoint_every": 2}, tracking=TRACK)
    pretrain(longer, run_dir, resume=True, progress=False)

    client, run = only_run(run_dir / "mlruns", run_dir)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.steps"] == "4" and run.data.params["model.hidden_size"] == "32"
    assert run.data.params["mixer.name"] == cfg.mixer.name
    assert history(client, run.info.run_id, "train.loss") == [
        1,
        2,
        3,
        4,
        5,
        6,
    ]  # one run, continued
    assert history(client, run.info.run_id, "eval.val_ppl.average") == [2, 4, 6]
    assert {
        "train.weight." + d for d in json.loads((run_dir / "summary.json").read_text())["domains"]
    } <= set(run.data.metrics)
    assert {"model", "summary"} <= artifact_names(client, run.info.run_id)
    assert "config.json" in artifact_names(client, run.info.run_id, "model")
    assert any((run_dir / "tensorboard").iterdir())
    assert_wandb_offline_run(run_dir)


def test_pretrain_without_tracking_writes_no_store(tiny_prepared, tmp_path):
    from acodm_ray.pretrain import pretrain

    cfg = tiny_config(
        train={"steps": 2, "eval_every": 2, "checkpoint_every": 2},
        tracking={"tensorboard": "false"},
    )
    pretrain(cfg, tmp_path / "run", progress=False)
    assert (
        not (tmp_path / "run" / "mlruns").exists()
        and not (tmp_path / "run" / "tensorboard").exists()
    )
    assert not (tmp_path / "run" / "tracking.json").exists()


def test_a_missing_backend_stops_pretrain_before_it_writes(tmp_path, monkeypatch):
    from acodm_ray import tracking
    from acodm_ray.pretrain import pretrain

    real = tracking.importlib.util.find_spec
    monkeypatch.setattr(
        tracking.importlib.util,
        "find_spec",
        lambda name, *a, **k: None if name == "mlflow" else real(name, *a, **k),
    )
    with pytest.raises(tracking.TrackingError, match="pip install mlflow"):
        pretrain(
            load_config("configs/tiny.yaml", ["tracking.mlflow=true"]),
            tmp_path / "run",
            progress=False,
        )
    assert not (tmp_path / "run").exists()

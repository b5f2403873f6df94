"""Every job logs to MLflow (local file store) and W&B (offline) when asked, against the real packages.

One MLflow run per run dir: params = the resolved config, metrics = every scalar the job logs,
artifacts = the exported policy / HF model / plots / summary; a resumed run continues the same run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from acodm_ray.config import load_config
from tests.conftest import tiny_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))

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


def test_pretrain_logs_every_step_and_resume_continues_the_run(tmp_path, monkeypatch):
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
    assert history(client, run.info.run_id, "train.loss") == [1, 2, 3, 4, 5, 6]  # one run, continued
    assert history(client, run.info.run_id, "eval.val_ppl.average") == [2, 4, 6]
    assert {"train.weight." + d for d in json.loads((run_dir / "summary.json").read_text())["domains"]} \
        <= set(run.data.metrics)
    assert {"model", "summary"} <= artifact_names(client, run.info.run_id)
    assert "config.json" in artifact_names(client, run.info.run_id, "model")
    assert any((run_dir / "tensorboard").iterdir())
    assert_wandb_offline_run(run_dir)


def test_pretrain_without_tracking_writes_no_store(tmp_path):
    from acodm_ray.pretrain import pretrain

    cfg = tiny_config(train={"steps": 2, "eval_every": 2, "checkpoint_every": 2},
                      tracking={"tensorboard": "false"})
    pretrain(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "mlruns").exists() and not (tmp_path / "run" / "tensorboard").exists()
    assert not (tmp_path / "run" / "tracking.json").exists()


@pytest.mark.slow
def test_proxy_rl_logs_iterations_policy_and_plot(ray_session, tmp_path, monkeypatch):
    import proxy_rl

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    args = ["--config", "configs/tiny.yaml", "--set", "train.steps=6", "--set", "rl.min_sample_timesteps_per_iteration=6",
            "--set", "rl.train_batch_size=6", "--set", "tracking.mlflow=true", "--set", "tracking.wandb=true",
            "--output-dir", str(tmp_path), "--name", "proxy"]
    assert proxy_rl.main(args + ["--iterations", "1", "--no-rollout"]) == 0
    assert proxy_rl.main(args + ["--iterations", "2", "--resume"]) == 0  # with the rollout and its plot
    run_dir = tmp_path / "proxy"
    client, run = only_run(run_dir / "mlruns", run_dir)
    assert run.data.params["rl.algo"] == "acodm"
    assert history(client, run.info.run_id, "training_iteration") == [1, 2]
    assert {"policy", "summary", "plots"} <= artifact_names(client, run.info.run_id)
    assert {"actor.safetensors", "policy.json"} <= artifact_names(client, run.info.run_id, "policy")
    assert artifact_names(client, run.info.run_id, "plots") == {"weights_policy_vs_odm.png"}
    assert_wandb_offline_run(run_dir)


@pytest.mark.slow
def test_compare_and_its_target_runs_log_into_one_store(ray_session, tmp_path, monkeypatch):
    """jobs/compare.py's run_comparison with one real Ray Train target run (run_target): the target
    run and the comparison each get their MLflow run, in one store under the comparison's dir."""
    from acodm_ray.compare import load_compare_config, run_comparison

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfg = load_compare_config("configs/tiny.yaml", ['compare.methods=["uniform"]', "tracking.mlflow=true",
                                                    "tracking.wandb=true", "compare.target.train.steps=4",
                                                    "compare.target.train.eval_every=2",
                                                    "compare.target.train.checkpoint_every=2"], quick=True)
    out = tmp_path / "cmp"
    summary = run_comparison(cfg, out, proxy_runner=None)
    assert not summary["failures"]
    target_dir = Path(summary["runs"]["uniform-seed0"]["run_dir"])
    assert not (target_dir / "mlruns").exists()  # the comparison's store, not one per run
    client, target = only_run(out / "mlruns", target_dir)
    assert target.data.params["mixer.name"] == "uniform" and target.data.params["train.steps"] == "4"
    assert history(client, target.info.run_id, "train.loss") == [1, 2, 3, 4]  # every step, from rank 0
    assert history(client, target.info.run_id, "eval.val_ppl.average") == [2, 4]
    assert {"model", "summary", "plots"} <= artifact_names(client, target.info.run_id)
    assert {"weights.png", "val_ppl.png"} <= artifact_names(client, target.info.run_id, "plots")
    assert_wandb_offline_run(target_dir)
    _, comparison = only_run(out / "mlruns", out)
    assert any(k.startswith("headline.uniform.") for k in comparison.data.metrics)
    assert {"summary.json", "table.md", "val_ppl.png"} <= artifact_names(client, comparison.info.run_id, "results")


def test_a_missing_backend_stops_pretrain_before_it_writes(tmp_path, monkeypatch):
    from acodm_ray import tracking
    from acodm_ray.pretrain import pretrain

    real = tracking.importlib.util.find_spec
    monkeypatch.setattr(tracking.importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "mlflow" else real(name, *a, **k))
    with pytest.raises(tracking.TrackingError, match="pip install mlflow"):
        pretrain(load_config("configs/tiny.yaml", ["tracking.mlflow=true"]), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()

"""The run lifecycle every stage shares (acodm_ray/run.py): snapshot and resume rules, the tracked
run closed FINISHED by `finish` and FAILED by an exception, and a failure never touching the run's
files. The stages' own end-to-end tests (test_pretrain, test_proxy_rl, test_target, test_compare)
run it for real; these check its rules alone, with MLflow's local file store."""

from __future__ import annotations

import json

import pytest
import yaml
from mlflow.tracking import MlflowClient

from acodm_ray.config import load_config
from acodm_ray.run import Run, due, print_closing, read_summary
from acodm_ray.rundir import RunDirExistsError


def mlflow_cfg(steps: int = 4):
    return load_config(
        "configs/tiny.yaml",
        ["tracking.mlflow=true", "tracking.tensorboard=false", f"train.steps={steps}"],
    )


def the_tracked_run(run_dir):
    client = MlflowClient(tracking_uri=(run_dir / "mlruns").resolve().as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("acodm").experiment_id])
    return run


@pytest.fixture(autouse=True)
def _file_store(monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses file stores without it


def test_due_every_n_steps_and_at_the_last():
    assert [s for s in range(1, 8) if due(s, 3, 7)] == [3, 6, 7]


def test_a_finished_run_writes_its_summary_and_closes_the_tracked_run(tmp_path):
    with Run.start(mlflow_cfg(), tmp_path / "run") as run:
        run.snapshot()
        run.track().log({"loss": 1.0}, step=1)
        summary = run.finish({"steps": 4}, {"summary": run.summary_path})
    assert summary == read_summary(run.dir) == {"steps": 4}
    assert yaml.safe_load((run.dir / "config.yaml").read_text())["train"]["steps"] == 4
    tracked = the_tracked_run(run.dir)
    assert tracked.info.status == "FINISHED" and tracked.data.params["train.steps"] == "4"


def test_an_exception_closes_the_tracked_run_as_failed_and_keeps_the_files(tmp_path):
    with pytest.raises(KeyboardInterrupt), Run.start(mlflow_cfg(), tmp_path / "run") as run:
        run.snapshot()
        run.track()
        (run.dir / "checkpoint.pt").write_text("the last checkpoint")
        raise KeyboardInterrupt
    assert the_tracked_run(run.dir).info.status == "FAILED"
    assert (run.dir / "checkpoint.pt").read_text() == "the last checkpoint"
    assert read_summary(run.dir) is None
    with pytest.raises(RunDirExistsError):  # a failed run is not clobbered either
        Run.start(mlflow_cfg(), run.dir)


def test_a_resumed_run_keeps_its_config_and_continues_its_tracked_run(tmp_path):
    with Run.start(mlflow_cfg(steps=4), tmp_path / "run") as run:
        run.snapshot()
        run.track().log({"loss": 1.0}, step=1)
    first = the_tracked_run(run.dir).info.run_id
    with Run.start(mlflow_cfg(steps=6), run.dir, resume=True) as resumed:
        resumed.snapshot()
        resumed.track().log({"loss": 0.5}, step=2)
        resumed.finish({"steps": 6}, {})
    assert yaml.safe_load((run.dir / "config.yaml").read_text())["train"]["steps"] == 4
    assert the_tracked_run(run.dir).info.run_id == first


def test_a_registered_run_is_finished_or_failed_by_the_process_that_registered_it(tmp_path):
    """The target's driver and the comparison log nothing themselves: they register the tracked run,
    and finish it (artifacts) or, failing, mark it FAILED."""
    with pytest.raises(RuntimeError), Run.start(mlflow_cfg(), tmp_path / "a") as run:
        run.register()
        raise RuntimeError("training failed")
    assert the_tracked_run(run.dir).info.status == "FAILED"
    with Run.start(mlflow_cfg(), tmp_path / "b") as run:
        run.register()
        run.finish({"steps": 4}, {"results": [run.summary_path]}, scalars={"wall_clock_s": 1.0})
    tracked = the_tracked_run(run.dir)
    assert tracked.info.status == "FINISHED" and tracked.data.metrics["wall_clock_s"] == 1.0
    assert json.loads(run.summary_path.read_text()) == {"steps": 4}


def test_closing_lines_are_named_by_their_job(capsys):
    print_closing("proxy_rl", ["done: 1 iterations of acodm"], ["warning: x"])
    print_closing("", ["done: 4 steps"])
    out, err = capsys.readouterr()
    assert out == "proxy_rl: done: 1 iterations of acodm\ndone: 4 steps\n"
    assert err == "proxy_rl: warning: x\n"

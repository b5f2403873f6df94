"""`acodm pretrain`: outputs, HF reload, crash + resume equals an uninterrupted run, no clobbering."""

import json

import pytest
import torch

from acodm_ray.cli import main
from acodm_ray.metrics import read_metrics
from acodm_ray.pretrain import pretrain
from acodm_ray.rundir import RunDirExistsError
from acodm_ray.train_step import LMTrainer
from tests.conftest import tiny_config

STEPS = {"steps": 6, "checkpoint_every": 3, "eval_every": 3}


def test_cli_pretrain_writes_metrics_model_and_refuses_clobbering(tiny_prepared, tmp_path, capsys):
    args = [
        "pretrain",
        "--config",
        "configs/tiny.yaml",
        "--mixer",
        "odm",
        "--output-dir",
        str(tmp_path),
        "--name",
        "run",
        "--set",
        "train.steps=4",
        "--set",
        "train.eval_every=2",
    ]
    assert main(args) == 0
    run = tmp_path / "run"
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "steps.csv",
        "eval.csv",
        "summary.json",
        "checkpoint.pt",
    ):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").iterdir())
    steps, evals = read_metrics(run)
    assert [r["step"] for r in steps] == [1, 2, 3, 4] and [r["step"] for r in evals] == [2, 4]
    weights = [sum(v for k, v in r.items() if k.startswith("weight/")) for r in steps]
    assert all(w == pytest.approx(1.0) for w in weights)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["mixer"] == "odm" and summary["final_val_ppl"]["average"] > 1
    # a second run of the same name is refused and the first is untouched
    before = (run / "metrics.jsonl").read_text()
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert (run / "metrics.jsonl").read_text() == before


def test_saved_model_reloads_with_transformers(tiny_prepared, tmp_path, monkeypatch):
    """The exported model is the trainer's own, bit for bit (a silent random re-init would fail)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    trainers = []
    real_init = LMTrainer.__init__

    def keep(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        trainers.append(self)

    monkeypatch.setattr(LMTrainer, "__init__", keep)
    cfg = tiny_config(train={"steps": 2})
    pretrain(cfg, tmp_path / "run", progress=False)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model")
    tok = AutoTokenizer.from_pretrained(tmp_path / "run" / "model")
    (trainer,) = trainers
    trained = trainer.model.state_dict()
    reloaded = model.state_dict()
    assert set(reloaded) <= set(trained) and len(reloaded) > 0
    for name, value in reloaded.items():
        assert torch.equal(value, trained[name].cpu()), name
    ids = torch.tensor([tok.encode("def main():\n    return 0\n")])
    model.eval()
    trainer.model.eval()
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, trainer.model(input_ids=ids).logits)
        assert torch.isfinite(model(input_ids=ids, labels=ids).loss)


def test_crash_then_resume_matches_uninterrupted_run(tiny_prepared, tmp_path, monkeypatch):
    """Crash during step 5 (checkpoint at 3), resume: the resumed trainer starts at step 3 with the
    mixer's state of step 3, runs exactly steps 4..6, and every logged number equals the straight run's.

    The step calls are counted: without them a resume that restored nothing (step 0, fresh mixer)
    would pass, since trim_metrics drops every logged step and a deterministic retrain repeats them."""
    cfg = tiny_config(train=STEPS)
    real_step = LMTrainer.step
    calls: list[tuple[int, list[float]]] = []  # (step_count before the call, weights it was given)

    def recording(self, weights):
        calls.append((self.step_count, [float(w) for w in weights]))
        return real_step(self, weights)

    monkeypatch.setattr(LMTrainer, "step", recording)
    straight = pretrain(cfg, tmp_path / "straight", progress=False)
    straight_calls, calls[:] = list(calls), []
    assert [c for c, _ in straight_calls] == list(range(6))

    def crash_at_five(self, weights):
        if self.step_count == 4:
            raise KeyboardInterrupt("simulated kill")
        return recording(self, weights)

    monkeypatch.setattr(LMTrainer, "step", crash_at_five)
    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg, tmp_path / "crashed", progress=False)
    assert [c for c, _ in calls] == [0, 1, 2, 3]
    calls[:] = []
    monkeypatch.setattr(LMTrainer, "step", recording)
    resumed = pretrain(cfg, tmp_path / "crashed", resume=True, progress=False)

    # restored: the first step after the resume is step 4 (step_count 3), and only 4..6 ran
    assert [c for c, _ in calls] == [3, 4, 5]
    # the mixer's state came back too: it proposes the straight run's weights for steps 4..6
    assert [w for _, w in calls] == [w for _, w in straight_calls[3:]]
    assert resumed["steps"] == 6 and resumed["final_val_ppl"] == straight["final_val_ppl"]
    assert resumed["final_weights"] == straight["final_weights"]
    a, a_eval = read_metrics(tmp_path / "straight")
    b, b_eval = read_metrics(tmp_path / "crashed")
    assert [r["step"] for r in b] == list(range(1, 7))  # no step lost or repeated
    drop_time = (
        [{k: v for k, v in r.items() if k != "seconds"} for r in a],
        [{k: v for k, v in r.items() if k != "seconds"} for r in b],
    )
    assert drop_time[0] == drop_time[1]  # losses, weights, scores, lr, grad norms of every step
    assert a_eval == b_eval


def test_resume_and_overwrite_rules(tiny_prepared, tmp_path):
    cfg = tiny_config(train={"steps": 2})
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        pretrain(cfg, tmp_path / "missing", resume=True, progress=False)
    pretrain(cfg, tmp_path / "run", progress=False)
    with pytest.raises(RunDirExistsError):
        pretrain(cfg, tmp_path / "run", progress=False)
    (tmp_path / "run" / "checkpoint.pt").unlink()
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        pretrain(cfg, tmp_path / "run", resume=True, progress=False)
    summary = pretrain(cfg, tmp_path / "run", overwrite=True, progress=False)
    assert summary["steps"] == 2

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


def test_cli_pretrain_writes_metrics_model_and_refuses_clobbering(tmp_path, capsys):
    args = ["pretrain", "--config", "configs/tiny.yaml", "--mixer", "odm", "--output-dir", str(tmp_path),
            "--name", "run", "--set", "train.steps=4", "--set", "train.eval_every=2"]
    assert main(args) == 0
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "steps.csv", "eval.csv", "summary.json", "checkpoint.pt"):
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


def test_saved_model_reloads_with_transformers(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = tiny_config(train={"steps": 2})
    pretrain(cfg, tmp_path / "run", progress=False)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model")
    tok = AutoTokenizer.from_pretrained(tmp_path / "run" / "model")
    ids = torch.tensor([tok.encode("def main():\n    return 0\n")])
    assert torch.isfinite(model(input_ids=ids, labels=ids).loss)


def test_crash_then_resume_matches_uninterrupted_run(tmp_path, monkeypatch):
    cfg = tiny_config(train=STEPS)
    straight = pretrain(cfg, tmp_path / "straight", progress=False)

    real_step = LMTrainer.step

    def crash_at_five(self, weights):
        if self.step_count == 4:
            raise KeyboardInterrupt("simulated kill")
        return real_step(self, weights)

    monkeypatch.setattr(LMTrainer, "step", crash_at_five)
    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg, tmp_path / "crashed", progress=False)
    monkeypatch.setattr(LMTrainer, "step", real_step)
    resumed = pretrain(cfg, tmp_path / "crashed", resume=True, progress=False)

    assert resumed["final_val_ppl"] == straight["final_val_ppl"]
    a, _ = read_metrics(tmp_path / "straight")
    b, _ = read_metrics(tmp_path / "crashed")
    assert [r["step"] for r in b] == list(range(1, 7))  # no step lost or repeated
    assert [r["loss"] for r in a] == [r["loss"] for r in b]


def test_resume_and_overwrite_rules(tmp_path):
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

"""Safe by default: no code from loaded files, no remote code unless asked, no clobbered runs."""

import pickle
import sys
from pathlib import Path

import pytest
import torch

from acodm_ray.config import ExperimentConfig
from acodm_ray.model import build_model
from acodm_ray.mixers.actor import ActorMixer
from acodm_ray.agent.policy_file import PolicyFileError
from acodm_ray.train_step import load_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_trust_remote_code_is_off_by_default():
    cfg = ExperimentConfig()
    assert cfg.corpus.trust_remote_code is False
    assert cfg.model.trust_remote_code is False
    assert cfg.tokenizer.trust_remote_code is False


def test_model_factory_passes_trust_remote_code_only_when_set(monkeypatch):
    from transformers import AutoModelForCausalLM

    seen = {}
    real = AutoModelForCausalLM.from_config

    def spy(config, **kwargs):
        seen.update(kwargs)
        return real(config)

    monkeypatch.setattr(AutoModelForCausalLM, "from_config", spy)
    build_model(ExperimentConfig().model, 64, 63, 0)
    assert seen.get("trust_remote_code") is False


def test_checkpoint_with_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "checkpoint.pt"
    torch.save({"x": _Payload(str(marker))}, bad)  # torch.save pickles the payload
    with pytest.raises(ValueError, match="could not be read"):
        load_checkpoint(bad)
    assert not marker.exists()


def test_pickle_passed_as_policy_to_the_mixer_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    pkl = tmp_path / "policy.pkl"
    pkl.write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(PolicyFileError):
        ActorMixer(pkl, ["a", "b"])
    assert not marker.exists()


@pytest.mark.parametrize("name", ["../escape", "/etc/acodm", "a/../../b"])
def test_run_names_cannot_escape_the_output_root(tmp_path, name, capsys):
    import proxy_rl
    import target_pretrain

    for job in (proxy_rl, target_pretrain):
        rc = job.main(["--config", "configs/tiny.yaml", "--output-dir", str(tmp_path), "--name", name])
        assert rc == 2
        assert "error" in capsys.readouterr().err
    assert not (tmp_path.parent / "escape").exists()

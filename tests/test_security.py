"""Safe by default: no code from loaded files, no remote code unless asked, no clobbered runs."""

import pickle
import sys
from pathlib import Path

import pytest
import torch

from acodm_ray.agent.networks import Actor
from acodm_ray.agent.policy_file import WEIGHTS_FILE, PolicyFileError, load_policy, save_policy
from acodm_ray.config import ExperimentConfig
from acodm_ray.mixers.actor import ActorMixer
from acodm_ray.model import build_model
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


def test_the_payload_really_runs_when_unpickled(tmp_path):
    """Control for the tests below: unpickling the payload creates its marker, so a marker that
    stays absent there means the loader never unpickled it (not that the payload is harmless)."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(_Payload(str(marker)))).close()
    assert marker.exists()
    marker.unlink()
    torch.load(_torch_payload(tmp_path / "t.pt", marker), weights_only=False)["x"].close()
    assert marker.exists()


def _torch_payload(path: Path, marker: Path) -> Path:
    torch.save({"x": _Payload(str(marker))}, path)  # torch.save pickles the payload
    return path


def test_pickle_passed_as_policy_to_the_mixer_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    pkl = tmp_path / "policy.pkl"
    pkl.write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(PolicyFileError, match="is a file, not a policy directory"):
        ActorMixer(pkl, ["a", "b"])
    assert not marker.exists()


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_pickle_inside_a_policy_directory_is_never_unpickled(tmp_path, writer):
    """A valid policy directory whose weights file is a pickle: the loader reads that very file
    (the metadata is fine), refuses it as not-safetensors, and the payload never runs."""
    torch.manual_seed(0)
    policy = save_policy(tmp_path / "policy", Actor(4, 2, 8, 1), ["a", "b"], {"dim": 4}, {})
    load_policy(policy)  # the directory is a loadable policy before the swap
    marker = tmp_path / "pwned"
    weights = policy / WEIGHTS_FILE
    if writer == "pickle":
        weights.write_bytes(pickle.dumps(_Payload(str(marker))))
    else:
        _torch_payload(weights, marker)
    with pytest.raises(PolicyFileError, match="not a valid safetensors file"):
        load_policy(policy)
    with pytest.raises(PolicyFileError, match="not a valid safetensors file"):
        ActorMixer(policy, ["a", "b"], state_dim=4)
    assert not marker.exists()


ESCAPES = {  # name given to --name -> where a broken guard would create the run
    "../escape": lambda root: root.parent / "escape",
    "ABSOLUTE": lambda root: root.parent / "absolute-escape",
    "a/../../b": lambda root: root.parent / "b",
}
REASONS = {
    "../escape": "contains '..'",
    "ABSOLUTE": "is an absolute path",
    "a/../../b": "contains '..'",
}


@pytest.mark.parametrize("name", list(ESCAPES))
def test_run_names_cannot_escape_the_output_root(tmp_path, name, capsys, monkeypatch):
    import _common
    import proxy_rl
    import target_pretrain

    def past_the_guard():  # what each job does right after the name check: nothing may get that far
        raise AssertionError(f"run name {name!r} got past the guard")

    monkeypatch.setattr(_common, "init_ray", past_the_guard)  # the jobs start Ray through _common
    root = tmp_path / "out"
    root.mkdir()
    outside = ESCAPES[name](root)
    given = str(outside) if name == "ABSOLUTE" else name  # an absolute path we could write to
    before = sorted(p.name for p in tmp_path.iterdir())
    for job, label in ((proxy_rl, "proxy_rl"), (target_pretrain, "target_pretrain")):
        rc = job.main(["--config", "configs/tiny.yaml", "--output-dir", str(root), "--name", given])
        err = capsys.readouterr().err
        assert rc == 2, err
        assert f"{label}: error: run name {given!r} {REASONS[name]}" in err
        assert not outside.exists()
        assert list(root.iterdir()) == []  # nothing created inside the root either
        assert sorted(p.name for p in tmp_path.iterdir()) == before

"""Policy kinds beyond the AC-ODM actor: "mlp" (RLlib PPO/SAC/APPO policies) and "trajectory"
(a weight schedule replayed by training progress), exported as safetensors + JSON and served by
ActorMixer / PolicyServer without RLlib."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from acodm_ray.agent.networks import Actor
from acodm_ray.agent.policy_file import (
    KINDS,
    META_FILE,
    WEIGHTS_FILE,
    PolicyFileError,
    load_policy,
    save_policy,
    save_trajectory_policy,
)
from acodm_ray.agent.policy_nets import MLPPolicy, MLPSpec, TrajectoryPolicy
from acodm_ray.mixers.actor import ActorMixer, PolicyMismatchError
from acodm_ray.policy_server import MixerSpec, PolicyServer
from acodm_ray.signals import StateTracker
from tests.conftest import tiny_config

DOMAINS = ["code", "law", "web"]
SCALE = 100.0
ROOT = Path(__file__).resolve().parents[1]


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def schedule(T: int, K: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.random((T, K)) + 0.05
    return w / w.sum(axis=1, keepdims=True)


def spec(dim: int = 12, scale: float = SCALE) -> dict:
    return {"dim": dim, "progress_scale": scale, "domains": DOMAINS}


def state_before_step(t: int, total: int, dim: int = 12) -> np.ndarray:
    """The state a run of `total` steps shows before its step t (StateTracker.build's progress)."""
    tracker = StateTracker(num_domains=3, num_tracked=(dim - 10) // 2, progress_scale=SCALE)
    if t == 0:
        return tracker.initial()
    rng = np.random.default_rng(t)
    return tracker.build(
        rng.random(3),
        rng.random(3),
        rng.random(tracker.num_tracked),
        rng.random(tracker.num_tracked),
        t / total,
    )


# ----------------------------------------------------------------------------- trajectory


def test_trajectory_round_trip_replays_every_step(tmp_path):
    T = 7
    w = schedule(T)
    out = save_trajectory_policy(tmp_path / "traj", w, DOMAINS, spec(), {"mixer": "alignment"})
    assert {p.name for p in out.iterdir()} == {WEIGHTS_FILE, META_FILE}
    module, meta = load_policy(out)
    assert isinstance(module, TrajectoryPolicy) and not module.training
    assert (
        meta["kind"] == "trajectory" and meta["num_steps"] == T and meta["progress_scale"] == SCALE
    )
    assert meta["domains"] == DOMAINS and meta["state_dim"] == 12 and meta["num_domains"] == 3
    assert "hidden" not in meta and "layers" not in meta
    assert meta["config"] == {"mixer": "alignment"} and meta["state_spec"] == spec()
    # the state before step t of the same T-step run (float32, as StateTracker builds it) -> row t
    states = torch.as_tensor(np.stack([state_before_step(t, T) for t in range(T)]))
    with torch.no_grad():
        got = module(states)
    assert got.shape == (T, 3)
    np.testing.assert_allclose(got.double().numpy(), w, atol=1e-7)
    mixer = ActorMixer(out, DOMAINS, state_dim=12)
    assert mixer.name == "policy-trajectory" and mixer.kind == "trajectory"
    for t in range(T):
        np.testing.assert_allclose(mixer.weights(state_before_step(t, T)), w[t], atol=1e-7)
    np.testing.assert_allclose(mixer.weights(None), w[0], atol=1e-7)  # no state yet: progress 0


@pytest.mark.parametrize("T_proxy, T_run", [(4, 10), (10, 4), (1000, 1000), (999, 12345)])
def test_trajectory_replays_by_progress_on_a_run_of_another_length(tmp_path, T_proxy, T_run):
    w = schedule(T_proxy, seed=1)
    out = save_trajectory_policy(tmp_path / "traj", w, DOMAINS, spec(), {})
    # a trajectory reads only the progress entry: a target with another state size is served
    mixer = ActorMixer(out, DOMAINS, state_dim=16)
    module, _ = load_policy(out)
    steps = sorted(set(np.linspace(0, T_run - 1, 40).astype(int).tolist()) | {0, 1, T_run - 1})
    for t in steps:
        state = state_before_step(t, T_run, dim=16)
        row = min(T_proxy - 1, int(np.floor(t / T_run * T_proxy + 1e-9)))
        np.testing.assert_allclose(mixer.weights(state), w[row], atol=1e-7, err_msg=f"step {t}")
    # progress beyond [0, 1] is clamped
    with torch.no_grad():
        edges = module(torch.tensor([[0.0] * 15 + [-5.0], [0.0] * 15 + [SCALE * 3]]))
    np.testing.assert_allclose(edges.double().numpy(), w[[0, -1]], atol=1e-7)


def test_trajectory_served_by_the_policy_server_in_process(tmp_path):
    T = 5
    w = schedule(T, seed=2)
    out = save_trajectory_policy(tmp_path / "traj", w, DOMAINS, spec(), {})
    server = PolicyServer(
        MixerSpec(
            kind="policy", policy_dir=str(out), domains=DOMAINS, natural=[1 / 3] * 3, state_dim=12
        )
    )
    for t in range(T):
        np.testing.assert_allclose(
            server.weights(state_before_step(t, T).tolist()), w[t], atol=1e-6
        )
    desc = server.describe()
    assert desc["mixer"] == "policy-trajectory" and desc["policy_kind"] == "trajectory"
    assert server.actor_state() is None  # no AC-ODM actor to export


@pytest.mark.parametrize(
    "weights, match",
    [
        (np.array([[0.5, 0.5, 0.1]]), "row 0.*sum to"),
        (np.array([[1 / 3] * 3, [1.2, -0.1, -0.1]]), "row 1.*negative"),
        (np.array([[np.nan, 0.5, 0.5]]), "row 0.*not finite"),
        (np.array([[0.5, 0.5]]), "2 weights but there are 3 domains"),
        (np.zeros((0, 3)), "T >= 1"),
        (np.array([1 / 3] * 3), "shape"),
    ],
)
def test_trajectory_bad_rows_refused(tmp_path, weights, match):
    with pytest.raises(PolicyFileError, match=match):
        save_trajectory_policy(tmp_path / "traj", weights, DOMAINS, spec(), {})
    assert not (tmp_path / "traj").exists()


def test_trajectory_needs_dim_and_progress_scale(tmp_path):
    with pytest.raises(PolicyFileError, match="progress_scale"):
        save_trajectory_policy(tmp_path / "a", schedule(3), DOMAINS, {"dim": 12}, {})
    with pytest.raises(PolicyFileError, match="dim"):
        save_trajectory_policy(tmp_path / "b", schedule(3), DOMAINS, {"progress_scale": 100.0}, {})


def test_tampered_trajectory_refused_on_load(tmp_path):
    out = save_trajectory_policy(tmp_path / "traj", schedule(4), DOMAINS, spec(), {})
    tensors = load_file(str(out / WEIGHTS_FILE))
    tensors["weights"][2] = torch.tensor([0.9, 0.9, -0.8], dtype=torch.float64)
    save_file(tensors, str(out / WEIGHTS_FILE))
    with pytest.raises(PolicyFileError, match="row 2"):
        load_policy(out)
    save_file({"weights": torch.full((5, 3), 1 / 3, dtype=torch.float64)}, str(out / WEIGHTS_FILE))
    with pytest.raises(PolicyFileError, match="does not match"):  # 5 rows, meta says 4
        load_policy(out)


# ----------------------------------------------------------------------------- kinds in general


def _edit_meta(path: Path, **changes) -> None:
    meta = json.loads((path / META_FILE).read_text())
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    (path / META_FILE).write_text(json.dumps(meta))


def test_unknown_kind_refused_with_the_valid_kinds(tmp_path):
    out = save_trajectory_policy(tmp_path / "traj", schedule(3), DOMAINS, spec(), {})
    _edit_meta(out, kind="pickle")
    with pytest.raises(
        PolicyFileError, match=r"unknown policy kind 'pickle'.*\['actor', 'mlp', 'trajectory'\]"
    ):
        load_policy(out)
    assert KINDS == ("actor", "mlp", "trajectory")


def test_actor_files_without_kind_still_load(tmp_path):
    torch.manual_seed(0)
    actor = Actor(12, 3, 16, 2)
    out = save_policy(tmp_path / "actor", actor, DOMAINS, spec(), {})
    assert json.loads((out / META_FILE).read_text())["kind"] == "actor"
    _edit_meta(out, kind=None)  # as written before kinds existed
    loaded, meta = load_policy(out)
    assert isinstance(loaded, Actor) and (meta["hidden"], meta["layers"]) == (16, 2)
    obs = torch.randn(4, 12)
    with torch.no_grad():
        assert torch.equal(loaded(obs), actor.eval()(obs))
    assert ActorMixer(out, DOMAINS, 12).name == "acodm"


def test_the_same_weights_give_the_same_bytes(tmp_path):
    """Reproducible runs can be checked by hash: saving one actor again writes identical files
    (safetensors orders its metadata map arbitrarily, so it must hold a single key)."""
    torch.manual_seed(0)
    actor = Actor(12, 3, 16, 2)
    files = [save_policy(tmp_path / f"p{i}", actor, DOMAINS, spec(), {"seed": 0}) for i in range(8)]
    for name in (WEIGHTS_FILE, META_FILE):
        assert len({(f / name).read_bytes() for f in files}) == 1, name


def test_kind_specific_keys_are_required(tmp_path):
    out = save_trajectory_policy(tmp_path / "traj", schedule(3), DOMAINS, spec(), {})
    _edit_meta(out, num_steps=None)
    with pytest.raises(PolicyFileError, match="missing key 'num_steps'.*trajectory"):
        load_policy(out)


def _tiny_mlp(state_dim: int = 12, K: int = 3) -> MLPPolicy:
    spec = MLPSpec(
        widths=[state_dim, 8, 2 * K],
        activations=["relu", None],
        layer_norm=[False, False],
        squash=True,
        bounds="unsquash",
        action_low=[0.0] * K,
        action_high=[1.0] * K,
        action_mapping="simplex",
        action_epsilon=1e-6,
    )
    torch.manual_seed(0)
    return MLPPolicy(state_dim, K, spec)


def _by_hand(policy: MLPPolicy, obs: torch.Tensor) -> np.ndarray:
    """_tiny_mlp's weights written out: Linear, relu, Linear, loc = first K, tanh squash to [-1, 1],
    unsquash to [0, 1], then (max(a, 0) + eps) / sum."""
    first, last = policy.net[0], policy.net[2]
    with torch.no_grad():
        loc = (torch.relu(obs @ first.weight.T + first.bias) @ last.weight.T + last.bias)[:, :3]
    a = (
        np.tanh(loc.double().numpy()) + 1
    ) / 2  # squash to [-1, 1], then unsquash to [0, 1]: (x + 1) / 2
    a = np.maximum(a, 0) + 1e-6
    return a / a.sum(axis=1, keepdims=True)


def test_mlp_policy_file_checks(tmp_path):
    from acodm_ray.agent.policy_file import save_mlp_policy

    policy = _tiny_mlp()
    out = save_mlp_policy(tmp_path / "mlp", policy, DOMAINS, spec(), {}, source={"algo": "PPO"})
    loaded, meta = load_policy(out)
    assert (
        meta["kind"] == "mlp" and meta["source"] == {"algo": "PPO"} and meta["format_version"] == 2
    )
    assert "hidden" not in meta and "layers" not in meta and "action_steps" not in meta
    obs = torch.randn(5, 12)
    with torch.no_grad():
        w = loaded(obs)
        assert torch.equal(w, policy(obs))
    np.testing.assert_allclose(w.double().numpy(), _by_hand(policy, obs), rtol=1e-5)
    torch.testing.assert_close(w.sum(-1), torch.ones(5))
    # the fields and tensors must agree; unknown activations, bounds and mappings are refused
    good = json.loads((out / META_FILE).read_text())
    _edit_meta(out, widths=[12, 9, 6])
    with pytest.raises(PolicyFileError, match="invalid 'mlp'|does not match"):
        load_policy(out)
    _edit_meta(out, widths=good["widths"], activations=["os.system", None])
    with pytest.raises(PolicyFileError, match="unknown activation 'os.system'"):
        load_policy(out)
    _edit_meta(out, activations=good["activations"], bounds="eval")
    with pytest.raises(PolicyFileError, match="unknown bounds 'eval'"):
        load_policy(out)
    _edit_meta(out, bounds=good["bounds"], action_mapping="identity")
    with pytest.raises(PolicyFileError, match="unknown action mapping 'identity'"):
        load_policy(out)
    _edit_meta(out, action_mapping="simplex", widths=[12, 8, 2])
    with pytest.raises(PolicyFileError, match="fewer than the 3 domains"):
        load_policy(out)
    _edit_meta(out, widths=good["widths"], squash=None)
    with pytest.raises(PolicyFileError, match="missing key 'squash'"):
        load_policy(out)
    with pytest.raises(PolicyMismatchError, match="state of dimension 12"):
        _edit_meta(out, squash=True)
        ActorMixer(out, DOMAINS, state_dim=14)


def _as_version_one(out: Path, policy: MLPPolicy) -> None:
    """Rewrite an "mlp" policy.json as format_version 1 wrote it: a layer list and an op list."""
    meta = json.loads((out / META_FILE).read_text())
    for name in policy.spec.to_meta():
        meta.pop(name)
    meta["format_version"] = 1
    meta["network"] = [
        {"type": "linear", "in_features": 12, "out_features": 8, "bias": True},
        {"type": "activation", "name": "relu"},
        {"type": "linear", "in_features": 8, "out_features": 6, "bias": True},
    ]
    meta["action_steps"] = [
        {"op": "slice", "start": 0, "stop": 3},
        {"op": "squash", "low": -1.0, "high": 1.0},
        {"op": "unsquash", "low": [0.0] * 3, "high": [1.0] * 3},
        {"op": "simplex", "eps": 1e-6},
    ]
    (out / META_FILE).write_text(json.dumps(meta))


def test_version_one_mlp_files_still_load(tmp_path):
    from acodm_ray.agent.policy_file import save_mlp_policy

    policy = _tiny_mlp()
    out = save_mlp_policy(tmp_path / "mlp", policy, DOMAINS, spec(), {})
    _as_version_one(out, policy)
    loaded, meta = load_policy(out)
    assert loaded.spec == policy.spec and meta["format_version"] == 1
    obs = torch.randn(5, 12)
    with torch.no_grad():
        assert torch.equal(loaded(obs), policy(obs))
    meta = json.loads((out / META_FILE).read_text())
    _edit_meta(out, action_steps=[*meta["action_steps"][:3], {"op": "eval"}])
    with pytest.raises(PolicyFileError, match="format_version 1.*no equivalent"):
        load_policy(out)
    _edit_meta(
        out, action_steps=meta["action_steps"], network=[meta["network"][0], {"type": "conv"}]
    )
    with pytest.raises(PolicyFileError, match=r"format_version 1.*layer 1 .*cannot be described"):
        load_policy(out)


@pytest.mark.parametrize("kind", ["mlp", "trajectory"])
def test_pickle_in_place_of_the_safetensors_is_refused(tmp_path, kind):
    from acodm_ray.agent.policy_file import save_mlp_policy

    if kind == "mlp":
        out = save_mlp_policy(tmp_path / "p", _tiny_mlp(), DOMAINS, spec(), {})
    else:
        out = save_trajectory_policy(tmp_path / "p", schedule(3), DOMAINS, spec(), {})
    marker = tmp_path / "pwned"
    (out / WEIGHTS_FILE).write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(PolicyFileError, match="safetensors"):
        load_policy(out)
    with pytest.raises(PolicyFileError):
        ActorMixer(out, DOMAINS, 12)
    torch.save({"w": _Payload(str(marker))}, out / WEIGHTS_FILE)
    with pytest.raises(PolicyFileError, match="safetensors"):
        load_policy(out)
    assert not marker.exists()


# ----------------------------------------------------------------------------- RLlib -> "mlp"

ALGOS = ["ppo", "sac", "appo"]
STEPS = 6


def _rl_setup():
    from acodm_ray.agent.config import AgentConfig
    from acodm_ray.config import RLConfig, to_dict

    cfg = tiny_config(train={"steps": STEPS, "grad_accum": 2})
    agent = AgentConfig(
        actor_hidden=16,
        actor_layers=2,
        critic_hidden=16,
        critic_layers=2,
        batch_size=4,
        replay_capacity=100,
    )
    rl = RLConfig(min_sample_timesteps_per_iteration=STEPS, train_batch_size=STEPS)
    env_config = {"experiment": to_dict(cfg), "warmup_decisions": 0, "action_mapping": "simplex"}
    return cfg, agent, rl, env_config


@pytest.fixture(scope="module", params=ALGOS)
def exported(request, ray_session, tmp_path_factory):
    """A tiny algorithm on the real env, one training iteration, exported (and its RLlib objects)."""
    from envs import DataMixingEnv
    from policies.export import export_policy
    from policies.registry import build_algo_config

    name = request.param
    cfg, agent, rl, env_config = _rl_setup()
    algo = build_algo_config(name, DataMixingEnv, env_config, agent, rl, seed=0).build_algo()
    try:
        algo.train()
        env = DataMixingEnv(env_config)
        env.reset(seed=0)
        out = tmp_path_factory.mktemp(f"policy-{name}")
        dirs = {
            "default": export_policy(
                algo, out / "default", env.domains, env.trainer.state_spec, {"algo": name}
            )
        }
        if name == "sac":
            dirs["loc"] = export_policy(
                algo, out / "loc", env.domains, env.trainer.state_spec, {}, sac_action="loc"
            )
        yield name, algo, env, cfg, dirs
    finally:
        algo.stop()


def rllib_weights(algo, env, cfg, obs: torch.Tensor, sac_action: str = "squashed") -> np.ndarray:
    """What RLlib computes, with RLlib's own objects: the learner module's forward_inference, the
    inference distribution's deterministic action, the connector's unsquash_action, the env's
    action_to_weights."""
    from ray.rllib.core import DEFAULT_MODULE_ID
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.distribution.torch.torch_distribution import TorchSquashedGaussian
    from ray.rllib.utils.spaces.space_utils import unsquash_action

    from envs import action_to_weights

    module = algo.learner_group._learner.module[DEFAULT_MODULE_ID].unwrapped()
    with torch.no_grad():
        inputs = module.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
        dist = module.get_inference_action_dist_cls().from_logits(inputs)
        if isinstance(dist, TorchSquashedGaussian) and sac_action == "squashed":
            actions = dist._squash(dist.loc)  # the squashed Gaussian's deterministic output
        else:
            actions = dist.to_deterministic().sample()
    actions = actions.numpy()
    assert algo.config.normalize_actions and not algo.config.clip_actions
    env_actions = [unsquash_action(a, env.action_space) for a in actions]
    return np.stack([action_to_weights(a, "simplex", cfg.env.action_epsilon) for a in env_actions])


def random_states(env, n: int = 8) -> torch.Tensor:
    env.observation_space.seed(0)
    return torch.as_tensor(np.stack([env.observation_space.sample() for _ in range(n)]))


def test_exported_mlp_policy_matches_rllib(exported):
    name, algo, env, cfg, dirs = exported
    module, meta = load_policy(dirs["default"])
    assert isinstance(module, MLPPolicy)
    assert (
        meta["kind"] == "mlp"
        and meta["domains"] == env.domains
        and meta["state_dim"] == env.trainer.tracker.dim
    )
    assert "hidden" not in meta and "layers" not in meta
    assert meta["source"]["algo"] == algo.__class__.__name__
    assert meta["source"]["distribution"] == (
        "TorchSquashedGaussian" if name == "sac" else "TorchDiagGaussian"
    )
    assert (meta["squash"], meta["bounds"], meta["action_mapping"]) == (
        name == "sac",
        "unsquash",
        "simplex",
    )
    assert meta["widths"] == [
        env.trainer.tracker.dim,
        16,
        16,
        2 * len(env.domains),
    ]  # fcnet, pi head 2K
    obs = random_states(env)
    if (
        name == "appo"
    ):  # its learner thread's queue is what the export drains (wait_for_queued_updates)
        assert algo.learner_group._learner._learner_thread_in_queue.unfinished_tasks == 0
    expected = rllib_weights(algo, env, cfg, obs)
    with torch.no_grad():
        got = module(obs).double().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)
    mixer = ActorMixer(dirs["default"], env.domains, env.trainer.tracker.dim)
    assert mixer.name == "policy-mlp"
    for state, w in zip(obs.numpy(), expected):
        np.testing.assert_allclose(mixer.weights(state), w, atol=1e-5)
    server = PolicyServer(
        MixerSpec(
            kind="policy",
            policy_dir=str(dirs["default"]),
            domains=env.domains,
            natural=[1 / len(env.domains)] * len(env.domains),
            state_dim=env.trainer.tracker.dim,
        )
    )
    np.testing.assert_allclose(server.weights(obs[0].tolist()), expected[0], atol=1e-5)
    if (
        name == "sac"
    ):  # RLlib 2.60's to_deterministic(): the raw loc, not squashed (ray issue #51544)
        loc_module, loc_meta = load_policy(dirs["loc"])
        assert loc_meta["source"]["deterministic"] == "loc"
        with torch.no_grad():
            loc_w = loc_module(obs).double().numpy()
        np.testing.assert_allclose(
            loc_w, rllib_weights(algo, env, cfg, obs, sac_action="loc"), atol=1e-5
        )
        assert (
            np.abs(loc_w - got).max() > 1e-3
        )  # the two SAC variants really differ on these states


def test_exported_mlp_policy_matches_the_env_runner_end_to_end(exported):
    """explore=False sampling through RLlib's real connector pipeline: the weights the env used
    (info["weights"]) are what the exported policy gives for the same observations."""
    name, algo, env, cfg, dirs = exported
    from ray.rllib.connectors.module_to_env.normalize_and_clip_actions import (
        NormalizeAndClipActions,
    )

    runner = algo.env_runner
    pieces = [p for p in runner._module_to_env.connectors if isinstance(p, NormalizeAndClipActions)]
    assert len(pieces) == 1 and pieces[0].normalize_actions and not pieces[0].clip_actions
    algo.env_runner_group.sync_weights(
        from_worker_or_learner_group=algo.learner_group, inference_only=True
    )
    episodes = runner.sample(num_timesteps=3, explore=False, force_reset=True)
    ep = episodes[0]
    obs = np.asarray(ep.get_observations())[: len(ep)]
    used = np.stack([info["weights"] for info in ep.get_infos()[1 : len(ep) + 1]])
    module, _ = load_policy(dirs["loc" if name == "sac" else "default"])  # RLlib 2.60 SAC: raw loc
    with torch.no_grad():
        got = module(torch.as_tensor(obs)).double().numpy()
    np.testing.assert_allclose(got, used, atol=1e-5)


def test_exported_policy_loads_without_rllib(exported):
    """For every algorithm's export: a fresh interpreter loads and runs it and never imports ray."""
    name, *_, dirs = exported
    code = (
        "import sys, torch; from acodm_ray.agent.policy_file import load_policy;"
        f"m, meta = load_policy({str(dirs['default'])!r});"
        "w = m(torch.zeros(1, meta['state_dim']));"
        "assert abs(float(w.sum()) - 1) < 1e-5;"
        "assert not any(k == 'ray' or k.startswith('ray.') for k in sys.modules), 'ray imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=300)


def test_export_waits_for_the_updates_an_async_learner_has_queued():
    """APPO / IMPALA update on a learner thread: algo.train() can return with a batch still queued,
    and an export that read the weights then missed that update (seen: exported APPO policy 2e-5 off
    the learner's in a loaded full test run). wait_for_queued_updates blocks until the queue is done;
    it says False, not hang, when nothing works the queue off."""
    import queue
    import threading
    import time
    from types import SimpleNamespace

    from policies.export import wait_for_queued_updates

    applied = []
    pending = queue.Queue()
    algo = SimpleNamespace(
        learner_group=SimpleNamespace(_learner=SimpleNamespace(_learner_thread_in_queue=pending))
    )
    pending.put("batch")

    def learner_thread():
        batch = pending.get()
        time.sleep(0.2)
        applied.append(batch)
        pending.task_done()

    threading.Thread(target=learner_thread, daemon=True).start()
    assert wait_for_queued_updates(algo) and applied == ["batch"]
    assert wait_for_queued_updates(
        SimpleNamespace(learner_group=SimpleNamespace(_learner=None))
    )  # nothing async
    pending.put("never worked off")
    assert not wait_for_queued_updates(algo, timeout_s=0.1)

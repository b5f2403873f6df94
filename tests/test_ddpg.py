"""The pure-torch AC-ODM agent: networks, DDPG/warm-up losses, targets, exploration, policy files."""

from __future__ import annotations

import copy
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from acodm_ray.agent import ddpg
from acodm_ray.agent.config import AgentConfig
from acodm_ray.agent.networks import Actor, VectorCritic, build_networks
from acodm_ray.agent.policy_file import (
    META_FILE,
    WEIGHTS_FILE,
    PolicyFileError,
    load_policy,
    save_policy,
)

GAMMA = 0.95


# ----------------------------------------------------------------------------- stub networks
class LinearCritic(nn.Module):
    """Q(s, a) = s Ws + a Wa: simple enough to evaluate by an independent numpy formula."""

    def __init__(self, ws: np.ndarray, wa: np.ndarray) -> None:
        super().__init__()
        self.ws = nn.Parameter(torch.tensor(ws, dtype=torch.float64))
        self.wa = nn.Parameter(torch.tensor(wa, dtype=torch.float64))

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return obs @ self.ws + actions @ self.wa


class SoftmaxActor(nn.Module):
    """pi(s) = softmax(s W)."""

    def __init__(self, w: np.ndarray) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w, dtype=torch.float64))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.softmax(obs @ self.w, dim=-1)


def np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# A fixed tiny batch: B = 3 transitions, S = 2 state features, K = 2 domains.
OBS = np.array([[0.5, -1.0], [1.0, 2.0], [-0.5, 0.0]])
NEXT_OBS = np.array([[1.5, 0.0], [0.0, 1.0], [2.0, -2.0]])
ACTIONS = np.array([[0.25, 0.75], [0.5, 0.5], [0.9, 0.1]])
REWARDS = np.array([[1.0, -1.0], [0.5, 0.0], [-2.0, 3.0]])
DONES = np.array([0.0, 1.0, 0.0])
WS, WA = np.array([[1.0, 2.0], [-1.0, 0.5]]), np.array([[0.3, -0.2], [1.0, 0.4]])
TWS, TWA = np.array([[0.5, -1.0], [2.0, 1.0]]), np.array([[-0.7, 0.1], [0.2, 0.9]])
TW_ACTOR = np.array([[1.0, -1.0], [0.5, 2.0]])
W_ACTOR = np.array([[-0.3, 0.8], [1.2, 0.1]])


def t(x: np.ndarray) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def test_critic_loss_matches_explicit_formula():
    critic = LinearCritic(WS, WA)
    target_critic, target_actor = LinearCritic(TWS, TWA), SoftmaxActor(TW_ACTOR)
    loss = ddpg.critic_loss(
        critic,
        target_actor,
        target_critic,
        t(OBS),
        t(ACTIONS),
        t(REWARDS),
        t(NEXT_OBS),
        t(DONES),
        GAMMA,
    )
    next_a = np_softmax(NEXT_OBS @ TW_ACTOR)
    y = REWARDS + GAMMA * (1.0 - DONES)[:, None] * (NEXT_OBS @ TWS + next_a @ TWA)
    expected = np.mean((OBS @ WS + ACTIONS @ WA - y) ** 2)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    # A terminal transition's target is its reward alone.
    y_t = ddpg.critic_targets(target_actor, target_critic, t(REWARDS), t(NEXT_OBS), t(DONES), GAMMA)
    np.testing.assert_allclose(y_t[1].numpy(), REWARDS[1])


def test_critic_loss_literal_value():
    """One transition, K = 1, constant networks: Q = 2, Q' = 4, r = 1, gamma = 0.5 ->
    y = 1 + 0.5 * 4 = 3, loss = (2 - 3)^2 = 1; with done = 1: y = 1, loss = 1 as well; with
    r = 0 and done = 0: y = 2, loss = 0."""
    critic = LinearCritic(np.zeros((1, 1)), np.array([[2.0]]))
    target_critic = LinearCritic(np.zeros((1, 1)), np.array([[4.0]]))
    target_actor = SoftmaxActor(np.zeros((1, 1)))  # softmax over one domain = 1
    obs, a = t(np.array([[0.7]])), t(np.array([[1.0]]))
    args = (critic, target_actor, target_critic, obs, a)
    assert ddpg.critic_loss(*args, t(np.array([[1.0]])), obs, t(np.array([0.0])), 0.5).item() == 1.0
    assert ddpg.critic_loss(*args, t(np.array([[1.0]])), obs, t(np.array([1.0])), 0.5).item() == 1.0
    assert ddpg.critic_loss(*args, t(np.array([[0.0]])), obs, t(np.array([0.0])), 0.5).item() == 0.0


def test_actor_loss_matches_explicit_formula():
    actor, critic = SoftmaxActor(W_ACTOR), LinearCritic(WS, WA)
    loss = ddpg.actor_loss(
        actor, critic, t(OBS), "mean", 0.0, 0.0, "horizon", "action"
    )  # the paper's
    pi = np_softmax(OBS @ W_ACTOR)
    expected = -np.mean(OBS @ WS + pi @ WA)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    loss.backward()
    assert actor.w.grad is not None and actor.w.grad.abs().sum() > 0
    assert critic.ws.grad is None and critic.wa.grad is None  # no gradient reaches the critic


def test_warmup_losses_match_explicit_formulas():
    actor, critic = SoftmaxActor(W_ACTOR), LinearCritic(WS, WA)
    odm = np.array([[0.6, 0.4], [0.1, 0.9], [0.5, 0.5]])
    imit = ddpg.imitation_loss(actor, t(OBS), t(odm))
    assert imit.item() == pytest.approx(np.mean((np_softmax(OBS @ W_ACTOR) - odm) ** 2), rel=1e-12)
    warm = ddpg.warmup_critic_loss(critic, t(OBS), t(ACTIONS), t(REWARDS), GAMMA)
    expected = np.mean((OBS @ WS + ACTIONS @ WA - (1 + GAMMA) * REWARDS) ** 2)
    assert warm.item() == pytest.approx(expected, rel=1e-12)
    # Literal: Q = 2, r = 1, gamma = 0.5 -> y = 1.5, loss = 0.25.
    c1 = LinearCritic(np.zeros((1, 1)), np.array([[2.0]]))
    one = t(np.array([[1.0]]))
    assert ddpg.warmup_critic_loss(c1, one, one, one, 0.5).item() == 0.25


def test_soft_update_math():
    online, target = nn.Linear(3, 2), nn.Linear(3, 2)
    before = [p.detach().clone() for p in target.parameters()]
    ddpg.soft_update(target, online, 0.1)
    for b, o, tp in zip(before, online.parameters(), target.parameters()):
        torch.testing.assert_close(tp, 0.1 * o + 0.9 * b)
    ddpg.soft_update(target, online, 1.0)
    for o, tp in zip(online.parameters(), target.parameters()):
        assert torch.equal(tp, o)  # tau = 1 is an exact hard copy
    snapshot = [p.detach().clone() for p in target.parameters()]
    ddpg.soft_update(target, nn.Linear(3, 2), 0.0)
    assert all(torch.equal(a, b) for a, b in zip(snapshot, target.parameters()))
    with pytest.raises(ValueError, match="tau"):
        ddpg.soft_update(target, online, 1.5)


@pytest.mark.parametrize("k", [3, 22])
def test_explore_keeps_a_distribution(k):
    gen = torch.Generator().manual_seed(0)
    w = torch.softmax(torch.randn(64, k, generator=gen), dim=-1)
    noisy = ddpg.explore(w, 1e-3, gen)
    assert noisy.shape == w.shape
    assert torch.all(noisy >= 0)
    torch.testing.assert_close(noisy.sum(-1), torch.ones(64))
    assert not torch.equal(noisy, w)
    assert (noisy - w).abs().max() < 2e-3 * k  # a small perturbation
    assert torch.equal(ddpg.explore(w, 0.0, gen), w)
    # Noise larger than every weight: a row may vanish; it keeps its input weights.
    tiny = torch.full((1, k), 1.0 / k)
    out = ddpg.explore(tiny, 10.0, gen)
    torch.testing.assert_close(out.sum(-1), torch.ones(1))
    assert torch.all(out >= 0)


def tiny_nets(seed: int = 0) -> tuple[Actor, VectorCritic]:
    torch.manual_seed(seed)
    return Actor(7, 3, 16, 2), VectorCritic(7, 3, 16, 2)


def params(m: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in m.parameters()]


def same(a: list[torch.Tensor], m: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, m.parameters()))


def test_actor_step_updates_actor_only():
    actor, critic = tiny_nets()
    a_opt, c_opt = (
        torch.optim.Adam(actor.parameters(), 1e-2),
        torch.optim.Adam(critic.parameters(), 1e-2),
    )
    obs = torch.randn(8, 7)
    a0, c0 = params(actor), params(critic)
    ddpg.actor_loss(actor, critic, obs, "mean", 0.0, 0.0, "horizon", "action").backward()
    assert all(p.grad is None for p in critic.parameters())
    a_opt.step()
    c_opt.step()  # even stepping the critic's optimizer (the reference's slip) cannot move it
    assert not same(a0, actor)
    assert same(c0, critic)


def test_reference_slip_is_detectable():
    """The reference steps the CRITIC's optimizer with the actor's loss: the actor never moves.
    The check used above (actor parameters change after an actor step) catches that."""
    actor, critic = tiny_nets()
    c_opt = torch.optim.Adam(critic.parameters(), 1e-2)
    a0 = params(actor)
    loss = -critic(torch.randn(8, 7), actor(torch.randn(8, 7))).mean()  # the reference's loss
    loss.backward()
    c_opt.step()
    assert same(a0, actor)


def test_critic_step_updates_critic_only():
    actor, critic = tiny_nets()
    target_actor, target_critic = copy.deepcopy(actor), copy.deepcopy(critic)
    c_opt = torch.optim.Adam(critic.parameters(), 1e-2)
    b = 8
    obs, next_obs = torch.randn(b, 7), torch.randn(b, 7)
    actions = torch.softmax(torch.randn(b, 3), -1)
    a0, c0 = params(actor), params(critic)
    ta0, tc0 = params(target_actor), params(target_critic)
    loss = ddpg.critic_loss(
        critic,
        target_actor,
        target_critic,
        obs,
        actions,
        torch.randn(b, 3),
        next_obs,
        torch.zeros(b),
        GAMMA,
    )
    loss.backward()
    assert all(p.grad is None for p in actor.parameters())
    assert all(p.grad is None for m in (target_actor, target_critic) for p in m.parameters())
    c_opt.step()
    assert not same(c0, critic)
    assert same(a0, actor) and same(ta0, target_actor) and same(tc0, target_critic)
    # Warm-up losses keep the same separation.
    actor.zero_grad(), critic.zero_grad(set_to_none=True)
    ddpg.imitation_loss(actor, obs, actions).backward()
    assert all(p.grad is None for p in critic.parameters())
    ddpg.warmup_critic_loss(critic, obs, actions, torch.randn(b, 3), GAMMA).backward()
    assert all(p.grad is not None for p in critic.parameters())


def test_networks_shapes_and_config():
    cfg = AgentConfig(actor_hidden=16, actor_layers=2, critic_hidden=8, critic_layers=3)
    actor, critic = build_networks(cfg, 10, 4)
    obs = torch.randn(5, 10)
    w = actor(obs)
    assert w.shape == (5, 4)
    torch.testing.assert_close(w.sum(-1), torch.ones(5))
    assert critic(obs, w).shape == (5, 4)
    assert sum(isinstance(m, nn.LayerNorm) for m in actor.modules()) == 2
    assert sum(isinstance(m, nn.LayerNorm) for m in critic.modules()) == 3
    with pytest.raises(ValueError, match="layers"):
        Actor(10, 4, 16, 0)
    with pytest.raises(ValueError, match="num_domains"):
        VectorCritic(10, 0, 16, 1)


# ----------------------------------------------------------------------------- policy files
def test_policy_file_roundtrip(tmp_path):
    torch.manual_seed(1)
    actor = Actor(7, 3, 16, 2)
    domains = ["web", "code", "books"]
    spec = {"groups": ["loss", "dloss", "seen", "norm", "dnorm", "progress"], "K": 3, "L": 0}
    out = save_policy(tmp_path / "pol", actor, domains, spec, {"gamma": 0.95})
    assert {p.name for p in out.iterdir()} == {WEIGHTS_FILE, META_FILE}
    loaded, meta = load_policy(out)
    obs = torch.randn(4, 7)
    with torch.no_grad():
        assert torch.equal(loaded(obs), actor.eval()(obs))
    assert meta["domains"] == domains and meta["state_spec"] == spec
    assert (meta["state_dim"], meta["num_domains"], meta["hidden"], meta["layers"]) == (7, 3, 16, 2)
    assert meta["config"] == {"gamma": 0.95}
    with pytest.raises(PolicyFileError, match="domain"):
        save_policy(tmp_path / "bad", actor, ["a", "b"], spec, {})


def test_policy_file_missing_paths(tmp_path):
    with pytest.raises(PolicyFileError, match=str(tmp_path / "nope")):
        load_policy(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PolicyFileError, match="policy.json"):
        load_policy(tmp_path / "empty")
    save_policy(tmp_path / "pol", Actor(4, 2, 8, 1), ["a", "b"], {}, {})
    (tmp_path / "pol" / WEIGHTS_FILE).unlink()
    with pytest.raises(PolicyFileError, match=WEIGHTS_FILE):
        load_policy(tmp_path / "pol")


class _Booby:
    """Unpickling this creates a marker file (stands for arbitrary code execution)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_policy_is_refused_without_unpickling(tmp_path):
    # Control: unpickling really would create the marker.
    control = tmp_path / "control_marker"
    pickle.loads(pickle.dumps(_Booby(str(control))))
    assert control.exists()

    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Booby(str(marker)))
    # (a) a pickle file passed as the policy
    pkl = tmp_path / "policy.pkl"
    pkl.write_bytes(payload)
    with pytest.raises(PolicyFileError, match="refused"):
        load_policy(pkl)
    # (b) a torch.save-style .pt file passed as the policy
    pt = tmp_path / "actor.pt"
    pt.write_bytes(payload)
    with pytest.raises(PolicyFileError, match="not a policy directory"):
        load_policy(pt)
    # (c) a policy directory whose weights file is a pickle in disguise
    d = save_policy(tmp_path / "pol", Actor(4, 2, 8, 1), ["a", "b"], {}, {})
    (d / WEIGHTS_FILE).write_bytes(payload)
    with pytest.raises(PolicyFileError, match="safetensors"):
        load_policy(d)
    # (d) metadata that is not JSON
    d2 = save_policy(tmp_path / "pol2", Actor(4, 2, 8, 1), ["a", "b"], {}, {})
    (d2 / META_FILE).write_bytes(payload)
    with pytest.raises(PolicyFileError, match="JSON"):
        load_policy(d2)
    assert not marker.exists()


def test_policy_file_wrong_format(tmp_path):
    d = save_policy(tmp_path / "pol", Actor(4, 2, 8, 1), ["a", "b"], {}, {})
    meta = json.loads((d / META_FILE).read_text())
    meta["format_version"] = 99
    (d / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(PolicyFileError, match="format_version"):
        load_policy(d)


def test_agent_package_does_not_import_rllib():
    code = (
        "import sys, acodm_ray.agent.ddpg, acodm_ray.agent.networks, acodm_ray.agent.policy_file;"
        "bad = [m for m in sys.modules if m == 'ray.rllib' or m.startswith('ray.rllib.')];"
        "assert not bad, bad"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


# ------------------------------------------------------------------ our changes to the paper's agent


def test_weighted_actor_objective_and_entropy_match_explicit_formula():
    """-mean_b[(1 - gamma) sum_i pi_i Q_i + c H(pi)]: the value of r = sum_i w_i s_i, per step."""
    actor, critic = SoftmaxActor(W_ACTOR), LinearCritic(WS, WA)
    loss = ddpg.actor_loss(actor, critic, t(OBS), "weighted", 0.3, 0.9, "horizon", "action")
    pi = np_softmax(OBS @ W_ACTOR)
    q = OBS @ WS + pi @ WA
    h = -(pi * np.log(pi)).sum(axis=1)
    expected = -np.mean(0.1 * (pi * q).sum(axis=1) + 0.3 * h)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    loss.backward()
    assert critic.ws.grad is None and critic.wa.grad is None
    # the paper's objective with the same entropy term: -mean_b[mean_i Q_i + c H]
    paper = ddpg.actor_loss(
        SoftmaxActor(W_ACTOR), critic, t(OBS), "mean", 0.3, 0.9, "horizon", "action"
    )
    assert paper.item() == pytest.approx(-np.mean(q.mean(axis=1) + 0.3 * h), rel=1e-12)
    with pytest.raises(ValueError, match="unknown actor objective"):
        ddpg.actor_loss(actor, critic, t(OBS), "max", 0.0, 0.9, "horizon", "action")


def test_weighted_objective_moves_weight_to_the_better_domain():
    """With Q_1 > Q_0 for every action the weighted objective's gradient raises pi_1; the paper's
    mean-Q objective has a gradient only through Q's action input, whatever the weights' spread."""
    # Q(s, a) = s Ws with s = (1, 1): Q = (0, 1) for every action: domain 1 is worth more
    bias = LinearCritic(np.array([[0.0, 0.5], [0.0, 0.5]]), np.zeros((2, 2)))
    actor = SoftmaxActor(np.zeros((2, 2)))
    ones = t(np.ones((1, 2)))
    ddpg.actor_loss(actor, bias, ones, "weighted", 0.0, 0.0, "horizon", "action").backward()
    g = actor.w.grad.numpy()
    assert (g[:, 1] < 0).all() and (g[:, 0] > 0).all()  # descending the loss raises logit 1
    flat = SoftmaxActor(np.zeros((2, 2)))
    ddpg.actor_loss(flat, bias, ones, "mean", 0.0, 0.0, "horizon", "action").backward()
    assert torch.count_nonzero(flat.w.grad) == 0  # mean-Q: no signal at all


def test_masked_critic_loss_ignores_unscored_domains():
    """A NaN reward is masked: the loss equals MSE over the finite entries only (not a 0 target)."""
    critic = LinearCritic(WS, WA)
    target_critic, target_actor = LinearCritic(TWS, TWA), SoftmaxActor(TW_ACTOR)
    rewards = REWARDS.copy()
    rewards[0, 1] = np.nan
    loss = ddpg.critic_loss(
        critic,
        target_actor,
        target_critic,
        t(OBS),
        t(ACTIONS),
        t(rewards),
        t(NEXT_OBS),
        t(DONES),
        GAMMA,
    )
    next_a = np_softmax(NEXT_OBS @ TW_ACTOR)
    y = rewards + GAMMA * (1.0 - DONES)[:, None] * (NEXT_OBS @ TWS + next_a @ TWA)
    err = (OBS @ WS + ACTIONS @ WA - y) ** 2
    assert loss.item() == pytest.approx(np.nanmean(err), rel=1e-12)  # 5 entries, not 6
    warm = ddpg.warmup_critic_loss(critic, t(OBS), t(ACTIONS), t(rewards), GAMMA)
    assert warm.item() == pytest.approx(
        np.nanmean((OBS @ WS + ACTIONS @ WA - (1 + GAMMA) * rewards) ** 2), rel=1e-12
    )
    td = ddpg.td_error(
        critic,
        target_actor,
        target_critic,
        t(OBS),
        t(ACTIONS),
        t(rewards),
        t(NEXT_OBS),
        t(DONES),
        GAMMA,
    )
    assert td == pytest.approx(np.nanmean(np.sqrt(err)), rel=1e-9)


def test_imitation_on_odm_rows_only():
    actor = SoftmaxActor(W_ACTOR)
    odm = np.array([[0.6, 0.4], [0.1, 0.9], [0.5, 0.5]])
    rows = t(np.array([1.0, 0.0, 1.0]))
    per_row = np.mean((np_softmax(OBS @ W_ACTOR) - odm) ** 2, axis=1)
    assert ddpg.imitation_loss(actor, t(OBS), t(odm), rows).item() == pytest.approx(
        (per_row[0] + per_row[2]) / 2
    )
    assert (
        ddpg.imitation_loss(actor, t(OBS), t(odm), t(np.zeros(3))).item() == 0.0
    )  # no ODM row: nothing


def test_actor_floor_keeps_every_domain():
    actor = Actor(4, 5, 8, 1, floor=0.02)
    with torch.no_grad():
        actor.head.weight.mul_(0).add_(torch.eye(5, 8) * 1e3)  # a one-hot softmax
        w = actor(torch.ones(3, 4) * 10)
    np.testing.assert_allclose(w.sum(dim=1).numpy(), 1.0, rtol=1e-6)
    assert w.min() >= 0.02 - 1e-7 and w.max() <= 1 - 4 * 0.02 + 1e-6
    with pytest.raises(ValueError, match="floor"):
        Actor(4, 5, 8, 1, floor=0.2)  # 5 x 0.2 = 1 leaves nothing to learn


def test_policy_file_keeps_the_floor(tmp_path):
    actor = Actor(7, 3, 16, 2, floor=0.05)
    out = save_policy(tmp_path / "pol", actor, ["a", "b", "c"], {"dim": 7}, {})
    loaded, meta = load_policy(out)
    assert meta["floor"] == 0.05 and loaded.floor == 0.05
    obs = torch.randn(4, 7)
    with torch.no_grad():
        assert torch.equal(loaded(obs), actor.eval()(obs))


def test_lr_points_hand_computed():
    from acodm_ray.agent.config import lr_at, lr_points

    cfg = AgentConfig(lr_schedule="cosine", lr_warmup_fraction=0.1, min_lr_ratio=0.1)
    pts = lr_points(cfg, 1.0, 100, num_points=3)
    # warm-up from 1/10 at 0 to 1 at step 10, cosine to 0.1 at 100 through 0.55 at 55
    assert pts == [[0, 0.1], [10, 1.0], [55, pytest.approx(0.55)], [100, pytest.approx(0.1)]]
    assert lr_at(pts, 5) == pytest.approx(0.55) and lr_at(pts, 1000) == pytest.approx(0.1)
    assert lr_points(AgentConfig(lr_schedule="constant"), 3e-4, 100) == [[0, 3e-4]]


def test_value_spread_is_the_range_of_per_step_domain_values():
    """(1 - gamma) mean_b Q_i(s_b, pi(s_b)), max minus min over domains, by hand on the linear nets."""
    critic, actor = LinearCritic(WS, WA), SoftmaxActor(W_ACTOR)
    q = OBS @ WS + np_softmax(OBS @ W_ACTOR) @ WA  # (B, K)
    values = (1.0 - GAMMA) * q.mean(axis=0)
    assert ddpg.value_spread(actor, critic, t(OBS), GAMMA, "horizon") == pytest.approx(
        values.max() - values.min(), rel=1e-12
    )


def test_relative_value_units_divide_by_the_mean_absolute_value():
    """value_units "relative": v = Q / mean_{b,i} |Q| (a constant scale), so the loss and the spread
    do not change when the critic's values are all multiplied by 7 (a critic at another horizon)."""
    actor, critic = SoftmaxActor(W_ACTOR), LinearCritic(WS, WA)
    pi = np_softmax(OBS @ W_ACTOR)
    q = OBS @ WS + pi @ WA
    v = q / np.abs(q).mean()
    h = -(pi * np.log(pi)).sum(axis=1)
    loss = ddpg.actor_loss(
        actor,
        critic,
        t(OBS),
        "weighted",
        entropy_coef=0.3,
        gamma=0.9,
        value_units="relative",
        value_gradient="action",
    )
    assert loss.item() == pytest.approx(-np.mean((pi * v).sum(axis=1) + 0.3 * h), rel=1e-12)
    spread = ddpg.value_spread(actor, critic, t(OBS), 0.9, "relative")
    assert spread == pytest.approx(v.mean(axis=0).max() - v.mean(axis=0).min(), rel=1e-12)
    for factor in (7.0, 0.01):  # larger and smaller than 1: the scale is |Q|'s, not clipped at 1
        scaled = LinearCritic(factor * WS, factor * WA)
        assert ddpg.actor_loss(
            actor, scaled, t(OBS), "weighted", 0.3, 0.9, "relative", "action"
        ).item() == pytest.approx(loss.item())
        assert ddpg.value_spread(actor, scaled, t(OBS), 0.9, "relative") == pytest.approx(spread)
    # the scale is a constant: the actor's gradient is the one of sum_i pi_i Q_i / c with c fixed
    fixed = SoftmaxActor(W_ACTOR)
    c = float(np.abs(q).mean())
    (
        -(fixed(t(OBS)) * ddpg.q_frozen(critic, t(OBS), fixed(t(OBS)))).sum(dim=-1).mean() / c
        - 0.3 * ddpg.entropy(fixed(t(OBS))).mean()
    ).backward()
    actor.w.grad = None
    ddpg.actor_loss(actor, critic, t(OBS), "weighted", 0.3, 0.9, "relative", "action").backward()
    assert torch.allclose(actor.w.grad, fixed.w.grad, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="unknown value units"):
        ddpg.per_step_values(t(q), 0.9, "per_episode")


def test_imitation_of_a_single_odm_row_and_td_error_of_an_unscored_batch():
    """One ODM row: its error alone (divided by 1, not more). No scored entry at all: td_error 0."""
    actor = SoftmaxActor(W_ACTOR)
    odm = np.array([[0.6, 0.4], [0.1, 0.9], [0.5, 0.5]])
    per_row = np.mean((np_softmax(OBS @ W_ACTOR) - odm) ** 2, axis=1)
    assert ddpg.imitation_loss(
        actor, t(OBS), t(odm), t(np.array([0.0, 1.0, 0.0]))
    ).item() == pytest.approx(per_row[1])
    critic, target_critic, target_actor = (
        LinearCritic(WS, WA),
        LinearCritic(TWS, TWA),
        SoftmaxActor(TW_ACTOR),
    )
    unscored = np.full_like(REWARDS, np.nan)
    assert (
        ddpg.td_error(
            critic,
            target_actor,
            target_critic,
            t(OBS),
            t(ACTIONS),
            t(unscored),
            t(NEXT_OBS),
            t(DONES),
            GAMMA,
        )
        == 0.0
    )


# ------------------------------------------------------------------ how far the mix moves


# B = 4 rows, K = 3 domains; NaN = not scored in that row
EVIDENCE_REWARDS = np.array(
    [[1.0, 2.0, np.nan], [3.0, 2.0, 5.0], [2.0, np.nan, np.nan], [2.0, 4.0, 1.0]]
)
# by hand: domain 0: n 4, mean 2, var 2/3, SE^2 1/6; domain 1: n 3, mean 8/3, var 4/3, SE^2 4/9;
# domain 2: n 2, mean 3, var 8, SE^2 4; T = sqrt((1/6 + 4/9 + 4) / 3) / ((2 + 8/3 + 3) / 3)
EVIDENCE_T = np.sqrt((1 / 6 + 4 / 9 + 4) / 3) / ((2 + 8 / 3 + 3) / 3)


def test_evidence_temperature_hand_computed():
    """agent.temperature "evidence": the RMS over domains of the standard error of each domain's
    mean reward over the batch, divided by the mean absolute per-domain mean."""
    assert EVIDENCE_T == pytest.approx(0.48513, abs=1e-5)
    assert ddpg.evidence_temperature(t(EVIDENCE_REWARDS)) == pytest.approx(EVIDENCE_T, rel=1e-12)
    # a domain scored in one row only has no standard error: left out of both means
    once = np.column_stack([EVIDENCE_REWARDS, [np.nan, 100.0, np.nan, np.nan]])
    assert ddpg.evidence_temperature(t(once)) == pytest.approx(EVIDENCE_T, rel=1e-12)
    # relative units: rewards 7x larger (or a critic at another horizon) give the same temperature
    assert ddpg.evidence_temperature(t(7.0 * EVIDENCE_REWARDS)) == pytest.approx(EVIDENCE_T)
    # four times the rows with the same spread: half the standard error
    assert ddpg.evidence_temperature(t(np.tile(EVIDENCE_REWARDS, (4, 1)))) == pytest.approx(
        np.sqrt((1 / 6 * 3 / 15 + 4 / 9 * 2 / 11 + 4 * 1 / 7) / 3) / ((2 + 8 / 3 + 3) / 3)
    )
    # no evidence (no domain scored twice; every mean 0): temperature 1, the fixed rule's
    assert ddpg.evidence_temperature(t(np.array([[1.0, np.nan], [np.nan, 2.0]]))) == 1.0
    assert ddpg.evidence_temperature(t(np.array([[1.0, -1.0], [-1.0, 1.0]]))) == 1.0


def test_update_actor_loss_runs_at_the_evidence_temperature():
    """The actor's loss under "evidence" is the weighted objective with entropy coefficient
    entropy_coef x T (T by hand above); under "fixed" it is entropy_coef itself."""
    actor, critic = SoftmaxActor(W_ACTOR), LinearCritic(WS, WA)
    obs = t(np.vstack([OBS, OBS[:1]]))  # 4 rows, as many as the rewards
    pi = np_softmax(obs.numpy() @ W_ACTOR)
    q = obs.numpy() @ WS + pi @ WA
    v = q / np.abs(q).mean()
    h = -(pi * np.log(pi)).sum(axis=1)
    rewards = t(EVIDENCE_REWARDS[:, :2])  # K = 2 here
    r = EVIDENCE_REWARDS[:, :2]
    # domain 0: SE^2 1/6; domain 1: SE^2 4/9; means 2 and 8/3
    temp = np.sqrt((1 / 6 + 4 / 9) / 2) / ((2 + 8 / 3) / 2)
    assert ddpg.evidence_temperature(t(r)) == pytest.approx(temp, rel=1e-12)
    for mode, coef in (("evidence", 0.5 * temp), ("fixed", 0.5)):
        agent = AgentConfig(temperature=mode, entropy_coef=0.5, value_units="relative", gamma=0.9)
        assert ddpg.actor_temperature(agent, rewards) == pytest.approx(coef, rel=1e-12)
        loss = ddpg.update_actor_loss(False, actor, critic, obs, obs, None, agent, rewards)
        expected = -np.mean((pi * v).sum(axis=1) + coef * h)
        assert loss.item() == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="vector rewards"):
        ddpg.actor_temperature(AgentConfig(temperature="evidence"), None)
    with pytest.raises(ValueError, match="unknown temperature"):
        ddpg.actor_temperature(AgentConfig(temperature="annealed"), rewards)


def test_evidence_temperature_moves_the_optimum_further_than_the_fixed_one():
    """The actor's optimum softmax(v / T): the same values, a batch that separates the domains by
    many standard errors, puts (nearly) everything on the better domain; T = 1 does not."""
    v = np.array([1.2, 0.8])  # relative values, spread 0.4
    many = np.array([[1.2, 0.8]] * 30 + [[1.3, 0.7]] * 30 + [[1.1, 0.9]] * 30)
    temp = ddpg.evidence_temperature(t(many))
    assert temp < 0.03  # the batch's means are ~40 standard errors apart
    assert np_softmax(v / temp)[0] > 0.999 and np_softmax(v / 1.0)[0] == pytest.approx(
        1 / (1 + np.exp(-0.4))
    )


def test_floor_mass_splits_one_total_floor_over_the_domains():
    """agent.floor_mass m: each domain's floor is m / K (K = 14: 0.005 for m = 0.07), in the actor
    and so in the exported policy; unset, agent.weight_floor per domain as before."""
    from acodm_ray.agent.config import check_agent, floor_per_domain

    assert floor_per_domain(AgentConfig(floor_mass=0.07), 14) == pytest.approx(0.005)
    assert floor_per_domain(AgentConfig(floor_mass=0.07), 7) == pytest.approx(0.01)
    assert floor_per_domain(AgentConfig(weight_floor=0.02), 14) == 0.02
    actor = Actor.from_config(AgentConfig(actor_hidden=8, actor_layers=1, floor_mass=0.07), 4, 14)
    assert actor.floor == pytest.approx(0.005)
    with torch.no_grad():
        actor.head.weight.mul_(0).add_(torch.eye(14, 8) * 1e3)  # a one-hot softmax
        w = actor(torch.ones(2, 4) * 10)
    assert float(w.min()) == pytest.approx(0.005, abs=1e-7)
    assert float(w.max()) == pytest.approx(1 - 13 * 0.005, abs=1e-6)
    check_agent(AgentConfig(weight_floor=0.2, floor_mass=0.07), 14)  # weight_floor unused: fine
    with pytest.raises(ValueError, match="floor_mass"):
        check_agent(AgentConfig(floor_mass=1.0))
    with pytest.raises(ValueError, match="temperature"):
        check_agent(AgentConfig(temperature="annealed"))


def test_constant_values_give_the_actor_the_gradient_of_a_fixed_linear_objective():
    """agent.value_gradient "none": the gradient of -mean_b[sum_i pi_i v_i + c H(pi)] with the
    values v = Q(s, pi(s)) / mean|Q| held fixed, by hand through the softmax; "action" (DDPG) adds
    the critic's action-input term sum_j pi_j dv_j / dpi_i = (Wa pi)_i / mean|Q|."""
    c = 0.3
    obs = t(OBS)
    pi = np_softmax(OBS @ W_ACTOR)
    q = OBS @ WS + pi @ WA
    m = np.abs(q).mean()
    v = q / m
    logp = np.log(pi)

    def through_softmax(g: np.ndarray) -> np.ndarray:  # d/dz of sum_i pi_i g_i, g held fixed
        return pi * (g - (pi * g).sum(axis=1, keepdims=True))

    B = len(OBS)
    # d/dz of H(pi) = -pi (log pi - sum_j pi_j log pi_j)
    dh = -pi * (logp - (pi * logp).sum(axis=1, keepdims=True))
    fixed = -(through_softmax(v) + c * dh) / B  # dL / dz, values constant
    extra = -through_softmax(pi @ WA.T / m) / B  # the action-input term of "action"
    for mode, dz in (("none", fixed), ("action", fixed + extra)):
        actor, critic = SoftmaxActor(W_ACTOR), LinearCritic(WS, WA)
        loss = ddpg.actor_loss(actor, critic, obs, "weighted", c, 0.9, "relative", mode)
        assert loss.item() == pytest.approx(
            -np.mean((pi * v).sum(axis=1) - c * (pi * logp).sum(axis=1))
        )
        loss.backward()
        np.testing.assert_allclose(actor.w.grad.numpy(), OBS.T @ dz, rtol=1e-10, atol=1e-12)
        assert critic.ws.grad is None and critic.wa.grad is None
    assert np.abs(OBS.T @ extra).max() > 1e-3  # the two modes really differ on this batch
    with pytest.raises(ValueError, match="unknown value gradient"):
        ddpg.actor_loss(actor, critic, obs, "weighted", c, 0.9, "relative", "critic")
    agent = AgentConfig(value_gradient="none", value_units="relative", gamma=0.9, entropy_coef=c)
    actor = SoftmaxActor(W_ACTOR)
    ddpg.update_actor_loss(False, actor, LinearCritic(WS, WA), obs, obs, None, agent).backward()
    np.testing.assert_allclose(actor.w.grad.numpy(), OBS.T @ fixed, rtol=1e-10, atol=1e-12)


def test_constant_values_reach_the_softmax_of_the_values():
    """With the values held fixed the actor's loss is minimised at softmax(v / c): free logits
    trained by gradient descent end there, whatever the critic's action input does."""
    critic = LinearCritic(
        np.zeros((1, 3)), np.array([[0.0, 3.0, 0.0], [0.0, 0.0, -2.0], [1.0, 0.0, 0.0]])
    )
    actor = SoftmaxActor(np.zeros((1, 3)))
    opt = torch.optim.SGD(actor.parameters(), lr=2.0)
    obs = t(np.ones((1, 1)))
    for _ in range(3000):
        opt.zero_grad()
        ddpg.actor_loss(actor, critic, obs, "weighted", 0.5, 0.0, "horizon", "none").backward()
        opt.step()
    with torch.no_grad():
        pi = actor(obs)
        v = critic(obs, pi)  # horizon units with gamma 0: v = Q
    np.testing.assert_allclose(pi.numpy(), torch.softmax(v / 0.5, dim=-1).numpy(), atol=1e-6)


def test_floored_softmax_is_the_actors_optimum_by_hand():
    """max_w sum_i w_i v_i + T H(w) over w_i >= floor: w_i = max(floor, c exp(v_i / T)), by hand."""
    v = t(np.array([[2.0, 1.0, 0.0, -5.0]]))
    w = ddpg.floored_softmax(v, 1.0, 0.05)[0].numpy()
    # unclipped c = 1 / (1 + e^-1 + e^-2 + e^-7) puts e^-7 c = 0.0006 below the floor: clip it,
    # then c = 0.95 / (1 + e^-1 + e^-2)
    c = 0.95 / (1 + np.exp(-1) + np.exp(-2))
    np.testing.assert_allclose(w, [c, c * np.exp(-1), c * np.exp(-2), 0.05], rtol=1e-12)
    assert w.sum() == pytest.approx(1.0)
    # KKT: v_i - T log w_i equal on the free domains, smaller at the floor
    free = v[0, :3].numpy() - np.log(w[:3])
    np.testing.assert_allclose(free, free[0], rtol=1e-12)
    assert 2.0 - 5.0 - np.log(0.05) < free[0]  # v_3 - log(floor) is below the free ones' level
    np.testing.assert_allclose(  # no floor: the softmax; T = 0: the floor and the rest on the best
        ddpg.floored_softmax(v, 0.5, 0.0)[0].numpy(), np_softmax(v[0].numpy() / 0.5), rtol=1e-12
    )
    np.testing.assert_allclose(
        ddpg.floored_softmax(v, 0.0, 0.05)[0].numpy(), [0.85, 0.05, 0.05, 0.05], rtol=1e-12
    )


def test_optimum_gap_is_the_distance_to_the_softmax_of_the_actors_values():
    actor, critic = SoftmaxActor(W_ACTOR), LinearCritic(WS, WA)
    pi = np_softmax(OBS @ W_ACTOR)
    q = OBS @ WS + pi @ WA
    v = q / np.abs(q).mean()
    target = np_softmax(v / 0.4)
    expected = 0.5 * np.abs(pi - target).sum(axis=1).mean()
    gap = ddpg.optimum_gap(actor, critic, t(OBS), 0.4, 0.9, "relative")
    assert gap == pytest.approx(expected, rel=1e-10) and gap > 0.05


def test_projection_objective_fits_the_weighted_optimum_by_cross_entropy():
    """agent.actor_objective "projection": -mean_b sum_i w*_i log pi_i with w* = softmax(v / T) of
    the values at the actor's weights (no floor here) held constant; its logit gradient is
    (pi - w*) / B, by hand; trained alone it ends at w*, as the weighted objective's optimum."""
    actor, critic = SoftmaxActor(W_ACTOR), LinearCritic(WS, WA)
    pi = np_softmax(OBS @ W_ACTOR)
    q = OBS @ WS + pi @ WA
    best = np_softmax(q / np.abs(q).mean() / 0.4)
    loss = ddpg.actor_loss(actor, critic, t(OBS), "projection", 0.4, 0.9, "relative", "action")
    assert loss.item() == pytest.approx(-np.mean((best * np.log(pi)).sum(axis=1)), rel=1e-12)
    loss.backward()
    np.testing.assert_allclose(actor.w.grad.numpy(), OBS.T @ ((pi - best) / len(OBS)), rtol=1e-10)
    assert critic.ws.grad is None and critic.wa.grad is None
    # the same fixed point as "weighted" with constant values: softmax(v / T)
    critic = LinearCritic(
        np.zeros((1, 3)), np.array([[0.0, 3.0, 0.0], [0.0, 0.0, -2.0], [1.0, 0.0, 0.0]])
    )
    actor = SoftmaxActor(np.zeros((1, 3)))
    opt = torch.optim.SGD(actor.parameters(), lr=1.0)
    obs = t(np.ones((1, 1)))
    for _ in range(2000):
        opt.zero_grad()
        ddpg.actor_loss(actor, critic, obs, "projection", 0.5, 0.0, "horizon", "action").backward()
        opt.step()
    with torch.no_grad():
        pi = actor(obs)
        target = torch.softmax(critic(obs, pi) / 0.5, dim=-1)
    np.testing.assert_allclose(pi.numpy(), target.numpy(), atol=1e-6)


def test_proportional_weights_by_hand():
    """w = floor + (1 - K floor) max(v, 0) / sum max(v, 0); uniform where no value is positive."""
    v = torch.tensor([[2.0, 1.0, -1.0, 1.0], [-1.0, 0.0, -2.0, -0.5]])
    np.testing.assert_allclose(
        ddpg.proportional(v, 0.0).numpy(), [[0.5, 0.25, 0.0, 0.25], [0.25, 0.25, 0.25, 0.25]]
    )
    np.testing.assert_allclose(
        ddpg.proportional(v[:1], 0.05).numpy(), [[0.45, 0.25, 0.05, 0.25]]
    )  # 0.05 + 0.8 x (0.5, 0.25, 0, 0.25)


def test_proportional_objective_fits_weights_proportional_to_the_values():
    """agent.actor_objective "proportional": -mean_b sum_i w*_i log pi_i with w* = proportional(v),
    v the values at the actor's weights held constant (no temperature); trained alone it ends at
    w*, and optimum_gap measures the distance to w*, not to a softmax."""
    critic = LinearCritic(
        np.zeros((1, 3)), np.array([[0.0, 3.0, 0.0], [0.0, 0.0, -2.0], [1.0, 0.0, 0.0]])
    )  # q = pi @ WA: at pi = (1/3, 1/3, 1/3), q = (1/3, 1, -2/3)
    actor = SoftmaxActor(np.zeros((1, 3)))
    obs = t(np.ones((1, 1)))
    loss = ddpg.actor_loss(actor, critic, obs, "proportional", 0.5, 0.0, "horizon", "action")
    best = np.array([0.25, 0.75, 0.0])  # max(q, 0) / sum
    assert loss.item() == pytest.approx(-(best * np.log(1 / 3)).sum(), rel=1e-12)
    assert ddpg.optimum_gap(actor, critic, obs, 0.5, 0.0, "horizon", "proportional") == (
        pytest.approx(0.5 * np.abs(1 / 3 - best).sum(), rel=1e-10)
    )
    opt = torch.optim.SGD(actor.parameters(), lr=1.0)
    for _ in range(3000):
        opt.zero_grad()
        ddpg.actor_loss(
            actor, critic, obs, "proportional", 0.5, 0.0, "horizon", "action"
        ).backward()
        opt.step()
    with torch.no_grad():
        pi = actor(obs)
        target = ddpg.proportional(critic(obs, pi), 0.0)
    np.testing.assert_allclose(pi.numpy(), target.numpy(), atol=1e-3)


def test_lcb_objective_subtracts_the_temperature_before_proportional_weights():
    """agent.actor_objective "lcb": w* = proportional(v, floor, margin=T): values 1.2, 0.8, 0.3, -0.1
    at T = 0.3 -> 0.9, 0.5, 0, 0 -> 9/14, 5/14, 0, 0 (without the margin: 1.2, 0.8, 0.3 of 2.3)."""
    v = torch.tensor([[1.2, 0.8, 0.3, -0.1]])
    np.testing.assert_allclose(
        ddpg.objective_optimum(v, "lcb", 0.3, 0.0).numpy(), [[9 / 14, 5 / 14, 0.0, 0.0]], atol=1e-7
    )
    np.testing.assert_allclose(
        ddpg.objective_optimum(v, "proportional", 0.3, 0.0).numpy(),
        [[1.2 / 2.3, 0.8 / 2.3, 0.3 / 2.3, 0.0]],
        rtol=1e-6,
    )

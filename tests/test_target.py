"""Target pretraining on Ray Train with the served mixer (acodm_ray/target/, policy_server.py) and
the online AC-ODM agent of non-proxy mode (acodm_ray/mixers/online_acodm.py).

The six Ray Train runs (2 CPU workers of 0.1 CPU each, tiny model, 6 steps) are started by one module
fixture, all at once in threads, so their start-up latencies overlap on 2 cores; the tests then
inspect their run directories and final checkpoints.
"""

from __future__ import annotations

import copy
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from acodm_ray.agent import ddpg
from acodm_ray.agent.config import AgentConfig
from acodm_ray.agent.networks import Actor
from acodm_ray.agent.policy_file import load_policy, save_policy
from acodm_ray.agent.replay import ReplayBuffer
from acodm_ray.mixers.actor import ActorMixer, PolicyMismatchError
from acodm_ray.mixers.online_acodm import OnlineACODM
from acodm_ray.policy_client import PolicyClient
from acodm_ray.policy_server import (
    MixerSpec,
    PolicyServer,
    PolicyServerError,
    PolicyServerUnavailable,
    signals_from_dict,
    signals_to_dict,
    start_policy_server,
)
from acodm_ray.train_step import StepSignals, load_checkpoint
from tests.conftest import tiny_config

STEPS = 6
TRAIN = {"steps": STEPS, "checkpoint_every": 3, "eval_every": 3}
TARGET = {"num_workers": 2, "cpus_per_worker": 0.1, "max_failures": 3, "server_timeout_s": 20.0}
SMALL_AGENT = {
    "actor_hidden": 16,
    "actor_layers": 1,
    "critic_hidden": 16,
    "critic_layers": 1,
    "batch_size": 2,
    "warmup_fraction": 0.34,
}


def target_cfg(name: str, mixer: str = "odm", **target):
    return tiny_config(
        train=TRAIN,
        target={**TARGET, "server_name": f"srv-{name}", **target},
        agent=SMALL_AGENT,
        mixer={"name": mixer},
    )


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def step_records(run: Path) -> list[dict]:
    return [r for r in read_jsonl(run / "metrics.jsonl") if r["kind"] == "step"]


@pytest.fixture(scope="module")
def tiny_meta(tiny_prepared, tmp_path_factory):
    """Domains and state dimension of the tiny corpus (what a policy must match)."""
    from acodm_ray.data.load import load_tokenized
    from acodm_ray.target import state_spec_for

    home = tmp_path_factory.getbasetemp() / "acodm_home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ACODM_HOME", str(home))
        cfg = target_cfg("meta")
        tokens, _ = load_tokenized(cfg)
        spec = state_spec_for(cfg, tokens.vocab_size, tokens.eos_id, list(tokens.domains))
    return {
        "domains": list(tokens.domains),
        "spec": spec,
        "state_dim": spec["dim"],
        "home": str(home),
        "natural": tokens.natural_proportions(),
    }


def make_policy(
    path: Path, domains: list[str], state_dim: int, spec: dict | None = None, seed: int = 0
) -> Path:
    torch.manual_seed(seed)
    actor = Actor(state_dim, len(domains), 16, 1)
    return save_policy(path, actor, domains, spec or {"dim": state_dim}, {})


@pytest.fixture(scope="module")
def runs(ray_session, tiny_meta, tmp_path_factory):
    """Every Ray Train run of this module: {label: (summary or exception, run dir)}."""
    from acodm_ray.target import run_target

    root = tmp_path_factory.mktemp("target_runs")
    policy = make_policy(
        root / "policy", tiny_meta["domains"], tiny_meta["state_dim"], tiny_meta["spec"]
    )
    marker = root / "crash.marker"
    jobs = {
        "uniform": (target_cfg("uniform", mixer="uniform"), {}),
        "crash": (
            target_cfg("crash", mixer="uniform"),
            {"crash": {"rank": 1, "step": 5, "marker": str(marker)}},
        ),
        "natural": (target_cfg("natural", mixer="natural"), {}),
        "odm": (target_cfg("odm", mixer="odm"), {}),
        "policy_killed": (target_cfg("policy", policy=str(policy)), {"kill_server_at": 3}),
        "online": (target_cfg("online", online_acodm=True, decide_every=2), {}),
    }

    only = os.environ.get(
        "ACODM_TEST_TARGET_RUNS"
    )  # tools/mutants.py: just the runs a mutant's test needs
    if only:
        jobs = {label: jobs[label] for label in only.split(",")}

    def run(label):
        cfg, faults = jobs[label]
        try:
            return run_target(cfg, root / label, faults=faults)
        except Exception as err:  # reported by the test that needs the run
            return err

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ACODM_HOME", tiny_meta["home"])
        mp.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")  # propagated to the Train controller
        mp.setenv(
            "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "600"
        )  # 12 workers start at once on 2 cores
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            results = dict(zip(jobs, pool.map(run, list(jobs))))
    out = {}
    for label, res in results.items():
        out[label] = (res, root / label)
    out["_policy"] = policy
    out["_marker"] = marker
    return out


def ok(runs, label):
    summary, run_dir = runs[label]
    if isinstance(summary, BaseException):
        raise AssertionError(
            f"run {label!r} failed: {type(summary).__name__}: {summary}"
        ) from summary
    return summary, run_dir


def assert_same_weights_on_all_ranks(run_dir: Path, steps: int = STEPS) -> list[list[float]]:
    r0 = read_jsonl(run_dir / "ranks" / "rank0.jsonl")
    r1 = read_jsonl(run_dir / "ranks" / "rank1.jsonl")
    assert [r["step"] for r in r0] == list(range(1, steps + 1))
    assert [r["step"] for r in r1] == list(range(1, steps + 1))
    for a, b in zip(r0, r1):
        assert a["weights"] == b["weights"], f"step {a['step']}: rank weights differ"
        assert sum(a["weights"]) == pytest.approx(1.0)
    # and the metrics of rank 0 logged exactly those weights
    recs = step_records(run_dir)
    assert [r["step"] for r in recs] == list(range(1, steps + 1))
    domains = [k.split("/", 1)[1] for k in recs[0] if k.startswith("weight/")]
    for rec, a in zip(recs, r0):
        assert [rec[f"weight/{d}"] for d in domains] == pytest.approx(
            a["weights"], abs=0, rel=1e-12
        )
    return [r["weights"] for r in r0]


# ---------------------------------------------------------------------- Ray Train runs


@pytest.mark.slow
@pytest.mark.parametrize("label", ["uniform", "natural", "odm", "policy_killed", "online"])
def test_each_mixer_trains_with_identical_weights_on_all_workers(runs, label, tiny_meta):
    summary, run_dir = ok(runs, label)
    assert summary["steps"] == STEPS and summary["num_workers"] == 2
    weights = assert_same_weights_on_all_ranks(run_dir)
    assert summary["final_val_ppl"]["average"] > 1
    for name in (
        "config.yaml",
        "steps.csv",
        "eval.csv",
        "summary.json",
        "model/config.json",
        "weights.png",
    ):
        assert (run_dir / name).exists(), name
    evals = [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl") if r["kind"] == "eval"]
    assert evals == [3, 6]
    if label == "uniform":
        assert all(w == pytest.approx([1 / 7] * 7) for w in weights)
        assert summary["server"]["num_weights_calls"] == 1  # a static mixer is asked once
    if label == "natural":
        assert all(w == pytest.approx(list(tiny_meta["natural"])) for w in weights)
    expected = {
        "uniform": "uniform",
        "natural": "natural",
        "odm": "odm",
        "policy_killed": "acodm",
        "online": "acodm-online",
    }[label]
    assert summary["mixer"] == expected


@pytest.mark.slow
def test_odm_server_learned_from_every_step(runs):
    summary, _ = ok(runs, "odm")
    server = summary["server"]
    assert (
        server["mixer"],
        server["kind"],
        server["num_weights_calls"],
        server["num_updates"],
    ) == ("odm", "mixer", STEPS, STEPS)
    payload = load_checkpoint(Path(summary["checkpoint"]) / "trainer.pt")
    assert payload["mixer"]["mixer"] == "odm" and payload["mixer"]["state"]["t"] == STEPS


@pytest.mark.slow
def test_online_agent_learns_on_the_target_and_exports_its_actor(runs, tiny_meta):
    summary, run_dir = ok(runs, "online")
    assert summary["agent"]["transitions"] == STEPS and summary["agent"]["warmup_steps"] == 2
    assert summary["agent"]["updates"] > 0
    # decide_every=2: weights change only at steps 1, 3, 5
    r0 = read_jsonl(run_dir / "ranks" / "rank0.jsonl")
    assert [r["decided"] for r in r0] == [True, False, True, False, True, False]
    assert r0[0]["weights"] == r0[1]["weights"] and r0[2]["weights"] == r0[3]["weights"]
    # the exported policy is the agent's trained actor from the final checkpoint, bit for bit
    payload = load_checkpoint(Path(summary["checkpoint"]) / "trainer.pt")
    trained = payload["mixer"]["state"]["actor"]
    exported, meta = load_policy(summary["policy"])
    assert meta["domains"] == tiny_meta["domains"] and meta["state_dim"] == tiny_meta["state_dim"]
    state = exported.state_dict()
    assert set(state) == set(trained)
    for name, value in state.items():
        assert torch.equal(value, trained[name]), name
    mixer = ActorMixer(summary["policy"], tiny_meta["domains"], tiny_meta["state_dim"])
    states = np.random.default_rng(0).normal(size=(3, tiny_meta["state_dim"])).astype(np.float32)
    for s in states:
        with torch.no_grad():
            expected = exported(torch.as_tensor(s)[None])[0].double().numpy()
        np.testing.assert_allclose(mixer.weights(s), expected, rtol=1e-6)
        assert mixer.weights(s).sum() == pytest.approx(1.0)


@pytest.mark.slow
def test_killed_worker_resumes_from_checkpoint_with_exact_step_count(runs):
    straight, straight_dir = ok(runs, "uniform")
    crashed, crash_dir = ok(runs, "crash")
    assert runs["_marker"].exists(), "the fault was never injected"
    events = read_jsonl(crash_dir / "events.jsonl")
    assert [(e["event"], e["step"]) for e in events if e["event"] in ("start", "resume")] == [
        ("start", 0),
        ("resume", 3),
    ]
    assert crashed["steps"] == STEPS
    a, b = step_records(straight_dir), step_records(crash_dir)
    assert [r["step"] for r in b] == list(range(1, STEPS + 1))  # no step lost or repeated
    assert [r["loss"] for r in b] == [
        r["loss"] for r in a
    ]  # and the same steps as without the crash
    assert crashed["final_val_ppl"] == straight["final_val_ppl"]
    assert_same_weights_on_all_ranks(crash_dir)


@pytest.mark.slow
def test_unreachable_server_keeps_the_last_weights(runs):
    summary, run_dir = ok(runs, "policy_killed")
    r0 = read_jsonl(run_dir / "ranks" / "rank0.jsonl")
    w = [r["weights"] for r in r0]
    assert [r["fresh"] for r in r0] == [True, True, True, False, False, False]
    assert w[0] != w[1] != w[2], "the policy's weights should follow the changing state"
    assert w[3] == w[4] == w[5] == w[2]  # frozen at the last served weights, not another mixer
    assert summary["server_failures"] == 3 and summary["mixer"] == "acodm"
    assert any(e["event"] == "server_unreachable" for e in read_jsonl(run_dir / "events.jsonl"))


@pytest.mark.slow
def test_saved_model_reloads_with_the_trained_weights(runs, tiny_meta):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from acodm_ray.model import build_model

    summary, run_dir = ok(runs, "uniform")
    hf = AutoModelForCausalLM.from_pretrained(run_dir / "model").eval()
    AutoTokenizer.from_pretrained(run_dir / "model")
    payload = load_checkpoint(Path(summary["checkpoint"]) / "trainer.pt")
    cfg = target_cfg("x")
    ref = build_model(cfg.model, hf.config.vocab_size, hf.config.eos_token_id, 123)
    ref.load_state_dict(payload["trainer"]["model"])
    ref.eval()
    batch = torch.randint(
        0, hf.config.vocab_size, (2, 17), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        a = hf(input_ids=batch, labels=batch).loss
        b = ref(input_ids=batch, labels=batch).loss
    assert torch.isfinite(a) and float(a) == float(b)
    assert payload["trainer"]["step"] == STEPS


@pytest.mark.slow
def test_resume_with_another_mixer_is_refused(runs, tiny_meta, monkeypatch):
    from acodm_ray.target import run_target

    monkeypatch.setenv("ACODM_HOME", tiny_meta["home"])
    _, run_dir = ok(runs, "uniform")
    before = (run_dir / "metrics.jsonl").read_text()
    with pytest.raises(ValueError, match="resume it with the same mixer"):
        run_target(target_cfg("uniform", mixer="natural"), run_dir, resume=True)
    assert (run_dir / "metrics.jsonl").read_text() == before


def test_mismatched_policy_is_refused(ray_session, tiny_meta, tmp_path, monkeypatch):
    from acodm_ray.target import run_target

    monkeypatch.setenv("ACODM_HOME", tiny_meta["home"])
    domains, dim = tiny_meta["domains"], tiny_meta["state_dim"]
    other = make_policy(tmp_path / "other_domains", domains[:-1] + ["klingon"], dim)
    reordered = make_policy(tmp_path / "reordered", list(reversed(domains)), dim)
    bigger = make_policy(tmp_path / "bigger_state", domains, dim + 2)
    for policy, message in (
        (other, "klingon"),
        (reordered, "another order"),
        (bigger, "dimension"),
    ):
        with pytest.raises(PolicyMismatchError, match=message):
            run_target(target_cfg("bad", policy=str(policy)), tmp_path / "run")
        assert not (tmp_path / "run").exists()  # refused before anything was created
        spec = MixerSpec(
            kind="policy",
            policy_dir=str(policy),
            domains=domains,
            natural=list(tiny_meta["natural"]),
            state_dim=dim,
        )
        with pytest.raises(PolicyMismatchError):
            PolicyServer(spec)  # the actor refuses it too
    # and the job entry point says so
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
    from target_pretrain import main

    rc = main(
        [
            "--config",
            "configs/tiny.yaml",
            "--policy",
            str(bigger),
            "--output-dir",
            str(tmp_path),
            "--name",
            "cli",
            "--set",
            "agent.actor_hidden=16",
        ]
    )
    assert rc == 2 and not (tmp_path / "cli").exists()


# ---------------------------------------------------------------------- policy server and client


def fake_signals(
    step: int, K: int, state_dim: int, weights: np.ndarray, rng: np.random.Generator
) -> StepSignals:
    losses = rng.uniform(2, 4, K)
    losses[rng.random(K) < 0.3] = np.nan
    return StepSignals(
        step=step,
        loss=3.0,
        losses=losses,
        counts=np.ones(K),
        scores=rng.normal(size=K),
        raw_scores=rng.normal(size=K),
        state=rng.normal(size=state_dim).astype(np.float32),
        weights=weights,
        lr=1e-3,
        grad_norm=1.0,
        tokens=100,
        seconds=0.1,
    )


def test_policy_server_in_process_serves_checkpoints_and_describes(tiny_meta):
    domains, dim, K = tiny_meta["domains"], tiny_meta["state_dim"], len(tiny_meta["domains"])
    common = dict(domains=domains, natural=list(tiny_meta["natural"]), state_dim=dim)
    server = PolicyServer(MixerSpec(kind="mixer", mixer={"name": "odm"}, **common))
    desc = server.describe()
    assert (
        desc["mixer"] == "odm"
        and desc["domains"] == domains
        and desc["state_dim"] == dim
        and desc["learns"]
    )
    rng = np.random.default_rng(0)
    for i in range(1, 20):
        sig = fake_signals(i, K, dim, np.asarray(server.weights(np.zeros(dim))), rng)
        d = signals_to_dict(sig)
        assert signals_from_dict(json.loads(json.dumps(d, default=float))).step == i
        server.update(d)
    state = server.state_dict()
    w = server.weights(np.zeros(dim))
    assert w != pytest.approx(list(tiny_meta["natural"]))  # ODM moved away from its start
    server.reset()
    assert server.weights(None) == pytest.approx(list(tiny_meta["natural"]))
    server.load_state_dict(state)
    assert server.weights(None) == w
    with pytest.raises(PolicyServerError, match="resume a run with the mixer"):
        PolicyServer(MixerSpec(kind="mixer", mixer={"name": "uniform"}, **common)).load_state_dict(
            state
        )
    with pytest.raises(PolicyMismatchError, match="dimension"):
        server.weights(np.zeros(dim + 1))
    static = PolicyServer(MixerSpec(kind="mixer", mixer={"name": "uniform"}, **common))
    assert not static.describe()["learns"] and static.weights(None) == pytest.approx([1 / K] * K)


def test_policy_client_falls_back_to_last_weights_when_the_actor_dies(
    ray_session, tiny_meta, tmp_path
):
    import ray

    domains, dim = tiny_meta["domains"], tiny_meta["state_dim"]
    policy = make_policy(tmp_path / "p", domains, dim)
    spec = MixerSpec(
        kind="policy",
        policy_dir=str(policy),
        domains=domains,
        natural=list(tiny_meta["natural"]),
        state_dim=dim,
    )
    handle, created = start_policy_server(spec, name="unit-srv", namespace="acodm-test")
    assert created
    # same name, same mixer: reused (and reset); same name, another mixer: refused
    again, created2 = start_policy_server(spec, name="unit-srv", namespace="acodm-test")
    assert not created2
    with pytest.raises(PolicyServerError, match="another mixer"):
        start_policy_server(
            MixerSpec(
                kind="mixer",
                mixer={"name": "uniform"},
                domains=domains,
                natural=list(tiny_meta["natural"]),
                state_dim=dim,
            ),
            name="unit-srv",
            namespace="acodm-test",
        )
    client = PolicyClient(handle, "unit-srv", "acodm-test", timeout_s=10)
    assert client.description["mixer"] == "acodm" and client.description["state_dim"] == dim
    state = np.random.default_rng(0).normal(size=dim).astype(np.float32)
    w, fresh = client.weights(state)
    expected = ActorMixer(policy, domains, dim).weights(state)
    assert fresh and np.allclose(w, expected)
    ray.kill(handle, no_restart=True)
    deadline = (
        time.monotonic() + 30
    )  # ray.kill is asynchronous: wait until the actor is really gone
    while time.monotonic() < deadline:
        try:
            ray.get(handle.ping.remote(), timeout=5)
            time.sleep(0.2)
        except Exception:
            break
    w2, fresh2 = client.weights(state * 2)
    assert not fresh2 and np.array_equal(w2, w) and client.failures == 1
    assert client.state_dict() is None
    fresh_client = PolicyClient(None, "unit-srv", "acodm-test")
    with pytest.raises(PolicyServerUnavailable):
        fresh_client.weights(state)


# ---------------------------------------------------------------------- the online agent


def agent_cfg(**kw) -> AgentConfig:
    base = dict(
        actor_hidden=16,
        actor_layers=1,
        critic_hidden=16,
        critic_layers=1,
        batch_size=4,
        replay_capacity=50,
        warmup_fraction=0.2,
        actor_lr=1e-2,
        critic_lr=1e-2,
        tau=0.1,
        warmup_updates=None,
        lr_schedule="constant",
    )  # the paper's warm-up unless a test says otherwise
    base.update(kw)
    return AgentConfig(**base)


def make_agent(K=4, dim=9, total=20, **kw) -> OnlineACODM:
    natural = np.arange(1, K + 1, dtype=float)
    return OnlineACODM(
        [f"d{i}" for i in range(K)], natural / natural.sum(), dim, agent_cfg(**kw), total, seed=3
    )


def test_online_agent_warmup_uses_odm_weights_and_imitation(monkeypatch):
    agent = make_agent()  # warm-up: round(0.2 * 20) = 4 steps
    assert agent.warmup_steps == 4
    calls: dict[str, int] = {"imitation": 0, "warmup_critic": 0, "actor": 0, "critic": 0}
    for name, key in (
        ("imitation_loss", "imitation"),
        ("warmup_critic_loss", "warmup_critic"),
        ("actor_loss", "actor"),
        ("critic_loss", "critic"),
    ):
        real = getattr(ddpg, name)

        def spy(*a, _real=real, _key=key, **k):
            calls[_key] += 1
            return _real(*a, **k)

        monkeypatch.setattr(ddpg, name, spy)
    rng = np.random.default_rng(1)
    for step in range(1, 5):
        w = agent.weights(rng.normal(size=9))
        assert np.array_equal(w, agent.odm.weights()), "warm-up behaviour must be ODM"
        agent.update(fake_signals(step, 4, 9, w, rng))
    assert (
        calls["imitation"] == calls["warmup_critic"] == 1
    )  # learning starts once batch_size transitions exist
    assert calls["actor"] == calls["critic"] == 0
    assert not agent.in_warmup and not agent.targets_synced
    w = agent.weights(rng.normal(size=9))
    assert not np.array_equal(w, agent.odm.weights())
    actor_at_sync = copy.deepcopy(agent.actor.state_dict())
    agent.update(fake_signals(5, 4, 9, w, rng))
    assert calls["actor"] == calls["critic"] == 1 and calls["imitation"] == 1
    # the first DDPG update hard-copied the targets from the online networks, then Polyak-stepped them
    assert agent.targets_synced
    for k, t in agent.target_actor.state_dict().items():
        expected = 0.9 * actor_at_sync[k] + 0.1 * agent.actor.state_dict()[k]
        torch.testing.assert_close(t, expected)


def test_online_agent_imitation_pulls_the_actor_towards_odm():
    agent = make_agent(total=1000, warmup_fraction=1.0, batch_size=8)
    rng = np.random.default_rng(0)
    target = agent.odm.weights()
    before = float(np.abs(agent.greedy_weights(np.zeros(9)) - target).sum())
    agent.odm.update_from_losses = lambda losses: target  # keep ODM fixed: imitation has one target
    for step in range(1, 120):
        agent.update(fake_signals(step, 4, 9, target, rng))
    after = float(np.abs(agent.greedy_weights(rng.normal(size=9)) - target).sum())
    assert after < before / 3


def test_online_agent_ddpg_update_changes_the_actor():
    agent = make_agent(warmup_fraction=0.0)
    assert agent.warmup_steps == 0 and not agent.targets_synced
    rng = np.random.default_rng(2)
    for step in range(1, 5):
        agent.update(fake_signals(step, 4, 9, agent.weights(rng.normal(size=9)), rng))
    actor_before = copy.deepcopy(agent.actor.state_dict())
    critic_before = copy.deepcopy(agent.critic.state_dict())
    target_before = copy.deepcopy(agent.target_actor.state_dict())
    agent.update(fake_signals(5, 4, 9, agent.weights(rng.normal(size=9)), rng))
    assert agent.num_updates == 2
    assert any(not torch.equal(actor_before[k], v) for k, v in agent.actor.state_dict().items())
    assert any(not torch.equal(critic_before[k], v) for k, v in agent.critic.state_dict().items())
    assert any(
        not torch.equal(target_before[k], v) for k, v in agent.target_actor.state_dict().items()
    )
    w = agent.weights(np.zeros(9))
    assert w.sum() == pytest.approx(1.0) and (w >= 0).all()


def test_online_agent_state_dict_round_trip(tmp_path):
    a = make_agent(warmup_fraction=0.1)
    rng = np.random.default_rng(4)
    for step in range(1, 9):
        a.update(fake_signals(step, 4, 9, a.weights(rng.normal(size=9)), rng))
    torch.save(a.state_dict(), tmp_path / "agent.pt")
    b = make_agent(warmup_fraction=0.1)
    b.load_state_dict(torch.load(tmp_path / "agent.pt", weights_only=True))
    assert (
        b.steps_seen == a.steps_seen == 8 and b.num_updates == a.num_updates and len(b.buffer) == 8
    )
    s = rng.normal(size=9)
    assert np.array_equal(a.weights(s), b.weights(s))  # same networks and the same noise RNG
    sig = fake_signals(9, 4, 9, a.weights(s), np.random.default_rng(9))
    b.weights(s)
    a.update(sig)
    b.update(sig)  # same replay sample, same optimizer state: identical learning
    for (ka, va), (_kb, vb) in zip(a.actor.state_dict().items(), b.actor.state_dict().items()):
        assert torch.equal(va, vb), ka
    with pytest.raises(ValueError, match="state_dim"):
        make_agent(dim=10).load_state_dict(a.state_dict())


def test_online_agent_counts_its_warmup_in_updates_and_imitates_odm_rows_only(monkeypatch):
    """agent.warmup_updates: the first N learner updates use the warm-up losses, whoever chose the
    rows; with imitate_odm_only the imitation sees only the rows ODM chose."""
    agent = make_agent(
        warmup_updates=3, imitate_odm_only=True, warmup_fraction=0.1
    )  # ODM for 2 steps
    seen: list[torch.Tensor | None] = []
    real = ddpg.imitation_loss
    monkeypatch.setattr(
        ddpg, "imitation_loss", lambda a, o, w, rows=None: seen.append(rows) or real(a, o, w, rows)
    )
    rng = np.random.default_rng(5)
    for step in range(1, 9):
        agent.update(fake_signals(step, 4, 9, agent.weights(rng.normal(size=9)), rng))
    assert agent.num_updates == 5 and len(seen) == 3  # updates 1-3 warm-up, 4-5 DDPG
    assert all(r is not None for r in seen)
    assert (
        agent.buffer.behaviour[:2].tolist() == [1.0, 1.0] and agent.buffer.behaviour[2:8].sum() == 0
    )
    assert agent.last_losses["warmup"] == 0.0 and agent.targets_synced


def test_online_agent_frozen_actor_never_moves():
    """freeze_actor (the reference code's behaviour): the critic learns, the actor stays at its init."""
    agent = make_agent(freeze_actor=True, warmup_fraction=0.0)
    before = copy.deepcopy(agent.actor.state_dict())
    critic_before = copy.deepcopy(agent.critic.state_dict())
    rng = np.random.default_rng(6)
    for step in range(1, 10):
        agent.update(fake_signals(step, 4, 9, agent.weights(rng.normal(size=9)), rng))
    assert agent.num_updates > 0
    assert all(torch.equal(before[k], v) for k, v in agent.actor.state_dict().items())
    assert any(not torch.equal(critic_before[k], v) for k, v in agent.critic.state_dict().items())


def test_online_agent_follows_its_lr_schedule():
    agent = make_agent(
        lr_schedule="cosine",
        lr_warmup_fraction=0.0,
        min_lr_ratio=0.1,
        total=20,
        warmup_fraction=0.0,
    )
    rng = np.random.default_rng(7)
    lrs = []
    for step in range(1, 21):
        agent.update(fake_signals(step, 4, 9, agent.weights(rng.normal(size=9)), rng))
        if agent.num_updates:
            lrs.append(agent.actor_opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(
        1e-2 * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * 3 / 20))), rel=0.05
    )
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 0.2 * 1e-2  # cosine decay towards a tenth


def test_online_agent_masks_unscored_domains():
    """A NaN score (domain not sampled, signals.score total) reaches the buffer as NaN and the
    critic's loss stays finite."""
    agent = make_agent(warmup_fraction=0.0)
    rng = np.random.default_rng(8)
    for step in range(1, 7):
        sig = fake_signals(step, 4, 9, agent.weights(rng.normal(size=9)), rng)
        sig.scores = np.array([np.nan, 1.0, -0.5, 0.2])
        agent.update(sig)
    assert np.isnan(agent.buffer.rewards[:6, 0]).all()
    assert np.isfinite(agent.last_losses["critic_loss"]) and np.isfinite(
        agent.last_losses["td_error"]
    )


def test_replay_buffer_ring_and_state():
    buf = ReplayBuffer(3, 2, 2, seed=0)
    for i in range(5):
        buf.add([i, i], [0.5, 0.5], [i, -i], [i + 1, i + 1], done=i == 4)
    assert len(buf) == 3 and buf.added == 5
    assert sorted(buf.obs[:, 0].tolist()) == [2.0, 3.0, 4.0]  # the two oldest were overwritten
    batch = buf.sample(16)
    assert batch["obs"].shape == (16, 2) and set(batch["obs"][:, 0].tolist()) <= {2.0, 3.0, 4.0}
    other = ReplayBuffer(3, 2, 2, seed=99)
    other.load_state_dict(buf.state_dict())
    assert torch.equal(other.sample(8)["rewards"], buf.sample(8)["rewards"])
    with pytest.raises(ValueError, match="entries"):
        buf.add([0], [0.5, 0.5], [0, 0], [0, 0])


def test_target_side_never_imports_rllib():
    import subprocess
    import sys

    code = (
        "import sys, acodm_ray.target, acodm_ray.policy_server, acodm_ray.mixers.online_acodm; "
        "sys.exit(any(m.startswith('ray.rllib') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0

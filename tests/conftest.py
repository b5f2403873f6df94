"""Shared fixtures: tiny configs, a synthetic corpus, an isolated cache, one Ray session; and the
fast lane's rule (what starts Ray or a job is `slow`), applied and checked here."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from acodm_ray.config import ExperimentConfig, load_config
from tests.fast_lane import job_in

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test writes caches under one temp dir, never the user's ~/.cache."""
    monkeypatch.setenv("ACODM_HOME", str(tmp_path_factory.getbasetemp() / "acodm_home"))


def tiny_config(**sections) -> ExperimentConfig:
    """A model and batch small enough for 2 CPU cores (hidden 32, 2 layers, seq 16)."""
    overrides = [
        "model.hidden_size=32",
        "model.num_layers=2",
        "model.num_heads=2",
        "train.seq_len=16",
        "train.micro_batch_size=4",
        "train.grad_accum=6",
        "train.steps=8",
        "train.warmup_steps=2",
        "train.eval_every=4",
        "train.eval_batches=2",
        "train.checkpoint_every=4",
        "corpus.source=tiny",
        "tokenizer.vocab_size=512",
    ]
    for section, values in sections.items():
        overrides += [f"{section}.{k}={v}" for k, v in values.items()]
    return load_config(None, overrides)


@pytest.fixture
def cfg() -> ExperimentConfig:
    return tiny_config()


def synthetic_corpus(num_domains: int = 3, vocab: int = 64, length: int = 4000, seed: int = 0):
    """Token streams whose domains use different token ranges, so their gradients differ."""
    from acodm_ray.data.tokens import TokenizedCorpus

    rng = np.random.default_rng(seed)
    domains = [f"d{i}" for i in range(num_domains)]
    span = vocab // num_domains

    def stream(i: int, n: int) -> np.ndarray:
        return rng.integers(i * span, (i + 1) * span, size=n).astype(np.int32)

    return TokenizedCorpus(
        domains=domains,
        train={d: stream(i, length) for i, d in enumerate(domains)},
        validation={d: stream(i, length // 4) for i, d in enumerate(domains)},
        vocab_size=vocab,
        eos_id=vocab - 1,
    )


@pytest.fixture
def corpus():
    return synthetic_corpus()


@pytest.fixture(scope="session")
def ray_session():
    """One small Ray session for the whole test run (2 cores: never start two)."""
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            object_store_memory=150 * 1024**2,
            include_dashboard=False,
            log_to_driver=False,
            ignore_reinit_error=True,
        )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_prepared(ray_session, tmp_path_factory):
    """The shipped tiny corpus prepared once for the session (a Ray Data job on the session's Ray),
    into the ACODM_HOME every test and subprocess of the session uses. A test that reads the real
    corpus (through `load_tokenized`, the env, pretrain, a job) asks for it, which also marks it slow:
    preparing a corpus starts Ray."""
    from acodm_ray.data.load import load_tokenized

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ACODM_HOME", str(tmp_path_factory.getbasetemp() / "acodm_home"))
        tokens, _ = load_tokenized(tiny_config())
    return tokens


# The README's comparison smoke command, run once for the session as a user would (a subprocess of
# ./.venv, tracking on) with one method of each other kind added: an online mixer fed by the alignment
# scores, a mixer schedule replayed from the proxy, RLlib PPO transferred, an AC-ODM variant on a named
# proxy size. test_readme.py checks the command and its tracking, test_compare.py its outputs: one
# quick comparison (about 4 minutes on 2 cores) serves both.
QUICK_EXTRA_METHODS = ["alignment", "alignment-proxy", "ppo", "acodm-lossreward@small"]


@pytest.fixture(scope="session")
def readme_quick_comparison(tmp_path_factory):
    """(the process, its output dir, the methods it ran) of the README's `--quick` comparison line."""
    from acodm_ray.compare import DEFAULT_METHODS
    from tests.test_readme import VENV, command, readme_block, run_bash, user_env

    if not (VENV / "bin" / "python").exists():
        pytest.skip("the README's commands use ./.venv (made by `make setup`)")
    lines = [
        command(line) for line in readme_block("Comparing mixing methods (the paper's figures)")
    ]
    smoke = [line for line in lines if line.endswith("--quick")]
    assert smoke == [".venv/bin/python jobs/compare.py --config configs/tiny.yaml --quick"]
    methods = [*DEFAULT_METHODS, *QUICK_EXTRA_METHODS]
    tmp = tmp_path_factory.mktemp("readme_compare")
    env = user_env(tmp, ACODM_HOME=str(tmp_path_factory.getbasetemp() / "acodm_home"))
    proc = run_bash(
        f"{smoke[0]} --set tracking.mlflow=true --set tracking.wandb=true --methods {','.join(methods)}",
        env,
        timeout=1200,
    )
    return proc, tmp / "out" / "results" / "tiny-compare-quick", methods


# The fast lane (`make test-fast`: -m "not slow and not network") is the tests that start neither Ray
# nor a job in a subprocess. A test that uses one of these fixtures starts Ray (or a job that does),
# so it is marked slow here, from what it uses, instead of by a list that would drift from the suite;
# the hooks below fail a test that is not marked slow and starts either some other way.
SLOW_FIXTURES = ("ray_session", "tiny_prepared", "readme_quick_comparison")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(name in item.fixturenames for name in SLOW_FIXTURES):
            item.add_marker(pytest.mark.slow)


def _ray_is_up() -> bool:
    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


RAY_WAS_UP = pytest.StashKey[bool]()
GUARD = pytest.StashKey[pytest.MonkeyPatch]()
FIX = "use the ray_session fixture or mark the test @pytest.mark.slow (tests/conftest.py: the fast lane)"


# The fast lane's check: a test not marked slow must not start Ray or a job, from its fixtures (of any
# scope) to its end; it would slow the fast lane down unseen. Hooks, not a fixture, so the check is in
# place before the session fixtures of the test's first use are set up.
@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    if not item.get_closest_marker("slow"):
        nodeid = item.nodeid

        class GuardedPopen(subprocess.Popen):
            def __init__(self, args, *rest, **kwargs):
                job = job_in(args)
                if job is not None:
                    pytest.fail(f"{nodeid} starts the job {job!r} but is not slow: {FIX}")
                super().__init__(args, *rest, **kwargs)

        def refuse_ray_init(*args, **kwargs):
            pytest.fail(f"{nodeid} starts Ray but is not slow: {FIX}")

        item.stash[RAY_WAS_UP] = _ray_is_up()
        item.stash[GUARD] = guard = pytest.MonkeyPatch()
        guard.setattr(subprocess, "Popen", GuardedPopen)
        if "ray" in sys.modules and not item.stash[RAY_WAS_UP]:
            guard.setattr(sys.modules["ray"], "init", refuse_ray_init)
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield
    if not item.stash.get(RAY_WAS_UP, True) and _ray_is_up():  # started some other way than init
        pytest.fail(f"{item.nodeid} started Ray but is not slow: {FIX}")
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    try:
        return (yield)
    finally:
        if GUARD in item.stash:
            item.stash[GUARD].undo()

"""jobs/proxy_rl.py end to end on the real env: every algorithm, resume, parallel proxies; `ray job submit` of it is
test_readme.py::test_submit_block_runs_as_written (the README's block, as written) and test_faults.py (stop, resubmit)."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import torch

from acodm_ray.agent.policy_file import load_policy
from policies.registry import ALGOS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
import proxy_rl  # noqa: E402

FAST = [
    "--config",
    "configs/tiny.yaml",
    "--no-rollout",
    "--set",
    "train.steps=6",
    "--set",
    "rl.min_sample_timesteps_per_iteration=6",
    "--set",
    "rl.train_batch_size=6",
]


def iterations(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "iterations.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("algo", ALGOS)
def test_each_algorithm_trains_on_the_proxy_env(ray_session, tmp_path, algo):
    started = time.time()
    rc = proxy_rl.main(
        FAST + ["--algo", algo, "--iterations", "2", "--output-dir", str(tmp_path), "--name", "run"]
    )
    assert rc == 0
    run = tmp_path / "run"
    assert [r["iteration"] for r in iterations(run)] == [1, 2]
    first_steps = [r["first_env_step_time"] for r in iterations(run)]  # per iteration, wall clock
    assert started < first_steps[0] < first_steps[1] < time.time()
    assert (run / "checkpoint" / "rllib_checkpoint.json").is_file()
    assert any((run / "tensorboard").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["algo"] == algo and summary["iterations"] == 2
    if algo == "acodm":
        actor, meta = load_policy(run / "policy")
        assert meta["domains"] == summary["domains"]
        w = actor(torch.zeros(1, meta["state_dim"]))[0]
        assert torch.isclose(w.sum(), torch.tensor(1.0)) and bool((w > 0).all())


def test_resume_continues_the_iteration_count(ray_session, tmp_path, monkeypatch):
    """--resume restores the learner (actor bit for bit, both optimizers' Adam state) and the
    lifetime counters of the checkpoint, then logs each further iteration once."""
    import policies.run

    args = FAST + ["--algo", "acodm", "--output-dir", str(tmp_path), "--name", "run"]
    assert (
        proxy_rl.main(args + ["--iterations", "2"]) == 0
    )  # iteration 2 samples a batch: real updates
    run = tmp_path / "run"
    exported, _ = load_policy(
        run / "policy"
    )  # the actor at iteration 2, the checkpoint's iteration
    before = iterations(run)
    restored = {}
    real_restore = policies.run.restore_algo

    def spy(algo, run_dir):
        real_restore(algo, run_dir)
        learner = algo.learner_group._learner  # local learner (rl.num_learners=0)
        restored["iteration"] = algo.iteration
        restored["actor"] = {
            k.removeprefix("actor."): torch.as_tensor(v).clone()
            for k, v in algo.learner_group.get_weights()["default_policy"].items()
            if k.startswith("actor.")
        }
        restored["optimizer"] = learner.get_state(components="optimizer")["optimizer"]
        restored["env_steps"] = algo.metrics.peek(("env_runners", "num_env_steps_sampled_lifetime"))

    monkeypatch.setattr(policies.run, "restore_algo", spy)
    assert proxy_rl.main(args + ["--iterations", "4", "--resume"]) == 0
    assert restored["iteration"] == 2
    assert set(restored["actor"]) == set(exported.state_dict())
    for k, v in exported.state_dict().items():
        assert torch.equal(restored["actor"][k], v), k
    adam_steps = [
        int(v)
        for opt in restored["optimizer"].values()
        for k, v in _leaves(opt)
        if k.endswith("/step")
    ]
    assert len(restored["optimizer"]) == 2 and adam_steps and all(n > 0 for n in adam_steps)
    assert restored["env_steps"] == before[-1]["env_steps"] > 0
    after = iterations(run)
    assert [r["iteration"] for r in after] == [1, 2, 3, 4] and after[:2] == before
    assert after[2]["env_steps"] > before[-1]["env_steps"]  # counting on, not from 0
    # without --resume the finished run is not clobbered
    assert proxy_rl.main(args + ["--iterations", "1"]) == 2


def _leaves(tree, prefix: str = ""):
    if isinstance(tree, dict):
        return [kv for k, v in tree.items() for kv in _leaves(v, f"{prefix}/{k}")]
    if isinstance(tree, (list, tuple)):
        return [kv for i, v in enumerate(tree) for kv in _leaves(v, f"{prefix}/{i}")]
    return [(prefix, tree)]


def test_resume_without_checkpoint_is_a_clear_error(ray_session, tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "note.txt").write_text("x")
    rc = proxy_rl.main(
        FAST + ["--algo", "acodm", "--output-dir", str(tmp_path), "--name", "run", "--resume"]
    )
    assert rc == 2
    assert "no RLlib checkpoint" in capsys.readouterr().err


def test_parallel_proxies_feed_one_learner(ray_session, tmp_path):
    """Two remote env runners, each with its own proxy LM: both sample (neither idles while the other
    does all the work) and the learner trains on what they sampled together."""
    from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED_LIFETIME

    from acodm_ray.config import load_config, to_dict
    from envs import RLLIB_ENV, DataMixingEnv, register
    from policies.registry import build_algo_config
    from policies.run import env_config_for

    cfg = load_config(
        "configs/tiny.yaml",
        [
            "train.steps=6",
            "rl.min_sample_timesteps_per_iteration=12",
            "rl.train_batch_size=6",
            "rl.num_env_runners=2",
            "rl.num_cpus_per_env_runner=0.5",
        ],
    )
    register()
    probe = DataMixingEnv({"experiment": to_dict(cfg)})
    probe.reset(seed=cfg.train.seed)
    env_config = env_config_for(cfg, "acodm", probe.max_decisions)
    algo = build_algo_config(
        "acodm",
        RLLIB_ENV,
        env_config,
        cfg.agent,
        cfg.rl,
        cfg.train.seed,
        warmup_updates=env_config["warmup_decisions"] * cfg.agent.updates_per_step,
    ).build_algo()
    group = algo.env_runner_group

    def count_sampled_steps(runner) -> int:
        """Wrap this runner's sample() (the learner's samples are gathered through it) with a counter."""
        real = runner.sample
        runner.test_sampled_steps = 0

        def sample(*args, **kwargs):
            episodes = real(*args, **kwargs)
            runner.test_sampled_steps += sum(len(e) for e in episodes)
            return episodes

        runner.sample = sample
        return os.getpid()

    try:
        pids = group.foreach_env_runner(count_sampled_steps, local_env_runner=False)
        assert len(set(pids)) == 2 and os.getpid() not in pids
        result = algo.train()
        assert group.num_healthy_remote_env_runners() == 2
        steps = group.foreach_env_runner(lambda r: r.test_sampled_steps, local_env_runner=False)
        assert len(steps) == 2 and all(n > 0 for n in steps), (
            f"env steps sampled per remote runner: {steps}"
        )
        # everything the iteration sampled came from the two of them (the local runner has no env here)
        assert result["env_runners"][NUM_ENV_STEPS_SAMPLED_LIFETIME] == sum(steps) >= 12
        assert result["learners"]["__all_modules__"]["num_env_steps_trained_lifetime"] > 0
    finally:
        algo.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Until the job server answers on 127.0.0.1:port (or the head process dies)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "ray start --head exited early"
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/version", timeout=2)
            return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"Ray head's job server did not answer on port {port}")


SUBMITTED = "\nJob '%s' submitted successfully\n"  # what `ray job submit` prints on success


class LocalHead:
    """A `ray start --head` cluster of this test's own (see `local_ray_head`)."""

    def __init__(self, cli: str, address: str, env: dict[str, str]):
        self.cli, self.address, self.env = cli, address, env

    def ray(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """`ray <args>` in this head's environment (pass `--address`, self.address, to `job` commands)."""
        return subprocess.run(
            [self.cli, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def submit(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """`ray job submit --working-dir . <args>`, retried while the job agent is not up yet.

        A submit whose connection the job server closed without a response (seen while it starts,
        as in KubeRay's flaky e2e tests) is retried under the same submission id, unless the
        server did record the job: then it counts as submitted, and is not submitted twice."""
        submission_id = f"acodm-test-{uuid.uuid4().hex[:12]}"
        for _ in range(30):  # the job agent starts a little after the dashboard answers
            job = self.ray("job", "submit", "--address", self.address, "--working-dir", ".",
                           "--submission-id", submission_id, *args, timeout=timeout)  # fmt: skip
            said = job.stdout + job.stderr
            if "Remote end closed connection" in said:
                if self._recorded(submission_id):
                    return subprocess.CompletedProcess(
                        job.args, 0, said + SUBMITTED % submission_id, ""
                    )
                time.sleep(2)
                continue
            if "No available agent" not in said:
                return job
            time.sleep(2)
        return job

    def _recorded(self, submission_id: str) -> bool:
        try:
            return bool(self.job_info(submission_id))
        except (urllib.error.URLError, OSError):  # 404 (never recorded) or the server still down
            return False

    def job_info(self, submission_id: str) -> dict:
        """The job server's record of a job (status, driver pid, ...), straight from its REST API."""
        with urllib.request.urlopen(f"{self.address}/api/jobs/{submission_id}", timeout=10) as r:
            return json.loads(r.read())


@contextlib.contextmanager
def local_ray_head(num_cpus: int = 1, env: dict[str, str] | None = None):
    """`ray start --head --block` on loopback with a free port for every port option, in its own
    process group; yields a LocalHead and kills exactly that process group on exit.

    Never `ray stop`: it would kill every Ray process on the machine, the test session's own cluster
    included."""
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        **(env or {}),
    }
    env.pop("RAY_ADDRESS", None)
    gcs, dash = free_port(), free_port()
    # Every port of its own: the test session's cluster already holds Ray's default agent ports.
    ports = [
        f"--{name}={free_port()}"
        for name in (
            "dashboard-agent-grpc-port",
            "dashboard-agent-listen-port",
            "metrics-export-port",
            "runtime-env-agent-port",
            "ray-client-server-port",
            "node-manager-port",
            "object-manager-port",
        )
    ]
    ray_cli = str(bin_dir / "ray")
    temp_dir = tempfile.mkdtemp(
        prefix="rayjob", dir="/tmp"
    )  # short: Ray's unix sockets cap path length
    head = subprocess.Popen(
        [
            ray_cli,
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={gcs}",
            f"--dashboard-port={dash}",
            "--dashboard-host=127.0.0.1",
            f"--num-cpus={num_cpus}",
            "--include-dashboard=true",
            f"--temp-dir={temp_dir}",
            *ports,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_port(dash, head)
        yield LocalHead(ray_cli, f"http://127.0.0.1:{dash}", env)
    finally:
        try:
            os.killpg(head.pid, signal.SIGTERM)
            head.wait(timeout=60)
        except ProcessLookupError:  # the whole group is already gone
            pass
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow
def test_proxy_stage_is_bit_reproducible(ray_session, tmp_path):
    """The same config and seed give a byte-identical exported actor: the replay buffer's sampler is
    seeded (RLlib's own draws from an unseeded generator), like every other RNG of the stage. Enough
    transitions that the learner replays many batches (a sampler left unseeded changes the bytes)."""
    args = FAST + [
        "--algo",
        "acodm",
        "--iterations",
        "3",
        "--output-dir",
        str(tmp_path),
        "--set",
        "agent.batch_size=4",
        "--set",
        "agent.warmup_updates=2",
    ]
    assert proxy_rl.main(args + ["--name", "a"]) == 0
    assert proxy_rl.main(args + ["--name", "b"]) == 0
    a = (tmp_path / "a" / "policy" / "actor.safetensors").read_bytes()
    b = (tmp_path / "b" / "policy" / "actor.safetensors").read_bytes()
    assert a == b
    first = iterations(tmp_path / "a")[-1]
    assert (
        first["learner_updates"] and first["learner_updates"] > 4
    )  # the learner really replayed batches
    from policies.run import LEARNER_KEYS

    assert set(LEARNER_KEYS) <= set(first), sorted(
        set(LEARNER_KEYS) - set(first)
    )  # every diagnostic reaches the JSONL
    assert first["value_spread"] >= 0.0
    assert proxy_rl.main(args + ["--name", "c", "--set", "train.seed=1"]) == 0
    assert (tmp_path / "c" / "policy" / "actor.safetensors").read_bytes() != a  # the seed matters

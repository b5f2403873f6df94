"""jobs/proxy_rl.py end to end on the real env: every algorithm, resume, parallel proxies, job submit."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from acodm_ray.agent.policy_file import load_policy
from policies.registry import ALGOS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
import proxy_rl  # noqa: E402

FAST = ["--config", "configs/tiny.yaml", "--no-rollout", "--set", "train.steps=6",
        "--set", "rl.min_sample_timesteps_per_iteration=6", "--set", "rl.train_batch_size=6"]


def iterations(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "iterations.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("algo", ALGOS)
def test_each_algorithm_trains_on_the_proxy_env(ray_session, tmp_path, algo):
    rc = proxy_rl.main(FAST + ["--algo", algo, "--iterations", "2", "--output-dir", str(tmp_path), "--name", "run"])
    assert rc == 0
    run = tmp_path / "run"
    assert [r["iteration"] for r in iterations(run)] == [1, 2]
    assert (run / "checkpoint" / "rllib_checkpoint.json").is_file()
    assert any((run / "tensorboard").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["algo"] == algo and summary["iterations"] == 2
    if algo == "acodm":
        actor, meta = load_policy(run / "policy")
        assert meta["domains"] == summary["domains"]
        w = actor(torch.zeros(1, meta["state_dim"]))[0]
        assert torch.isclose(w.sum(), torch.tensor(1.0)) and bool((w > 0).all())


def test_resume_continues_the_iteration_count(ray_session, tmp_path):
    args = FAST + ["--algo", "acodm", "--output-dir", str(tmp_path), "--name", "run"]
    assert proxy_rl.main(args + ["--iterations", "1"]) == 0
    assert proxy_rl.main(args + ["--iterations", "3", "--resume"]) == 0
    assert [r["iteration"] for r in iterations(tmp_path / "run")] == [1, 2, 3]
    # without --resume the finished run is not clobbered
    assert proxy_rl.main(args + ["--iterations", "1"]) == 2


def test_resume_without_checkpoint_is_a_clear_error(ray_session, tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "note.txt").write_text("x")
    rc = proxy_rl.main(FAST + ["--algo", "acodm", "--output-dir", str(tmp_path), "--name", "run", "--resume"])
    assert rc == 2
    assert "no RLlib checkpoint" in capsys.readouterr().err


def test_parallel_proxies_feed_one_learner(ray_session, tmp_path):
    rc = proxy_rl.main(FAST + ["--algo", "acodm", "--iterations", "1", "--output-dir", str(tmp_path), "--name", "run",
                               "--set", "rl.num_env_runners=2", "--set", "rl.num_cpus_per_env_runner=0.5",
                               "--set", "rl.min_sample_timesteps_per_iteration=12"])
    assert rc == 0
    record = iterations(tmp_path / "run")[0]
    assert record["healthy_env_runners"] == 2 and record["env_steps"] >= 12


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


@pytest.mark.slow
def test_job_submitted_to_a_local_head_node_succeeds(tmp_path):
    """`ray start --head` + `ray job submit --working-dir . -- python jobs/proxy_rl.py` (loopback only)."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "ACODM_OUTPUT_ROOT": str(tmp_path / "out")}
    env.pop("RAY_ADDRESS", None)
    gcs, dash = free_port(), free_port()
    # Every port of its own: the test session's cluster already holds Ray's default agent ports.
    ports = [f"--{name}={free_port()}" for name in (
        "dashboard-agent-grpc-port", "dashboard-agent-listen-port", "metrics-export-port",
        "runtime-env-agent-port", "ray-client-server-port", "node-manager-port", "object-manager-port")]
    ray_cli = str(bin_dir / "ray")
    temp_dir = tempfile.mkdtemp(prefix="rayjob", dir="/tmp")  # short: Ray's unix sockets cap path length
    # --block in its own process group: stopping it later kills exactly this cluster. `ray stop`
    # would kill every Ray process on the machine, the test session's own cluster included.
    head = subprocess.Popen([ray_cli, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}",
                             f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1", "--num-cpus=1",
                             "--include-dashboard=true", f"--temp-dir={temp_dir}", *ports],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for_port(dash, head)
    try:
        for _ in range(30):  # the job agent starts a little after the dashboard answers
            job = subprocess.run(
                [ray_cli, "job", "submit", "--address", f"http://127.0.0.1:{dash}", "--working-dir", ".", "--",
                 "python", "jobs/proxy_rl.py", *FAST, "--iterations", "1", "--name", "job"],
                env=env, capture_output=True, text=True, timeout=300,
            )
            if "No available agent" not in job.stdout + job.stderr:
                break
            time.sleep(2)
        assert job.returncode == 0, job.stdout[-1500:] + job.stderr[-1500:]
        assert "succeeded" in job.stdout + job.stderr
        run = tmp_path / "out" / "runs" / "job"
        assert (run / "policy" / "actor.safetensors").is_file()
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)

"""Faults of cluster operations: an env runner killed mid-training, a submitted job stopped and
resubmitted with --resume, missing and corrupt RLlib checkpoints."""

import hashlib
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import pytest
import torch

from acodm_ray.config import load_config, to_dict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_proxy_rl import FAST, iterations, local_ray_head, proxy_rl  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECOVERY_BOUND_S = 180.0  # only keeps a broken recovery from training forever; not a speed check


def process_gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie waiting for its parent counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def wait_until(predicate, what: str, timeout: float = 120.0, every: float = 0.2) -> None:
    """Poll `predicate` until it holds; the bound only keeps a broken run from hanging forever."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"still waiting after {timeout:.0f} s: {what}")
        time.sleep(every)


def snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` with the sha256 of its bytes (to prove nothing was touched)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# -- 1. an RLlib env runner killed mid-training ------------------------------------------------


def test_killed_env_runner_is_restarted_and_training_goes_on(ray_session):
    """Kill one of two remote env runners between iterations; RLlib (restart_failed_env_runners in
    policies/registry.py) brings it back, the iteration count keeps going and the learner keeps learning.

    Only a REMOTE runner may be killed. `foreach_env_runner` also applies its function to the local
    env runner, which lives in this (pytest's) process, unless `local_env_runner=False`: a pid list
    taken with the default starts with os.getpid(), and SIGKILL (or an os._exit run through it) ends
    the whole pytest session without a report."""
    import ray

    from envs import RLLIB_ENV, DataMixingEnv, register
    from policies.registry import build_algo_config
    from policies.run import env_config_for

    cfg = load_config(
        str(ROOT / "configs/tiny.yaml"),
        [
            "train.steps=6",
            "rl.min_sample_timesteps_per_iteration=6",
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
    # what the recovery below relies on (checked first: without it the test only ends at the hang guard)
    assert algo.config.restart_failed_env_runners and algo.config.max_num_env_runner_restarts > 0

    def remote_pids() -> dict[int, int]:
        ids = group.healthy_env_runner_ids()
        return dict(
            zip(
                ids,
                group.foreach_env_runner(
                    lambda r: os.getpid(), local_env_runner=False, remote_worker_ids=ids
                ),
            )
        )

    def actor_weights() -> dict[str, torch.Tensor]:
        state = algo.learner_group.get_weights()["default_policy"]
        return {k: torch.as_tensor(v).clone() for k, v in state.items() if k.startswith("actor.")}

    try:
        first = algo.train()
        assert group.num_healthy_remote_env_runners() == 2
        pids = remote_pids()
        victim_id = min(pids)
        victim_pid = pids[victim_id]
        assert victim_pid != os.getpid() and len(set(pids.values())) == 2
        # no_restart=False: a crash, which Ray Core restarts (max_restarts); the default
        # (no_restart=True) kills the actor for good and RLlib could never get it back.
        ray.kill(group._worker_manager.actors()[victim_id], no_restart=False)
        wait_until(
            lambda: process_gone(victim_pid), f"env runner {victim_id} (pid {victim_pid}) to exit"
        )
        killed_at, weights_at_kill = algo.iteration, actor_weights()
        steps = [first["num_env_steps_sampled_lifetime"]]

        seen = [killed_at]

        def restored_or_train_on() -> bool:
            """True once the runner is back; otherwise one more iteration (training goes on meanwhile)."""
            if (
                group.num_remote_worker_restarts() >= 1
                and group.num_healthy_remote_env_runners() == 2
            ):
                return True
            steps.append(algo.train()["num_env_steps_sampled_lifetime"])
            seen.append(algo.iteration)
            return False

        # a hang guard, not a speed check: only a recovery that never comes reaches the bound
        wait_until(
            restored_or_train_on,
            f"env runner {victim_id} to be restarted",
            timeout=RECOVERY_BOUND_S,
            every=0.0,
        )
        steps.append(algo.train()["num_env_steps_sampled_lifetime"])  # both runners sampling again
        seen.append(algo.iteration)

        assert seen == list(
            range(killed_at, killed_at + len(seen))
        )  # one more per train(), no reset
        assert all(b > a for a, b in zip(steps, steps[1:]))
        assert group.num_healthy_remote_env_runners() == 2
        new_pids = remote_pids()
        assert set(new_pids) == {1, 2} and new_pids[victim_id] != victim_pid  # a new process
        # the learner kept learning, and the restarted runner acts with the learner's current actor
        now = actor_weights()
        assert any(not torch.equal(weights_at_kill[k], now[k]) for k in now)
        restarted = group.foreach_env_runner(
            lambda r: r.module.state_dict(), local_env_runner=False, remote_worker_ids=[victim_id]
        )[0]
        for k, v in now.items():
            assert torch.equal(torch.as_tensor(restarted[k]), v), k
    finally:
        algo.stop()


# -- 2. a submitted job stopped and resubmitted with --resume ----------------------------------


@pytest.mark.slow
def test_stopped_job_resubmitted_with_resume_continues(tmp_path):
    """`ray job stop` a proxy_rl job after its first checkpoint, then `ray job submit ... --resume`
    with the same --name: the iteration count goes on from the checkpoint to rl.iterations."""
    out = tmp_path / "out"
    run = out / "runs" / "job"
    # ACODM_OUTPUT_ROOT through the job's runtime env (not the head's environment)
    runtime_env = json.dumps({"env_vars": {"ACODM_OUTPUT_ROOT": str(out)}})
    job = [
        "--runtime-env-json",
        runtime_env,
        "--",
        "python",
        "jobs/proxy_rl.py",
        *FAST,
        "--set",
        "rl.checkpoint_every=1",
        "--name",
        "job",
    ]
    with local_ray_head() as head:
        # far more iterations than run before the stop: the job is surely stopped mid-run
        first = head.submit("--no-wait", *job, "--iterations", "500")
        assert first.returncode == 0, first.stdout[-1500:] + first.stderr[-1500:]
        job_id = re.search(
            r"Job '([^']+)' submitted successfully", first.stdout + first.stderr
        ).group(1)

        def checkpointed() -> bool:
            status = head.job_info(job_id)["status"]
            assert status in ("PENDING", "RUNNING"), (
                f"job {status} before its first checkpoint: "
                + head.ray("job", "logs", "--address", head.address, job_id).stdout[-2000:]
            )
            return (run / "checkpoint" / "rllib_checkpoint.json").is_file()

        wait_until(checkpointed, "the job's first RLlib checkpoint", timeout=300, every=0.5)
        driver_pid = int(head.job_info(job_id)["driver_info"]["pid"])
        stop = head.ray("job", "stop", "--address", head.address, job_id)
        assert stop.returncode == 0, stop.stdout[-1500:] + stop.stderr[-1500:]
        wait_until(lambda: head.job_info(job_id)["status"] == "STOPPED", "status STOPPED")
        wait_until(
            lambda: process_gone(driver_pid), f"the stopped job's driver (pid {driver_pid}) to exit"
        )

        before_records = iterations(run)
        before = [r["iteration"] for r in before_records]
        assert before == list(range(1, len(before) + 1)) and before[-1] < 500  # stopped mid-run
        assert not (run / "summary.json").exists()
        target = before[-1] + 3
        second = head.submit(*job, "--iterations", str(target), "--resume")
        assert second.returncode == 0, second.stdout[-1500:] + second.stderr[-1500:]
        assert "succeeded" in second.stdout + second.stderr
        assert (
            run / "policy" / "actor.safetensors"
        ).is_file()  # a submitted job ends with its export

    # Every iteration logged once: the checkpoint holds the last iteration logged before the stop,
    # or the one before it when the stop landed between the log line and the checkpoint save (then
    # the resume drops that line and trains the iteration again).
    after = iterations(run)
    assert [r["iteration"] for r in after] == list(range(1, target + 1))
    n_kept = len(before) if after[len(before) - 1] == before_records[-1] else len(before) - 1
    assert (
        n_kept >= 1 and after[:n_kept] == before_records[:n_kept]
    )  # logged before the stop, kept as is
    kept = after[:n_kept]
    # the checkpoint's lifetime counters came back: sampling counts on from there, not from 0
    first_resumed = after[len(kept)]
    assert first_resumed["env_steps"] > kept[-1]["env_steps"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["iterations"] == target
    assert not (run / "checkpoint.old").exists() and not (run / "checkpoint.tmp").exists()


# -- 3. missing and corrupt RLlib checkpoints ---------------------------------------------------

ARGS = FAST + ["--algo", "acodm", "--name", "run"]


@pytest.fixture(scope="module")
def trained_run(ray_session, tmp_path_factory) -> Path:
    """One finished proxy_rl run (1 iteration); tests work on copies of it."""
    out = tmp_path_factory.mktemp("trained")
    assert proxy_rl.main(ARGS + ["--iterations", "1", "--output-dir", str(out)]) == 0
    return out / "run"


def copy_of(run: Path, tmp_path: Path) -> Path:
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


def test_resume_without_checkpoint_names_the_missing_path(trained_run, tmp_path, capsys):
    run = copy_of(trained_run, tmp_path)
    shutil.rmtree(run / "checkpoint")
    files = snapshot(run)
    rc = proxy_rl.main(ARGS + ["--iterations", "2", "--output-dir", str(tmp_path), "--resume"])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"no RLlib checkpoint at {run / 'checkpoint'}" in err and "Traceback" not in err
    assert snapshot(run) == files  # the run is left as it was
    # no run dir at all: the same kind of error, and nothing is created
    rc = proxy_rl.main(
        FAST
        + [
            "--algo",
            "acodm",
            "--name",
            "nothing",
            "--iterations",
            "2",
            "--output-dir",
            str(tmp_path),
            "--resume",
        ]
    )
    err = capsys.readouterr().err
    assert (
        rc == 2
        and f"run directory {tmp_path / 'nothing'} does not exist" in err
        and "Traceback" not in err
    )
    assert not (tmp_path / "nothing").exists()


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_checkpoint_is_a_clear_error_and_loses_nothing(
    trained_run, tmp_path, capsys, damage
):
    run = copy_of(trained_run, tmp_path)
    for f in (run / "checkpoint").rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            f.write_bytes(
                data[: len(data) // 2]
                if damage == "truncated"
                else b"\x80garbage" + data[::-1][:64]
            )
    files = snapshot(run)
    rc = proxy_rl.main(ARGS + ["--iterations", "2", "--output-dir", str(tmp_path), "--resume"])
    err = capsys.readouterr().err
    assert rc == 2
    assert (
        f"RLlib checkpoint {run / 'checkpoint'} could not be restored" in err
        and "Traceback" not in err
    )
    # nothing already trained is lost: the corrupt checkpoint and every other file stay as they were
    assert snapshot(run) == files
    assert {"checkpoint", "policy", "iterations.jsonl", "summary.json", "config.yaml"} <= {
        p.name for p in run.iterdir()
    }


def test_checkpoint_left_by_an_interrupted_save(trained_run, tmp_path):
    """A run killed inside save_algo_checkpoint's swap still resumes and checkpoints again.

    Killed after the swap: a stale checkpoint.old next to checkpoint/ (renaming onto it used to fail
    with "Directory not empty" at the next save). Killed between the renames: only checkpoint.old."""
    run = copy_of(trained_run, tmp_path)
    shutil.copytree(run / "checkpoint", run / "checkpoint.old")
    assert (
        proxy_rl.main(ARGS + ["--iterations", "2", "--output-dir", str(tmp_path), "--resume"]) == 0
    )
    assert [r["iteration"] for r in iterations(run)] == [1, 2]
    assert not (run / "checkpoint.old").exists()

    (run / "checkpoint").replace(run / "checkpoint.old")
    assert (
        proxy_rl.main(ARGS + ["--iterations", "3", "--output-dir", str(tmp_path), "--resume"]) == 0
    )
    assert [r["iteration"] for r in iterations(run)] == [1, 2, 3]
    assert (run / "checkpoint" / "rllib_checkpoint.json").is_file() and not (
        run / "checkpoint.old"
    ).exists()

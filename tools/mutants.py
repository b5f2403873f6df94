"""Hand-written mutants: break one guarantee on purpose, in a temporary copy, and check that the
test claiming it fails.

    python tools/mutants.py            # the CI set (tests/test_mutants.py runs this under `make test`)
    python tools/mutants.py --all      # every mutant below (the ones that cost a Ray Train run too)
    python tools/mutants.py NAME ...   # chosen mutants;  --list shows them all

Each mutant replaces one exact snippet (it must occur exactly once, so a refactor that moves the
code makes the script fail loudly instead of testing nothing) in a copy of the working tree, then
runs the claiming tests there with pytest. The mutant is "killed" when pytest reports failed tests
(exit code 1); a collection error or a crash (any other code) is not a kill. Exit status: 0 when
every mutant was killed, 1 otherwise.

`mutmut` covers the pure core (signals, sampler, DDPG, mixers; see BENCHMARKS.md). These are the
guarantees mutmut cannot reach because their tests need Ray, a checkpoint or an optional package.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    guarantee: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
    ci: bool = False  # part of the set `make test` runs (keep it cheap: a few minutes in all)
    env: dict[str, str] = field(default_factory=dict)
    # where the mutated copy goes (default: the system's temp dir); the fake-cluster tests hide /tmp
    # behind a private one inside their namespaces (tests/isolation.py), so their copies go elsewhere
    tree_dir: str | None = None


MUTANTS = [
    # -- exact resume ----------------------------------------------------------------------------
    Mutant(
        "pretrain-resume-restores-nothing",
        "pretrain --resume restores trainer and mixer",
        "acodm_ray/pretrain.py",
        '    trainer.load_state_dict(state["trainer"])\n    mixer.load_state_dict(state["mixer"])\n',
        "    pass\n",
        ("tests/test_pretrain.py::test_crash_then_resume_matches_uninterrupted_run",),
        ci=True,
    ),
    Mutant(
        "pretrain-resume-forgets-mixer",
        "pretrain --resume restores the mixer",
        "acodm_ray/pretrain.py",
        '    mixer.load_state_dict(state["mixer"])\n',
        "",
        ("tests/test_pretrain.py::test_crash_then_resume_matches_uninterrupted_run",),
    ),
    Mutant(
        "hf-export-is-a-fresh-model",
        "the exported HF model is the trained one",
        "acodm_ray/pretrain.py",
        "    trainer.model.save_pretrained(model_dir)\n",
        "    type(trainer.model)(trainer.model.config).save_pretrained(model_dir)\n",
        ("tests/test_pretrain.py::test_saved_model_reloads_with_transformers",),
    ),
    Mutant(
        "train-worker-resume-restores-nothing",
        "a restarted Ray Train worker resumes from its checkpoint",
        "acodm_ray/target/worker.py",
        '            self.lm.load_state_dict(payload["trainer"])\n',
        "            pass\n",
        ("tests/test_target.py::test_killed_worker_resumes_from_checkpoint_with_exact_step_count",),
        env={"ACODM_TEST_TARGET_RUNS": "uniform,crash"},
    ),
    Mutant(
        "online-export-is-an-untrained-actor",
        "the online agent exports its trained actor",
        "acodm_ray/target/finish.py",
        '    actor.load_state_dict(agent["actor"])\n',
        "",
        ("tests/test_target.py::test_online_agent_learns_on_the_target_and_exports_its_actor",),
        env={"ACODM_TEST_TARGET_RUNS": "online"},
    ),
    Mutant(
        "wandb-resume-opens-a-new-run",
        "--resume continues the same W&B run",
        "acodm_ray/tracking.py",
        'run_id = self._ids.get("wandb_run_id") or uuid.uuid4().hex[:16]',
        "run_id = uuid.uuid4().hex[:16]",
        (
            "tests/test_tracking.py::test_wandb_offline_run_needs_no_account_and_resumes_the_same_run",
        ),
    ),
    Mutant(
        "rllib-restore-forgets-optimizer",
        "an RLlib checkpoint restores the optimizers",
        "policies/acodm/learner.py",
        "class ACODMTorchLearner(TorchLearner):\n",
        "class ACODMTorchLearner(TorchLearner):\n"
        "    def _set_optimizer_state(self, state):  # mutant: optimizer state is dropped on restore\n"
        "        pass\n\n",
        (
            "tests/test_policies.py::test_checkpoint_restore_continues",
            "tests/test_proxy_rl.py::test_resume_continues_the_iteration_count",
        ),
    ),
    Mutant(
        "rllib-restore-skips-the-learner",
        "proxy_rl --resume restores the learner, not just the counters",
        "policies/run.py",
        "        algo.restore_from_path(str(path.resolve()))\n",
        "        fresh = algo.learner_group.get_state()\n"
        "        algo.restore_from_path(str(path.resolve()))\n"
        "        algo.learner_group.set_state(fresh)  # mutant: the learner comes back as built\n",
        ("tests/test_proxy_rl.py::test_resume_continues_the_iteration_count",),
    ),
    Mutant(
        "one-runner-does-all-the-work",
        "every parallel proxy feeds the learner",
        "policies/acodm/acodm.py",
        "class ACODM(SAC):\n",
        "class ACODM(SAC):\n"
        "    def training_step(self):  # mutant: only the first healthy runner samples\n"
        "        group = self.env_runner_group\n"
        "        real, first = group.foreach_env_runner, group.healthy_env_runner_ids()[:1]\n"
        "        group.foreach_env_runner = lambda func, **kw: real(func, **{**kw, 'remote_worker_ids': first})\n"
        "        try:\n"
        "            return super().training_step()\n"
        "        finally:\n"
        "            del group.foreach_env_runner\n\n",
        ("tests/test_proxy_rl.py::test_parallel_proxies_feed_one_learner",),
    ),
    # -- env-runner restart ------------------------------------------------------------------------
    Mutant(
        "env-runner-not-restarted",
        "a killed env runner is restarted",
        "policies/registry.py",
        "restart_failed_env_runners=True",
        "restart_failed_env_runners=False",
        ("tests/test_faults.py::test_killed_env_runner_is_restarted_and_training_goes_on",),
        ci=True,
    ),
    # -- safe loading ------------------------------------------------------------------------------
    Mutant(
        "policy-weights-fall-back-to-pickle",
        "a policy's weights are never unpickled",
        "acodm_ray/agent/policy_file.py",
        "    except (SafetensorError, OSError, ValueError) as err:\n        raise PolicyFileError(",
        "    except (SafetensorError, OSError, ValueError) as err:\n"
        "        import pickle\n"
        "        with open(weights_path, 'rb') as f:\n"
        "            try:\n"
        "                return pickle.load(f)\n"
        "            except Exception:\n"
        "                pass\n"
        "        raise PolicyFileError(",
        ("tests/test_security.py::test_pickle_inside_a_policy_directory_is_never_unpickled",),
        ci=True,
    ),
    Mutant(
        "checkpoint-loaded-with-pickle",
        "checkpoints load with weights_only=True",
        "acodm_ray/checkpoint.py",
        "weights_only=True)",
        "weights_only=False)",
        ("tests/test_security.py::test_checkpoint_with_code_is_refused_without_running_it",),
    ),
    Mutant(
        "run-name-guard-off",
        "run names cannot leave the output root",
        "acodm_ray/safety.py",
        "    if not isinstance(name, str):\n",
        "    return Path(run_root) / name\n    if not isinstance(name, str):\n",
        ("tests/test_security.py::test_run_names_cannot_escape_the_output_root",),
    ),
    Mutant(
        "yaml-unsafe-load",
        "configs are parsed with yaml.safe_load",
        "acodm_ray/typed_config.py",
        "data = yaml.safe_load(path.read_text())",
        "data = yaml.unsafe_load(path.read_text())",
        ("tests/test_config.py::test_yaml_is_loaded_safely",),
    ),
    # -- tracking ----------------------------------------------------------------------------------
    Mutant(
        "mlflow-resume-opens-a-new-run",
        "--resume continues the same MLflow run",
        "acodm_ray/tracking.py",
        "return json.loads(path.read_text()) if path.is_file() else {}",
        "return {}",
        ("tests/test_tracking.py::test_mlflow_run_is_logged_and_resumed",),
        ci=True,
    ),
    # -- scaling with cluster autoscaling (tests/test_autoscaling.py: one fake-cluster run each) ---------
    Mutant(
        "aws-cpu-worker-loses-its-cpus",
        "deploy/aws.yaml's CPU group offers the CPUs our jobs request",
        "deploy/aws.yaml",
        '    resources: {"CPU": 16}\n',
        '    resources: {"cpu": 16}\n',
        (
            "tests/test_autoscaling.py::test_aws_worker_types_that_lose_cpu_fit_no_job",
            "tests/test_autoscaling.py::test_scenario_jobs_fit_aws_yaml_and_the_fake_node_types",
        ),
    ),
    Mutant(
        "aws-head-takes-the-work",
        "the head advertises no CPU, so every env runner and Train worker drives the autoscaler",
        "deploy/aws.yaml",
        '    resources: {"CPU": 0}\n',
        '    resources: {"CPU": 4}\n',
        (
            "tests/test_autoscaling.py::test_cold_proxy_job_scales_up_and_its_env_runners_run_on_the_new_nodes",
        ),
        tree_dir="/var/tmp",
    ),
    Mutant(
        "policy-server-pinned-softly",
        "the policy server runs on the driver's node (the head), never on a "
        "worker node the autoscaler may remove",
        "acodm_ray/policy_server.py",
        "ray.get_runtime_context().get_node_id(), soft=False",
        "ray.get_runtime_context().get_node_id(), soft=True",
        (
            "tests/test_autoscaling.py::test_train_workers_spread_over_worker_nodes_and_the_policy_server_answers_from_the_head",
        ),
        tree_dir="/var/tmp",
    ),
    Mutant(
        "cache-home-stays-on-the-driver",
        "the driver's ACODM_HOME reaches every worker of the job, on every node",
        "jobs/_common.py",
        "    return {k: environ[k] for k in FORWARDED_ENV if k in environ and k not in job_env}\n",
        "    return {}\n",
        ("tests/test_autoscaling.py::test_every_process_used_the_shared_storage",),
        tree_dir="/var/tmp",
    ),
    Mutant(
        "mlflow-logs-nothing",
        "metrics reach MLflow",
        "acodm_ray/tracking.py",
        'self._mlflow.log_batch(self._ids["mlflow_run_id"], metrics=metrics[i : i + 1000])',
        "pass",
        ("tests/test_tracking.py::test_mlflow_run_is_logged_and_resumed",),
    ),
]


def copy_tree(dst: Path) -> None:
    """The working tree as git sees it (tracked and untracked-but-not-ignored files)."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for rel in filter(None, (f.decode() for f in files)):
        src = ROOT / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def apply(m: Mutant, tree: Path) -> None:
    target = tree / m.path
    text = target.read_text()
    if text.count(m.old) != 1:
        raise SystemExit(
            f"mutant {m.name}: the snippet to replace occurs {text.count(m.old)} times in {m.path} "
            f"(expected once): update tools/mutants.py\n{m.old}"
        )
    target.write_text(text.replace(m.old, m.new))


def run(m: Mutant, timeout: float) -> tuple[bool, str, float]:
    """(killed, detail, seconds) for one mutant."""
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"mutant-{m.name}-", dir=m.tree_dir) as tmp:
        tree = Path(tmp)
        copy_tree(tree)
        apply(m, tree)
        env = {**os.environ, "PYTHONPATH": str(tree), **m.env}
        env.pop("PYTEST_ADDOPTS", None)
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            *m.tests,
        ]
        try:
            proc = subprocess.run(
                cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            return False, f"timed out after {timeout:.0f} s", time.monotonic() - start
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or [""]
    killed = proc.returncode == 1 and "failed" in tail[0]
    return killed, f"pytest exit {proc.returncode}: {tail[0]}", time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", help="mutants to run (default: the CI set)")
    parser.add_argument("--all", action="store_true", help="every mutant")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per mutant")
    args = parser.parse_args(argv)
    by_name = {m.name: m for m in MUTANTS}
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:40s} {'ci ' if m.ci else '   '} {m.guarantee}  <- {', '.join(m.tests)}")
        return 0
    unknown = [n for n in args.names if n not in by_name]
    if unknown:
        parser.error(f"unknown mutant(s) {unknown}; see --list")
    chosen = (
        [by_name[n] for n in args.names] if args.names else [m for m in MUTANTS if args.all or m.ci]
    )
    survived = []
    for m in chosen:
        killed, detail, seconds = run(m, args.timeout)
        print(
            f"{'killed  ' if killed else 'SURVIVED'} {m.name} ({seconds:.0f} s; {detail})",
            flush=True,
        )
        if not killed:
            survived.append(m.name)
    print(
        f"{len(chosen) - len(survived)}/{len(chosen)} mutants killed"
        + (f"; survived: {survived}" if survived else "")
    )
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())

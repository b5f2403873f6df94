"""Both stages on a fake autoscaling cluster made from deploy/aws.yaml's node types; one node killed.

Run inside the namespaces of `tests/isolation.py` (it starts and stops Ray with `ray stop --force`):

    python tests/autoscaling_scenario.py OUT.json

`tests/test_autoscaling.py` runs it and checks what it recorded; `benchmarks/bench_autoscaling.py`
runs it and reports the timings. It records, it does not judge (beyond hang guards):
  1. a head with aws.yaml's head resources (CPU 0) and aws.yaml's worker node types, CPUs scaled to
     1 per node, at most 2 nodes of the CPU type and none of the GPU type (`tests/fake_cluster.py`);
     every job's bundles are checked to fit those types first;
  2. `jobs/proxy_rl.py` with 2 env runners, submitted to the bare head ("cold": the autoscaler must
     add the nodes), then the same job again while those nodes are still up ("warm");
  3. `jobs/target_pretrain.py` with 2 Train workers serving the cold proxy's exported policy; once
     rank 0 has logged step `KILL_AFTER_STEP`, every process of one Train worker's node is killed
     (the autoscaler must terminate it and launch a replacement: there is no spare node);
  4. `jobs/prepare_corpus.py` as a job of its own, writing the corpus the proxy job's driver had
     prepared (before its env runners started) into another directory of the shared storage;
  5. the idle worker nodes, watched until the autoscaler has removed them all.
Throughout, a thread records when each worker node joined and left (`ray.nodes()`), and after
each job the Ray state API gives the node of every actor the job ran (env runners, Train workers,
the policy server); the proxy runs' iterations.jsonl give when their first env step completed
(`first_env_step_time`, policies/callbacks.py's SamplingClock).

What stands for a real cluster's shared storage: `SHARED`, one directory every fake node sees (they
share this machine's filesystem). The job drivers get `ACODM_HOME` and `ACODM_OUTPUT_ROOT` under it
through their entrypoint, i.e. in the driver's environment only, as on a head that sets them; the
env runners and Train workers must get them from the jobs (`jobs/_common.forwarded_env_vars`, the
Train loop config), never from their node. `HOME` (the nodes' local defaults) is elsewhere, so a
process that fell back to `~/.cache/acodm` or `~/acodm-runs` leaves a trace there.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acodm_ray.cluster import fits, proxy_bundles, target_bundles  # noqa: E402
from acodm_ray.config import load_config  # noqa: E402
from tests.fake_cluster import (  # noqa: E402
    FakeAutoscalingCluster,
    head_resources,
    kill_node,
    node_types_by_id,
    scaled_node_types,
)

LAUNCHER = ROOT / "deploy" / "aws.yaml"
MAX_CPUS_PER_NODE = 1.0  # every aws.yaml node type, scaled to this machine
MAX_NODES_PER_TYPE = 2  # what each job needs: no spare node, so a lost one must be replaced
IDLE_TIMEOUT_MINUTES = 1.0
HEARTBEAT_TIMEOUT_S = 20  # the autoscaler terminates a node silent this long (default 30)
SYSTEM_CONFIG = {
    "health_check_period_ms": 1000,
    "health_check_failure_threshold": 3,
}  # GCS: a dead raylet in ~3 s
SHARED = Path("/tmp/shared")
ACODM_HOME = SHARED / "acodm_home"
OUTPUT_ROOT = SHARED / "out"
JOB_TIMEOUT_S = 600.0  # hang guards only
SCALE_DOWN_SLACK_S = 120.0
OBSERVATIONS = "observations.json"

CONFIG = "configs/tiny.yaml"
PROXY_SETS = [
    "rl.num_env_runners=2",
    "rl.num_cpus_per_env_runner=1",
    "train.steps=6",
    "rl.min_sample_timesteps_per_iteration=12",
    "rl.train_batch_size=6",
    "rl.checkpoint_every=1",
]
TARGET_STEPS = 30
CHECKPOINT_EVERY = 5
KILL_AFTER_STEP = 12
TARGET_SETS = [
    "target.num_workers=2",
    "target.cpus_per_worker=1",
    "target.max_failures=3",
    f"train.steps={TARGET_STEPS}",
    f"train.checkpoint_every={CHECKPOINT_EVERY}",
    f"train.eval_every={TARGET_STEPS}",
    "train.eval_batches=1",
    "target.server_timeout_s=20",
]
# The checkout in place on every node, as deploy/aws.yaml's file_mounts put it there: an uploaded
# working dir cannot be used here. Every fake node's runtime env agent unpacks a job's package into
# the one session directory they share, and Ray 2.60 unpacks with overwrite=True: each node that joins
# deletes the copy the other nodes' workers are running in (they then die on start with "Intel oneMKL
# FATAL ERROR: Cannot load .../libtorch_cpu.so", torch's symptom of a deleted working directory).
WORKING_DIR = f"local://{ROOT}"
JOB_ENV = {  # the jobs' runtime env (Ray Train's controller reads these)
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "600",  # a restarted group waits for the replacement node
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
    "TOKENIZERS_PARALLELISM": "false",
}


def launcher() -> dict[str, Any]:
    return yaml.safe_load(LAUNCHER.read_text())


def job_configs(policy: str = "/nonexistent/policy"):
    """The configs the two stages' jobs run with (what the fit check and the entrypoints share)."""
    proxy = load_config(ROOT / CONFIG, PROXY_SETS)
    target = load_config(ROOT / CONFIG, TARGET_SETS + [f"target.policy={policy}"])
    return proxy, target


def check_jobs_fit(node_types: dict[str, dict[str, Any]]) -> None:
    """Refuse to start when a job's bundles cannot fit the node types (fails in seconds, not at a timeout)."""
    proxy, target = job_configs()
    for name, bundles in (("proxy", proxy_bundles(proxy)), ("target", target_bundles(target))):
        if not fits(bundles, node_types):
            raise RuntimeError(
                f"the {name} job asks for {bundles}; the node types {node_types} cannot hold it"
            )


def entrypoint(script: str, sets: list[str], *args: str) -> str:
    env = f"ACODM_HOME={ACODM_HOME} ACODM_OUTPUT_ROOT={OUTPUT_ROOT}"
    flags = " ".join(f"--set {shlex.quote(s)}" for s in sets)
    return (
        f"{env} python {script} --config {CONFIG} {flags} {' '.join(shlex.quote(a) for a in args)}"
    )


# ------------------------------------------------------------------------- watching the cluster


class NodeWatch(threading.Thread):
    """Every worker node's join and leave time (wall clock), polled from the GCS every 0.5 s."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.joined: dict[str, float] = {}
        self.left: dict[str, float] = {}
        self.types: dict[str, str] = {}
        self.head: str | None = None
        self._halt = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        import ray

        while not self._halt.is_set():
            now = time.time()
            try:
                nodes = ray.nodes()
            except Exception:  # a busy GCS: try again
                nodes = []
            fresh = False
            with self.lock:
                for n in nodes:
                    node_id = n["NodeID"]
                    if "node:__internal_head__" in n.get("Resources", {}) or (
                        n["Alive"] and n.get("IsHead")
                    ):
                        self.head = node_id
                        continue
                    if n["Alive"] and node_id not in self.joined:
                        self.joined[node_id] = now
                        fresh = True
                    if not n["Alive"] and node_id in self.joined and node_id not in self.left:
                        self.left[node_id] = now
            if fresh:
                types = node_types_by_id()
                with self.lock:
                    self.types.update(types)
            self._halt.wait(0.5)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)

    def alive(self) -> set[str]:
        with self.lock:
            return set(self.joined) - set(self.left)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "head": self.head,
                "joined": dict(self.joined),
                "left": dict(self.left),
                "types": dict(self.types),
            }


def wait_until(predicate, what: str, timeout: float, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"still waiting after {timeout:.0f} s: {what}")
        time.sleep(every)


# ------------------------------------------------------------------------------ jobs and actors


def submit(client, name: str, entry: str) -> dict[str, Any]:
    start = time.time()
    sid = client.submit_job(
        entrypoint=entry,
        submission_id=name,
        runtime_env={"working_dir": WORKING_DIR, "env_vars": dict(JOB_ENV)},
    )
    return {"submission_id": sid, "entrypoint": entry, "submitted": start}


def wait_job(client, job: dict[str, Any], logs: Path) -> dict[str, Any]:
    from ray.job_submission import JobStatus

    done = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
    wait_until(
        lambda: client.get_job_status(job["submission_id"]) in done,
        f"job {job['submission_id']}",
        JOB_TIMEOUT_S,
        every=1.0,
    )
    info = client.get_job_info(job["submission_id"])
    logs.mkdir(parents=True, exist_ok=True)
    (logs / f"{job['submission_id']}.log").write_text(client.get_job_logs(job["submission_id"]))
    job.update(
        {
            "status": str(info.status.value),
            "job_id": info.job_id,
            "message": info.message,
            "driver_node_id": info.driver_node_id,
            "start_time": info.start_time / 1000,
            "end_time": info.end_time / 1000,
        }
    )
    return job


def actors(job_id: str, class_name: str, exact: bool = True) -> list[dict[str, Any]]:
    """Every actor of `class_name` the job created (or, not `exact`, whose class name contains it:
    Ray Data names its pool actors after the UDF), dead ones included, with its node."""
    from ray.util.state import list_actors

    filters = [("job_id", "=", job_id)] + ([("class_name", "=", class_name)] if exact else [])
    found = list_actors(filters=filters, detail=True, limit=1000, raise_on_missing_output=False)
    return [
        {"actor_id": a.actor_id, "node_id": a.node_id, "state": a.state, "pid": a.pid}
        for a in found
        if exact or class_name in a.class_name
    ]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def step_records(run_dir: Path) -> list[dict[str, Any]]:
    return [r for r in read_jsonl(run_dir / "metrics.jsonl") if r.get("kind") == "step"]


# ----------------------------------------------------------------------------------- the phases


def proxy_phase(client, name: str, watch: NodeWatch, logs: Path) -> dict[str, Any]:
    alive_at_submit = sorted(watch.alive())
    job = submit(
        client,
        name,
        entrypoint(
            "jobs/proxy_rl.py", PROXY_SETS, "--no-rollout", "--iterations", "1", "--name", name
        ),
    )
    wait_job(client, job, logs)
    job["alive_at_submit"] = alive_at_submit
    job["env_runners"] = actors(job["job_id"], "SingleAgentEnvRunner")
    # the driver prepares the corpus first (a Ray Data job): its tokenizer actors, on whatever nodes
    job["tokenizer_actors"] = actors(job["job_id"], "Encoder", exact=False)
    job["run_dir"] = str(OUTPUT_ROOT / "runs" / name)
    job["iterations"] = read_jsonl(Path(job["run_dir"]) / "iterations.jsonl")
    summary = Path(job["run_dir"]) / "summary.json"
    job["summary"] = json.loads(summary.read_text()) if summary.is_file() else None
    return job


def target_phase(client, policy: str, watch: NodeWatch, logs: Path) -> dict[str, Any]:
    run_dir = OUTPUT_ROOT / "runs" / "target"
    job = submit(
        client,
        "target",
        entrypoint("jobs/target_pretrain.py", TARGET_SETS, "--policy", policy, "--name", "target"),
    )
    job["alive_at_submit"] = sorted(watch.alive())
    job["run_dir"] = str(run_dir)

    def reached() -> bool:
        status = client.get_job_status("target")
        if str(status.value) in ("FAILED", "STOPPED", "SUCCEEDED"):
            raise RuntimeError(f"the target job ended ({status}) before step {KILL_AFTER_STEP}")
        steps = step_records(run_dir)
        return bool(steps) and steps[-1]["step"] >= KILL_AFTER_STEP

    wait_until(reached, f"rank 0 to log step {KILL_AFTER_STEP}", JOB_TIMEOUT_S, every=0.2)
    info = client.get_job_info("target")
    workers = [a for a in actors(info.job_id, "RayTrainWorker") if a["state"] == "ALIVE"]
    server = actors(info.job_id, "PolicyServer")
    server_nodes = {a["node_id"] for a in server}
    candidates = sorted({a["node_id"] for a in workers} - server_nodes - {watch.head})
    before = step_records(run_dir)
    job["kill"] = {
        "node_id": None,
        "time": None,
        "pids": [],
        "workers_before": workers,
        "steps_before": [{"step": r["step"], "loss": r["loss"]} for r in before],
    }
    if candidates:  # else nothing to kill: the checks of the node loss fail on the missing kill
        job["kill"].update({"node_id": candidates[0], "time": time.time()})
        job["kill"]["pids"] = kill_node(candidates[0])
    wait_job(client, job, logs)
    job["train_workers"] = actors(job["job_id"], "RayTrainWorker")
    job["policy_server"] = actors(job["job_id"], "PolicyServer")
    job["train_controller"] = actors(job["job_id"], "TrainController")
    job["steps_after"] = [{"step": r["step"], "loss": r["loss"]} for r in step_records(run_dir)]
    job["events"] = read_jsonl(run_dir / "events.jsonl")
    job["rank0"] = [
        {"step": r["step"], "fresh": r["fresh"]}
        for r in read_jsonl(run_dir / "ranks" / "rank0.jsonl")
    ]
    summary = run_dir / "summary.json"
    job["summary"] = json.loads(summary.read_text()) if summary.is_file() else None
    return job


def prepare_phase(client, logs: Path) -> dict[str, Any]:
    """`jobs/prepare_corpus.py` submitted as a job, into a directory of its own on the shared storage:
    it writes the same shards the proxy job's driver prepared under ACODM_HOME."""
    out = SHARED / "prepared-by-job"
    job = submit(client, "prepare", entrypoint("jobs/prepare_corpus.py", [], "--out", str(out)))
    wait_job(client, job, logs)
    job["tokenizer_actors"] = actors(job["job_id"], "Encoder", exact=False)
    job["out"] = str(out)
    job["prepared_under_home"] = sorted(
        str(p) for p in (ACODM_HOME / "prepared").glob("*") if p.is_dir()
    )
    return job


def scale_down_phase(watch: NodeWatch, idle_timeout_s: float) -> dict[str, Any]:
    start = time.time()
    wait_until(
        lambda: not watch.alive(),
        "every idle worker node to be removed",
        idle_timeout_s + SCALE_DOWN_SLACK_S,
    )
    return {"start": start, "all_removed": time.time()}


def fallbacks() -> dict[str, bool]:
    """Whether anything wrote to the nodes' local defaults instead of the shared storage."""
    home = Path.home()
    return {
        "~/.cache/acodm": (home / ".cache" / "acodm").exists(),
        "~/acodm-runs": (home / "acodm-runs").exists(),
    }


def run(out: Path) -> None:
    import ray
    from ray.job_submission import JobSubmissionClient

    obs: dict[str, Any] = {"phases": {}}

    def save() -> None:
        out.write_text(json.dumps(obs, indent=1, default=str))

    t0 = time.time()
    aws = launcher()
    node_types = scaled_node_types(aws, MAX_CPUS_PER_NODE, MAX_NODES_PER_TYPE)
    check_jobs_fit(node_types)
    cluster = FakeAutoscalingCluster(
        head_resources(aws), node_types, idle_timeout_minutes=IDLE_TIMEOUT_MINUTES
    )
    obs["cluster"] = {
        "head_resources": head_resources(aws),
        "node_types": node_types,
        "idle_timeout_s": IDLE_TIMEOUT_MINUTES * 60,
        "heartbeat_timeout_s": HEARTBEAT_TIMEOUT_S,
        "checkpoint_every": CHECKPOINT_EVERY,
        "target_steps": TARGET_STEPS,
        "kill_after_step": KILL_AFTER_STEP,
        "config": cluster.config,
    }
    cluster.start(
        _system_config=SYSTEM_CONFIG,
        override_env={
            "AUTOSCALER_HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_TIMEOUT_S),
            "PYTHONPATH": str(ROOT),  # the monitor imports the provider from tests/fake_cluster.py
        },
    )
    watch = NodeWatch()
    logs = SHARED / "logs"
    try:
        ray.init(address="auto", log_to_driver=False)
        obs["cluster"]["started_s"] = time.time() - t0
        watch.start()
        client = JobSubmissionClient("http://127.0.0.1:8265")
        wait_until(lambda: watch.head, "the head in ray.nodes()", 60)
        phases = obs["phases"]
        phases["proxy_cold"] = proxy_phase(client, "proxy-cold", watch, logs)
        save()
        phases["proxy_warm"] = proxy_phase(client, "proxy-warm", watch, logs)
        save()
        policy = str(OUTPUT_ROOT / "runs" / "proxy-cold" / "policy")
        phases["target"] = target_phase(client, policy, watch, logs)
        save()
        phases["prepare"] = prepare_phase(client, logs)
        save()
        phases["scale_down"] = scale_down_phase(watch, IDLE_TIMEOUT_MINUTES * 60)
    except BaseException as err:
        obs["error"] = f"{type(err).__name__}: {err}"
        obs["traceback"] = traceback.format_exc()
        raise
    finally:
        watch.stop()
        obs["nodes"] = watch.snapshot()
        obs["fallbacks"] = fallbacks()
        obs["total_s"] = time.time() - t0
        save()
        ray.shutdown()
        cluster.shutdown()


# ------------------------------------------------------------------------------- what it measured


def first_env_step_s(job: dict[str, Any]) -> float | None:
    """Seconds from submitting a proxy job to its first completed env step."""
    times = [
        r["first_env_step_time"]
        for r in job.get("iterations") or []
        if r.get("first_env_step_time")
    ]
    return min(times) - job["submitted"] if times else None


def joined_between(obs: dict[str, Any], start: float, end: float) -> list[str]:
    return sorted(n for n, t in obs["nodes"]["joined"].items() if start <= t <= end)


def checkpoint_before(step: int, every: int) -> int:
    """The newest checkpoint step at or before `step`."""
    return step - step % every


def measurements(obs: dict[str, Any]) -> dict[str, Any]:
    """The numbers a run produced (seconds are wall clock), for the test's messages and BENCHMARKS.md."""
    phases, nodes = obs["phases"], obs["nodes"]
    joined, left = nodes["joined"], nodes["left"]
    out: dict[str, Any] = {
        "cluster_start_s": obs["cluster"].get("started_s"),
        "total_s": obs.get("total_s"),
        "nodes_added": len(joined),
        "nodes_removed": len(left),
    }
    for name in ("proxy_cold", "proxy_warm"):
        job = phases.get(name)
        if job and "end_time" in job:
            added = joined_between(obs, job["submitted"], job["end_time"])
            out[name] = {
                "submit_to_first_env_step_s": first_env_step_s(job),
                "job_s": job["end_time"] - job["submitted"],
                "nodes_added": len(added),
                "submit_to_nodes_joined_s": [round(joined[n] - job["submitted"], 1) for n in added],
            }
    job = phases.get("target")
    if job and (job.get("kill") or {}).get("time") and "end_time" in job:
        kill, every = job["kill"], obs["cluster"]["checkpoint_every"]
        start = next((e["time"] for e in job["events"] if e["event"] == "start"), None)
        resume = next((e for e in job["events"] if e["event"] == "resume"), None)
        last = kill["steps_before"][-1]["step"] if kill["steps_before"] else 0
        after = joined_between(obs, kill["time"], job["end_time"])
        out["target"] = {
            "submit_to_first_step_s": start - job["submitted"] if start else None,
            "job_s": job["end_time"] - job["submitted"],
            "nodes_added_before_kill": len(joined_between(obs, job["submitted"], kill["time"])),
        }
        out["node_loss"] = {
            "killed_after_step": last,
            "checkpoint_every": every,
            "resumed_from_step": resume["step"] if resume else None,
            "steps_recomputed": last - resume["step"] if resume else None,
            "steps_lost_beyond_last_checkpoint": checkpoint_before(last, every) - resume["step"]
            if resume
            else None,
            "node_dead_after_s": left[kill["node_id"]] - kill["time"]
            if kill["node_id"] in left
            else None,
            "replacement_joined_after_s": joined[after[0]] - kill["time"] if after else None,
            "resumed_after_s": resume["time"] - kill["time"] if resume else None,
        }
    down = phases.get("scale_down")
    if down and job and "end_time" in job:
        idle = [
            n
            for n in joined
            if joined[n] <= job["end_time"] and left.get(n, float("inf")) > job["end_time"]
        ]
        out["scale_down"] = {
            "idle_timeout_s": obs["cluster"]["idle_timeout_s"],
            "nodes_removed": len(idle),
            "removed_after_job_end_s": sorted(
                round(left[n] - job["end_time"], 1) for n in idle if n in left
            ),
        }
    return out


# ------------------------------------------------------------------------- from outside: isolated


def run_isolated_scenario(private_tmp: Path, timeout: float = 1500.0):
    """Run this scenario in its own namespaces (`tests/isolation.py`) with `private_tmp` as its /tmp;
    returns (observations, the finished process). The shell's environment: the project's Python
    first on PATH (the head's, so the jobs' `python`), no Ray address, no auth token, one thread."""
    import subprocess

    from tests.isolation import run_isolated

    bin_dir = Path(sys.executable).parent
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_ADDRESS", "PYTHONPATH", "ACODM_HOME", "ACODM_OUTPUT_ROOT", "VIRTUAL_ENV")
    }
    env.update(
        {
            "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
            "HOME": "/tmp/home",
            "RAY_AUTH_MODE": "disabled",
            "OMP_NUM_THREADS": "1",
            "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    inner = f"/tmp/shared/{OBSERVATIONS}"
    script = f"mkdir -p /tmp/home {SHARED}\n{shlex.quote(sys.executable)} tests/autoscaling_scenario.py {inner}"
    try:
        proc = run_isolated(script, private_tmp, env, ROOT, timeout)
    except subprocess.TimeoutExpired as err:
        proc = subprocess.CompletedProcess(err.cmd, -9, err.stdout or "", err.stderr or "")
    path = private_tmp / "shared" / OBSERVATIONS
    obs = json.loads(path.read_text()) if path.is_file() else {}
    return obs, proc


if __name__ == "__main__":
    run(Path(sys.argv[1]))

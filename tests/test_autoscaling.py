"""Scaling with cluster autoscaling, on one machine: a fake multi-node autoscaling cluster made from
deploy/aws.yaml's node types runs both stages, loses a node, and scales back down.

The fast tests check the shapes: the fake node types keep every resource name of aws.yaml, and the
scenario's jobs fit both aws.yaml's worker groups and their scaled-down copies (they fail in seconds
when aws.yaml's worker types lose a resource our jobs ask for). The slow tests share one run of
`tests/autoscaling_scenario.py` (see its docstring for the phases), in its own namespaces
(`tests/isolation.py`), and check what it recorded: where every env runner, Train worker and the
policy server ran, which nodes the autoscaler added and removed and when, and the target run's
steps around the node loss. `benchmarks/bench_autoscaling.py` reports the same run's timings.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

from acodm_ray.cluster import fits, proxy_bundles, target_bundles, worker_node_types
from tests import autoscaling_scenario as scenario
from tests.fake_cluster import scaled_node_types, scaled_resources
from tests.isolation import can_unshare

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "jobs"))
from _common import forwarded_env_vars  # noqa: E402

SCALE_DOWN_SLACK_S = 45.0  # past the idle timeout: autoscaler updates (1 s here, slower on 2 busy cores), termination


# --------------------------------------------------------------------------- shapes, in seconds


def test_fake_node_types_keep_every_resource_of_aws_yaml():
    aws = scenario.launcher()
    real = worker_node_types(aws)
    fake = scaled_node_types(aws, scenario.MAX_CPUS_PER_NODE, scenario.MAX_NODES_PER_TYPE)
    assert set(fake) == set(real) and len(real) >= 2
    for name, spec in real.items():
        resources, scaled = spec["resources"], fake[name]["resources"]
        assert set(scaled) == set(resources), name  # the same names, custom resources included
        assert scaled["CPU"] == min(resources["CPU"], scenario.MAX_CPUS_PER_NODE)
        assert {k: v for k, v in scaled.items() if k != "CPU"} == {
            k: v for k, v in resources.items() if k != "CPU"
        }
        assert fake[name]["min_workers"] == spec["min_workers"] == 0
    assert fake["cpu_worker"]["max_workers"] == scenario.MAX_NODES_PER_TYPE
    assert fake["gpu_worker"]["max_workers"] == 0  # no GPU on this machine; see scaled_node_types
    # a custom resource survives the scaling untouched, and a CPU-less head stays CPU-less
    assert scaled_resources({"CPU": 16, "acodm_cpu": 16}, 1.0) == {"CPU": 1.0, "acodm_cpu": 16}
    assert scaled_resources({"CPU": 0}, 1.0) == {"CPU": 0.0}


def test_scenario_jobs_fit_aws_yaml_and_the_fake_node_types():
    aws = scenario.launcher()
    proxy, target = scenario.job_configs()
    fake = scaled_node_types(aws, scenario.MAX_CPUS_PER_NODE, scenario.MAX_NODES_PER_TYPE)
    for types in (worker_node_types(aws), fake):
        assert fits(proxy_bundles(proxy), types) and fits(target_bundles(target), types)
    assert len(proxy_bundles(proxy)) == 2 and len(target_bundles(target)) == 2
    scenario.check_jobs_fit(fake)  # what the scenario checks before it starts a cluster


@pytest.mark.parametrize("damage", ["no CPU", "CPU renamed"])
def test_aws_worker_types_that_lose_cpu_fit_no_job(damage):
    aws = copy.deepcopy(scenario.launcher())
    for name in ("cpu_worker", "gpu_worker"):
        res = aws["available_node_types"][name]["resources"]
        res.pop("CPU")
        if damage == "CPU renamed":
            res["cpu"] = 16
    fake = scaled_node_types(
        aws, scenario.MAX_CPUS_PER_NODE, scenario.MAX_NODES_PER_TYPE, max_gpu_nodes=2
    )
    proxy, target = scenario.job_configs()
    assert not fits(proxy_bundles(proxy), worker_node_types(aws))
    assert not fits(target_bundles(target), fake)
    with pytest.raises(RuntimeError, match="cannot hold it"):
        scenario.check_jobs_fit(fake)


def test_custom_resources_of_a_job_need_a_node_type_that_has_them():
    types = {
        "cpu_worker": {"resources": {"CPU": 16, "acodm_cpu": 16}, "max_workers": 2},
        "other": {"resources": {"CPU": 16}, "max_workers": 8},
    }
    assert fits([{"CPU": 8.0, "GPU": 0.0, "acodm_cpu": 8.0}] * 4, types)
    assert not fits(
        [{"CPU": 8.0, "GPU": 0.0, "acodm_cpu": 8.0}] * 5, types
    )  # 2 nodes of the type at most
    assert not fits([{"CPU": 1.0, "GPU": 0.0, "other_pool": 1.0}], types)


def test_the_drivers_cache_home_goes_to_every_worker_of_the_job():
    assert forwarded_env_vars({"ACODM_HOME": "/shared/acodm", "HOME": "/root"}) == {
        "ACODM_HOME": "/shared/acodm"
    }
    assert forwarded_env_vars({"HOME": "/root"}) == {}
    # set by the submitted job's runtime env already: it reaches every worker, and repeating it would
    # make ray.init refuse the merge
    job = json.dumps({"runtime_env": {"env_vars": {"ACODM_HOME": "/shared/acodm"}}})
    assert (
        forwarded_env_vars({"ACODM_HOME": "/shared/acodm", "RAY_JOB_CONFIG_JSON_ENV_VAR": job})
        == {}
    )
    other = json.dumps({"runtime_env": {"working_dir": "gcs://pkg.zip"}})
    assert forwarded_env_vars({"ACODM_HOME": "/x", "RAY_JOB_CONFIG_JSON_ENV_VAR": other}) == {
        "ACODM_HOME": "/x"
    }


# ------------------------------------------------------------------------------ the fake cluster


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One scenario run: (observations, measurements). Fails here if the scenario itself failed."""
    private_tmp = tmp_path_factory.mktemp("autoscaling") / "tmp"
    obs, proc = scenario.run_isolated_scenario(private_tmp)
    numbers = scenario.measurements(obs) if obs.get("phases") else {}
    print("autoscaling scenario:", json.dumps(numbers, indent=1))
    if proc.returncode != 0 or obs.get("error"):
        logs = "\n".join(
            f"--- {p.name}\n{p.read_text()[-2500:]}"
            for p in sorted((private_tmp / "shared" / "logs").glob("*.log"))
        )
        pytest.fail(
            f"the scenario failed (exit {proc.returncode}): {obs.get('error')}\n{obs.get('traceback', '')}\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}\n{logs}"
        )
    return obs, numbers, private_tmp


needs_namespaces = pytest.mark.skipif(
    not can_unshare(),
    reason="needs `unshare` (root) to isolate the fake cluster's `ray stop --force`",
)


def head_and_workers(obs) -> tuple[str, set[str]]:
    return obs["nodes"]["head"], set(obs["nodes"]["joined"])


@needs_namespaces
@pytest.mark.slow
def test_cold_proxy_job_scales_up_and_its_env_runners_run_on_the_new_nodes(run):
    obs, numbers, private_tmp = run
    head, workers = head_and_workers(obs)
    job = obs["phases"]["proxy_cold"]
    assert job["status"] == "SUCCEEDED", job["message"]
    assert job["alive_at_submit"] == []  # the head alone: every node of this job is added for it
    assert job["driver_node_id"] == head
    runners = {a["node_id"] for a in job["env_runners"]}
    assert len(job["env_runners"]) == 2 and len(runners) == 2, job[
        "env_runners"
    ]  # one per 1-CPU node
    added = set(scenario.joined_between(obs, job["submitted"], job["end_time"]))
    assert runners <= added and head not in runners
    assert {obs["nodes"]["types"][n] for n in runners} == {"cpu_worker"}
    assert [r["iteration"] for r in job["iterations"]] == [1] and job["summary"]["iterations"] == 1
    run_dir = private_tmp / Path(job["run_dir"]).relative_to("/tmp")
    assert (run_dir / "policy" / "actor.safetensors").is_file() and (
        run_dir / "policy" / "policy.json"
    ).is_file()
    assert numbers["proxy_cold"]["submit_to_first_env_step_s"] > 0


@needs_namespaces
@pytest.mark.slow
def test_warm_proxy_job_runs_on_the_nodes_already_there(run):
    obs, numbers, _ = run
    cold, warm = obs["phases"]["proxy_cold"], obs["phases"]["proxy_warm"]
    assert warm["status"] == "SUCCEEDED", warm["message"]
    runners = {a["node_id"] for a in warm["env_runners"]}
    assert len(runners) == 2 and runners <= set(warm["alive_at_submit"])
    assert runners == {a["node_id"] for a in cold["env_runners"]}
    assert scenario.joined_between(obs, warm["submitted"], warm["end_time"]) == []
    assert numbers["proxy_warm"]["nodes_added"] == 0 and numbers["proxy_cold"]["nodes_added"] == 2


@needs_namespaces
@pytest.mark.slow
def test_train_workers_spread_over_worker_nodes_and_the_policy_server_answers_from_the_head(run):
    obs, _, _ = run
    head, workers = head_and_workers(obs)
    job = obs["phases"]["target"]
    assert job["status"] == "SUCCEEDED", job["message"]
    first = {a["node_id"] for a in job["kill"]["workers_before"]}
    assert len(job["kill"]["workers_before"]) == 2 and len(first) == 2 and first <= workers
    assert {obs["nodes"]["types"][n] for n in first} == {"cpu_worker"}
    # the server: on the driver's node, the head (never scaled down), answering every decision
    (server,) = job["policy_server"]
    assert job["driver_node_id"] == head and server["node_id"] == head
    summary = job["summary"]
    assert (
        summary["mixer"] == "acodm"
        and summary["server_failures"] == 0
        and summary["server_ok_at_end"]
    )
    assert summary["server"]["num_weights_calls"] >= scenario.TARGET_STEPS
    assert [r["step"] for r in job["rank0"]] == list(range(1, scenario.TARGET_STEPS + 1))
    assert all(r["fresh"] for r in job["rank0"])  # every step's weights came from the server


@needs_namespaces
@pytest.mark.slow
def test_lost_node_resumes_from_its_checkpoint_with_the_exact_steps(run):
    obs, numbers, _ = run
    job, every = obs["phases"]["target"], scenario.CHECKPOINT_EVERY
    kill = job["kill"]
    assert kill["node_id"], (
        f"no worker node hosted a Train worker to kill: {kill['workers_before']}"
    )
    before = {r["step"]: r["loss"] for r in kill["steps_before"]}
    last = max(before)
    assert scenario.KILL_AFTER_STEP <= last < scenario.TARGET_STEPS  # killed mid-run
    events = [(e["event"], e["step"]) for e in job["events"] if e["event"] in ("start", "resume")]
    assert len(events) == 2 and events[0] == ("start", 0) and events[1][0] == "resume", events
    resumed = events[1][1]
    # from the newest committed checkpoint: the one before the last logged step, or (when the node died
    # while step `last`'s checkpoint was being committed) the one before that
    assert resumed % every == 0 and last - every <= resumed <= last, (resumed, last)
    lost = numbers["node_loss"]["steps_lost_beyond_last_checkpoint"]
    assert lost == 0 or (lost == every and last % every == 0), numbers["node_loss"]
    after = job["steps_after"]
    assert [r["step"] for r in after] == list(
        range(1, scenario.TARGET_STEPS + 1)
    )  # none lost, none repeated
    for (
        r
    ) in after:  # the steps computed before the loss, and recomputed after it, are the same steps
        if r["step"] in before:
            assert r["loss"] == before[r["step"]], r["step"]
    assert job["summary"]["steps"] == scenario.TARGET_STEPS


@needs_namespaces
@pytest.mark.slow
def test_the_autoscaler_replaces_the_lost_node(run):
    obs, _, _ = run
    head, workers = head_and_workers(obs)
    job = obs["phases"]["target"]
    kill, victim = job["kill"], job["kill"]["node_id"]
    assert victim, f"no worker node hosted a Train worker to kill: {kill['workers_before']}"
    joined, left = obs["nodes"]["joined"], obs["nodes"]["left"]
    assert victim in workers and victim != head and kill["pids"]
    assert kill["time"] <= left[victim]  # the cluster saw it die
    replacements = set(scenario.joined_between(obs, kill["time"], job["end_time"]))
    assert replacements, "no node was added after the kill"
    before = {a["actor_id"] for a in kill["workers_before"]}
    resumed = [a for a in job["train_workers"] if a["actor_id"] not in before]
    assert len(resumed) == 2, job["train_workers"]
    nodes = {a["node_id"] for a in resumed}
    assert victim not in nodes and nodes & replacements and len(nodes) == 2 and head not in nodes
    assert all(joined[n] <= job["end_time"] for n in nodes)


@needs_namespaces
@pytest.mark.slow
def test_idle_worker_nodes_are_removed_within_the_idle_timeout(run):
    obs, numbers, _ = run
    job, down = obs["phases"]["target"], obs["phases"]["scale_down"]
    joined, left = obs["nodes"]["joined"], obs["nodes"]["left"]
    assert set(left) == set(joined)  # back to the head alone
    idle_timeout = obs["cluster"]["idle_timeout_s"]
    at_end = [n for n in joined if joined[n] <= job["end_time"] < left[n]]
    assert len(at_end) == 2, numbers
    for node in at_end:
        assert left[node] - job["end_time"] <= idle_timeout + SCALE_DOWN_SLACK_S, (
            node,
            numbers["scale_down"],
        )
    assert down["all_removed"] >= max(left[n] for n in at_end)


@needs_namespaces
@pytest.mark.slow
def test_every_process_used_the_shared_storage(run):
    """The drivers got ACODM_HOME and ACODM_OUTPUT_ROOT (the shared volume); nothing on any node fell
    back to its local defaults (~/.cache/acodm, ~/acodm-runs), and the caches are on the volume."""
    obs, _, private_tmp = run
    assert obs["fallbacks"] == {"~/.cache/acodm": False, "~/acodm-runs": False}
    home = private_tmp / scenario.ACODM_HOME.relative_to("/tmp")
    assert any(home.rglob("*")), f"nothing was cached under {scenario.ACODM_HOME}"
    ray_train = (
        private_tmp / Path(obs["phases"]["target"]["run_dir"]).relative_to("/tmp") / "ray_train"
    )
    assert any(ray_train.rglob("checkpoint_*")), (
        "the Train checkpoints are not on the shared volume"
    )


@needs_namespaces
@pytest.mark.slow
def test_the_corpus_is_prepared_once_on_the_worker_nodes_and_read_there(run):
    """The cold proxy job's driver (on the CPU-less head) prepares the corpus before anything else:
    its tokenizer actors run on worker nodes; every env runner and Train worker then reads that one
    prepared directory on the shared storage (none prepares its own). The same corpus prepared by
    `jobs/prepare_corpus.py` as a job of its own comes out byte for byte the same."""
    from acodm_ray.data.manifest import read_manifest

    obs, _, private_tmp = run
    head, workers = head_and_workers(obs)
    cold, prep = obs["phases"]["proxy_cold"], obs["phases"]["prepare"]
    assert cold["tokenizer_actors"] and {a["node_id"] for a in cold["tokenizer_actors"]} <= workers
    assert prep["status"] == "SUCCEEDED", prep["message"]
    assert prep["tokenizer_actors"] and head not in {a["node_id"] for a in prep["tokenizer_actors"]}
    (home_dir,) = prep["prepared_under_home"]  # one corpus for every job, stage and worker

    def local(path: str) -> Path:
        return private_tmp / Path(path).relative_to("/tmp")

    by_driver, by_job = read_manifest(local(home_dir)), read_manifest(local(prep["out"]))
    assert [(s.file, s.sha256) for s in by_job.shards] == [
        (s.file, s.sha256) for s in by_driver.shards
    ]

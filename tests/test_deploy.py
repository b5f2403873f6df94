"""deploy/: cluster launcher configs (AWS, GCP), KubeRay manifests and the image they run.

Checks what can be checked without a cloud or a Kubernetes cluster: the launcher YAMLs pass Ray's own
schema and config preparation; worker groups scale from zero; token auth is on everywhere with the
token coming from a secret (no literal token anywhere under deploy/); the dashboard is never exposed
publicly; the RayJobs run scripts and configs that exist, with overrides the config accepts, on
resources the clusters can provide.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import ray
import ray.autoscaler
import yaml

from acodm_ray.cluster import fits, job_bundles, worker_node_types
from acodm_ray.config import load_config

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
LAUNCHERS = ["aws.yaml", "gcp.yaml"]
RAYJOBS = ["kuberay/rayjob-proxy-rl.yaml", "kuberay/rayjob-target-pretrain.yaml"]
KUBERAY = ["kuberay/raycluster.yaml", *RAYJOBS]
SECRET_NAME = "acodm-ray-auth"


def load(rel: str) -> Any:
    return yaml.safe_load((DEPLOY / rel).read_text())


def load_all(rel: str) -> list[Any]:
    return [d for d in yaml.safe_load_all((DEPLOY / rel).read_text()) if d]


def walk(node: Any, path: str = ""):
    """(path, key, value) for every mapping entry of a YAML tree."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield path, k, v
            yield from walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{path}[{i}]")


def commands(cfg: dict, key: str) -> list[str]:
    return [str(c) for c in cfg.get(key) or []]


# ------------------------------------------------------------------------- cluster launcher


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_config_passes_rays_schema(name):
    cfg = load(name)
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    import jsonschema  # a dependency of ray[default]: never a silent fallback

    jsonschema.validate(cfg, schema)
    # What `ray up` does with it: fill the provider's defaults, then validate again.
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(cfg)))


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_has_cpu_and_gpu_groups_scaling_from_zero(name):
    cfg = load(name)
    head = cfg["head_node_type"]
    workers = {k: v for k, v in cfg["available_node_types"].items() if k != head}
    assert len(workers) >= 2
    for node_type, spec in workers.items():
        assert spec["min_workers"] == 0, node_type
        assert 0 < spec["max_workers"] <= cfg["max_workers"], node_type
    assert any(spec["resources"].get("GPU", 0) >= 1 for spec in workers.values())
    assert any(
        spec["resources"].get("CPU", 0) >= 1 and not spec["resources"].get("GPU")
        for spec in workers.values()
    )
    assert (
        cfg["available_node_types"][head]["resources"].get("CPU") == 0
    )  # workloads go to the workers


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_runs_ray_with_token_auth_from_a_secret(name):
    cfg = load(name)
    starts = commands(cfg, "head_start_ray_commands") + commands(cfg, "worker_start_ray_commands")
    ray_starts = [c for c in starts if re.search(r"\bray start\b", c)]
    assert len(ray_starts) == 2
    for cmd in ray_starts:
        assert "export RAY_AUTH_MODE=token;" in cmd, cmd
    head = " ".join(commands(cfg, "head_start_ray_commands"))
    secret_call = {"aws.yaml": "secretsmanager", "gcp.yaml": "gcloud secrets versions access"}[name]
    assert secret_call in head and "umask 077" in head and "~/.ray/auth_token" in head
    # the head fetches the token before `ray start --head`; workers get the head's copy
    fetch = next(
        i for i, c in enumerate(commands(cfg, "head_start_ray_commands")) if secret_call in c
    )
    start = next(
        i for i, c in enumerate(commands(cfg, "head_start_ray_commands")) if "ray start --head" in c
    )
    assert fetch < start
    assert "~/.ray/auth_token" in cfg["cluster_synced_files"]
    assert any(
        "auth_token" in c and "exit 1" in c for c in commands(cfg, "worker_start_ray_commands")
    )
    assert any(
        "RAY_AUTH_MODE=token" in c and ".bashrc" in c for c in commands(cfg, "setup_commands")
    )


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_keeps_the_dashboard_on_loopback(name):
    cfg = load(name)
    head_start = next(
        c for c in commands(cfg, "head_start_ray_commands") if "ray start --head" in c
    )
    assert "--dashboard-host=127.0.0.1" in head_start
    every_command = json.dumps({k: v for k, v in cfg.items() if k.endswith("commands")})
    assert "0.0.0.0" not in every_command and "--ray-client-server-port" not in every_command
    rules = cfg["provider"].get("security_group", {}).get("IpPermissions", [])
    for rule in rules:  # nothing beyond SSH may be opened to the world
        public = any(r.get("CidrIp") == "0.0.0.0/0" for r in rule.get("IpRanges", []))
        assert not public or (rule.get("FromPort"), rule.get("ToPort")) == (22, 22), rule
    text = json.dumps(cfg)
    assert "firewall" not in text.lower()


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_installs_the_pinned_torch_first_from_the_synced_checkout(name):
    cfg = load(name)
    assert cfg["file_mounts"]["~/acodm-ray"] == "."
    assert {".gitignore", ".rayignore"} <= set(cfg["rsync_filter"])
    assert {".venv", "runs", ".git"} <= set(cfg["rsync_exclude"])
    setup = commands(cfg, "setup_commands")
    torch_i = next(i for i, c in enumerate(setup) if "-c constraints.txt torch==2.13.0" in c)
    project_i = next(i for i, c in enumerate(setup) if "-c constraints.txt -e ." in c)
    assert torch_i < project_i
    assert all("cd ~/acodm-ray" in setup[i] for i in (torch_i, project_i))


# --------------------------------------------------------------------------------- secrets

HEX_TOKEN = re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{32,}(?![0-9A-Za-z])")
B64_TOKEN = re.compile(r"(?<![A-Za-z0-9+_-])[A-Za-z0-9+_-]{32,}={0,2}")
ASSIGNED = re.compile(
    r"""(?i)\b(?:ray_auth_token|auth_token|token)\b["']?[ \t]*[:=][ \t]*["']?(?![$({<"'\s])([^\s"'#,}]{6,})"""
)


def token_literals(text: str) -> list[str]:
    """Strings in `text` that look like a token or a literal assigned to a token variable."""
    found = HEX_TOKEN.findall(text)
    found += [
        m
        for m in B64_TOKEN.findall(text)
        if re.search(r"[a-z]", m) and re.search(r"[A-Z]", m) and re.search(r"[0-9]", m)
    ]
    found += ASSIGNED.findall(text)
    return found


def test_token_detector_catches_planted_tokens():
    from ray._private.authentication.authentication_token_generator import (
        generate_new_authentication_token,
    )

    token = generate_new_authentication_token()
    assert token_literals(f"echo {token} > ~/.ray/auth_token")
    assert token_literals("export RAY_AUTH_TOKEN=hunter2hunter2")
    assert token_literals("stringData:\n  auth_token: 'raycluster_secret'")
    assert token_literals("key: Zm9vYmFyQmF6UXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWo=")
    assert not token_literals('export RAY_AUTH_TOKEN="$(cat ~/.ray/auth_token)"')
    assert not token_literals("secretKeyRef:\n  name: acodm-ray-auth\n  key: auth_token")


def test_no_literal_token_anywhere_in_deploy():
    files = [p for p in DEPLOY.rglob("*") if p.is_file()]
    assert len(files) >= 8
    for path in files:
        assert token_literals(path.read_text()) == [], path


def test_kubernetes_token_only_from_a_secret_and_no_secret_objects():
    for rel in KUBERAY + ["kuberay/storage.yaml"]:
        for doc in load_all(rel):
            assert doc["kind"] != "Secret", rel
            for path, key, value in walk(doc):
                if key == "env":
                    for var in value:
                        if var["name"] == "RAY_AUTH_TOKEN":
                            assert "value" not in var, (rel, path)
                            assert var["valueFrom"]["secretKeyRef"] == {
                                "name": SECRET_NAME,
                                "key": "auth_token",
                            }


# --------------------------------------------------------------------------------- KubeRay


def ray_containers(spec: dict) -> list[dict]:
    """The Ray containers of a RayCluster spec: head and every worker group."""
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    return [g["template"]["spec"]["containers"][0] for g in groups]


def env_of(container: dict) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.mark.parametrize("rel", KUBERAY)
def test_kuberay_manifest_shape(rel):
    docs = load_all(rel)
    assert len(docs) == 1
    doc = docs[0]
    assert doc["apiVersion"] == "ray.io/v1"
    assert doc["kind"] == ("RayCluster" if "raycluster" in rel else "RayJob")
    assert doc["metadata"]["name"]
    spec = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]
    installed = ".".join(ray.__version__.split(".")[:2])
    assert spec["rayVersion"].startswith(installed + ".")
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["authOptions"] == {"mode": "token", "secretName": SECRET_NAME}
    head = spec["headGroupSpec"]
    assert (
        isinstance(head["rayStartParams"], dict) and head["rayStartParams"].get("num-cpus") == "0"
    )
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    for g in groups.values():
        assert g["minReplicas"] == 0 and g["replicas"] == 0 and g["maxReplicas"] >= 1
        assert isinstance(g["rayStartParams"], dict)
    gpu = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert gpu["nvidia.com/gpu"] >= 1
    for c in ray_containers(spec):
        env = env_of(c)
        assert env["RAY_AUTH_MODE"] == "token"
        assert env["RAY_AUTH_TOKEN"] == {"secretKeyRef": {"name": SECRET_NAME, "key": "auth_token"}}
        assert env["ACODM_HOME"].startswith("/mnt/acodm/") and env["ACODM_OUTPUT_ROOT"].startswith(
            "/mnt/acodm/"
        )
        assert "hostPort" not in json.dumps(c)
    assert "hostNetwork" not in json.dumps(doc) and "LoadBalancer" not in json.dumps(doc)
    assert "NodePort" not in json.dumps(doc) and "ingress" not in json.dumps(doc).lower()


def test_rayjobs_run_the_same_cluster_as_the_raycluster():
    cluster = load("kuberay/raycluster.yaml")["spec"]
    for rel in RAYJOBS:
        job = load(rel)["spec"]
        assert job["rayClusterSpec"] == cluster, rel
        assert job["shutdownAfterJobFinishes"] is True and job["submissionMode"] == "K8sJobMode"
        submitter = job["submitterPodTemplate"]["spec"]["containers"][0]
        assert env_of(submitter)["RAY_AUTH_MODE"] == "token"
        assert env_of(submitter)["RAY_AUTH_TOKEN"] == {
            "secretKeyRef": {"name": SECRET_NAME, "key": "auth_token"}
        }


def test_shared_volume_is_the_pvc_of_storage_yaml():
    (pvc,) = load_all("kuberay/storage.yaml")
    assert pvc["kind"] == "PersistentVolumeClaim" and pvc["spec"]["accessModes"] == [
        "ReadWriteMany"
    ]
    spec = load("kuberay/raycluster.yaml")["spec"]
    for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
        pod = group["template"]["spec"]
        assert pod["volumes"] == [
            {"name": "shared", "persistentVolumeClaim": {"claimName": pvc["metadata"]["name"]}}
        ]
        assert pod["containers"][0]["volumeMounts"] == [
            {"name": "shared", "mountPath": "/mnt/acodm"}
        ]


def parse_entrypoint(entry: str) -> tuple[Path, str, list[str], dict[str, str]]:
    """(script, config, --set overrides, other --flag values) of `python jobs/x.py ...`."""
    argv = shlex.split(entry)
    assert argv[0] == "python" and argv[1].startswith("jobs/"), entry
    script, rest = ROOT / argv[1], argv[2:]
    config, overrides, flags = None, [], {}
    while rest:
        flag, value, rest = rest[0], rest[1], rest[2:]
        assert flag.startswith("--"), entry
        if flag == "--config":
            config = value
        elif flag == "--set":
            overrides.append(value)
        else:
            flags[flag] = value
    return script, config, overrides, flags


def job_entry(rel: str):
    job = load(rel)["spec"]
    script, config, overrides, flags = parse_entrypoint(job["entrypoint"])
    return job, script, config, overrides, flags


@pytest.mark.parametrize("rel", RAYJOBS)
def test_rayjob_entrypoint_names_real_scripts_configs_and_overrides(rel):
    job, script, config, overrides, flags = job_entry(rel)
    assert script.is_file(), script
    assert config and (ROOT / config).is_file(), config
    load_config(ROOT / config, overrides)  # unknown keys or bad values would raise
    source = script.read_text() + (ROOT / "acodm_ray" / "cli.py").read_text()
    for flag in flags:
        assert f'"{flag}"' in source, f"{script.name} has no {flag} option"
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    workdir = re.search(r"^WORKDIR (\S+)", dockerfile, re.M).group(1)
    assert yaml.safe_load(job["runtimeEnvYAML"]) == {"working_dir": workdir}


def test_target_job_reads_the_policy_the_proxy_job_writes():
    _, _, proxy_config, proxy_overrides, proxy_flags = job_entry("kuberay/rayjob-proxy-rl.yaml")
    job, _, _, _, target_flags = job_entry("kuberay/rayjob-target-pretrain.yaml")
    cfg = load_config(ROOT / proxy_config, proxy_overrides)
    algo = proxy_flags.get("--algo", cfg.rl.algo)
    run_name = proxy_flags.get("--name", f"{cfg.name}-proxy-{algo}")  # jobs/proxy_rl.py's default
    output_root = env_of(ray_containers(job["rayClusterSpec"])[0])["ACODM_OUTPUT_ROOT"]
    assert target_flags["--policy"] == f"{output_root}/{run_name}/policy"


# ---------------------------------------------- resource requests fit the groups that scale


def node_types() -> dict[str, dict[str, dict[str, Any]]]:
    """The worker node types ({name: {resources, max_workers}}) of every deploy target."""
    types = {name: worker_node_types(load(name)) for name in LAUNCHERS}
    spec = load("kuberay/raycluster.yaml")["spec"]
    types["kuberay"] = {}
    for g in spec["workerGroupSpecs"]:
        limits = g["template"]["spec"]["containers"][0]["resources"]["limits"]
        types["kuberay"][g["groupName"]] = {
            "resources": {
                "CPU": float(limits["cpu"]),
                "GPU": float(limits.get("nvidia.com/gpu", 0)),
            },
            "max_workers": g["maxReplicas"],
        }
    return types


def preset_requests() -> dict[str, list[dict[str, float]]]:
    out = {p.name: job_bundles(load_config(p)) for p in sorted((ROOT / "configs").glob("*.yaml"))}
    for rel in RAYJOBS:
        _, _, config, overrides, _ = job_entry(rel)
        out[rel] = job_bundles(load_config(ROOT / config, overrides))
    return out


@pytest.mark.parametrize("target", LAUNCHERS + ["kuberay"])
def test_every_preset_and_job_fits_the_worker_groups(target):
    types = node_types()[target]
    for name, requests in preset_requests().items():
        assert fits(requests, types), f"{name} asks for {requests}, more than {target} can scale to"
    assert not fits([{"CPU": 1.0, "GPU": 99.0}], types)  # the check can fail


def test_dockerfile_installs_the_pinned_stack():
    text = (DEPLOY / "Dockerfile").read_text()
    base = re.search(r"^ARG BASE_IMAGE=rayproject/ray:(\S+)", text, re.M).group(1)
    assert base.startswith(ray.__version__ + "-py311")
    assert text.index("-c constraints.txt") < text.index("torch==2.13.0") < text.index("-e .")
    for src in re.findall(r"^COPY --chown=\S+ (\S+) \./", text, re.M):
        assert (ROOT / src).exists(), src

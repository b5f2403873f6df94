"""The README's command blocks, run as written, so the docs cannot drift from what works.

Each test takes a fenced ```bash block from README.md (found by its section heading) and runs its
lines with bash from the repository root. What differs from a user's shell, and why:
  - outputs go under a temp dir (`ACODM_OUTPUT_ROOT`), never into the checkout;
  - the demo and the submitted job train a tiny config instead of theirs (`configs/demo-decoys.yaml`,
    `configs/demo.yaml`: minutes, not seconds; the demo's budget is timed apart): `make demo` takes it
    through the Makefile's own `DEMO_CONFIG` variable, the submit block by replacing the config path;
  - `make demo`'s config and the comparison smoke test turn MLflow and W&B on (`--set tracking...`
    appended to the smoke line), so the Ray jobs' tracking is tested on these same runs;
  - `make demo`'s corpus steps find a corpus manifest in a fresh `ACODM_HOME`, the bundled one's and
    the derived one's (the tiny config reads neither; the build is tested in test_corpus_build.py,
    the derivation in test_derived_corpus.py); `make test` is this suite and the 20-minute
    comparison is the demo's, so those two lines are not run;
  - the submit block runs in its own PID, network and mount namespaces (`unshare`), so its
    `ray start --head` gets Ray's default ports and its `ray stop` sees only its own processes,
    never the test session's cluster or anyone else's on the machine.
The shell's PATH never contains the project's environment: the blocks must work without it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from acodm_ray.compare import ComparisonSummary
from tests.isolation import can_unshare, run_isolated

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"

needs_venv = pytest.mark.skipif(
    not (VENV / "bin" / "python").exists(),
    reason="the README's commands use ./.venv (made by `make setup`)",
)
TINY_OVERRIDES = {
    "train": {"steps": 6},
    "rl": {"iterations": 1, "min_sample_timesteps_per_iteration": 6, "train_batch_size": 6},
}


def readme_block(heading: str) -> list[str]:
    """The command lines of the first ```bash block under the `heading` section of README.md."""
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"^#+ {re.escape(heading)}\s*$(.*?)^```bash\n(.*?)^```", text, re.S | re.M)
    assert match, f"README.md has no bash block under {heading!r}"
    lines = []
    for raw in match.group(2).splitlines():  # join `\` continuations
        if lines and lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1].rstrip() + " " + raw.strip()
        elif raw.strip():
            lines.append(raw.strip())
    return lines


def command(line: str) -> str:
    """A README line without its trailing `# comment`."""
    return re.sub(r"\s+#\s.*$", "", line).strip()


def user_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A user's shell: no virtualenv on PATH, no Ray address, outputs and caches under tmp_path."""
    venv_bins = {str(Path(sys.executable).parent), str(VENV / "bin"), str((VENV / "bin").resolve())}
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p not in venv_bins)
    env = {
        k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "VIRTUAL_ENV", "PYTHONPATH")
    }
    env.update({"PATH": path, "ACODM_OUTPUT_ROOT": str(tmp_path / "out"), "WANDB_MODE": "offline"})
    env.pop("WANDB_API_KEY", None)
    env.update(extra)
    return env


def run_bash(script: str, env: dict[str, str], timeout: float):
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


def tiny_config_file(path: Path, **sections) -> Path:
    data = yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text())
    for section, values in {**TINY_OVERRIDES, **sections}.items():
        data.setdefault(section, {}).update(values)
    data["name"] = "readme"
    path.write_text(yaml.safe_dump(data))
    return path


@needs_venv
@pytest.mark.slow
def test_quick_start_make_demo_runs_as_written(tmp_path, monkeypatch):
    lines = readme_block("Quick start")
    assert [command(line) for line in lines] == ["make demo", "make test"]
    home = tmp_path / "home"
    for corpus in ("debian-v1", "debian-v1-swamped"):  # built and derived: see the module docstring
        (home / "corpus" / corpus).mkdir(parents=True)
        (home / "corpus" / corpus / "manifest.json").write_text("{}\n")
    demo = tiny_config_file(tmp_path / "demo.yaml", tracking={"mlflow": True, "wandb": True})
    proc = run_bash(
        command(lines[0]),
        user_env(tmp_path, DEMO_CONFIG=str(demo), ACODM_HOME=str(home)),
        timeout=900,
    )
    out = proc.stdout
    run_dir = tmp_path / "out" / "runs" / "readme-proxy-acodm"
    # the closing summary: mean weights, perplexity against ODM's, where things are, what to run next
    assert "the learned policy's mean domain weights" in out
    assert re.search(
        r"final average validation perplexity is [\d.]+, (better than|worse than|equal to) ODM's",
        out,
    )
    assert f"plot of both weight trajectories: {run_dir / 'weights_policy_vs_odm.png'}" in out
    assert f"python jobs/target_pretrain.py --config {demo} --policy {run_dir / 'policy'}" in out
    assert re.search(r"iteration 1/1: [\d,]+ env steps", proc.stdout + proc.stderr)
    assert (run_dir / "policy" / "actor.safetensors").is_file()
    # the demo's config asked for MLflow and W&B: the proxy stage's run has the policy and the plot
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses file stores without it
    client = MlflowClient(tracking_uri=(run_dir / "mlruns").as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("acodm").experiment_id])
    assert run.data.params["rl.algo"] == "acodm" and "training_iteration" in run.data.metrics
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {
        "policy",
        "plots",
        "summary",
    }
    assert list((run_dir / "wandb").glob("offline-run-*"))


@needs_venv
@pytest.mark.slow
@pytest.mark.skipif(
    not can_unshare(), reason="needs `unshare` (root) to isolate `ray start` and `ray stop`"
)
def test_submit_block_runs_as_written(tmp_path):
    lines = readme_block("Submitting to a Ray cluster")
    assert lines[0].startswith("source .venv/bin/activate") and command(lines[-1]) == "ray stop"
    private_tmp = (
        tmp_path / "tmp"
    )  # mounted on /tmp inside the namespaces: Ray's session files stay there
    private_tmp.mkdir()
    fast = " ".join(f"--set {s}.{k}={v}" for s, kv in TINY_OVERRIDES.items() for k, v in kv.items())
    script = "\n".join(
        command(line).replace("--config configs/demo.yaml", f"--config configs/tiny.yaml {fast}")
        for line in lines
    )
    assert "--config configs/tiny.yaml" in script
    env = user_env(
        tmp_path, ACODM_OUTPUT_ROOT="/tmp/out", ACODM_HOME="/tmp/acodm_home", HOME="/tmp/home"
    )
    proc = run_isolated(f"mkdir -p /tmp/home\n{script}", private_tmp, env, ROOT, timeout=900)
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    assert "succeeded" in proc.stdout + proc.stderr
    run_dir = private_tmp / "out" / "runs" / "tiny-proxy-acodm"
    assert (run_dir / "policy" / "actor.safetensors").is_file()
    assert json.loads((run_dir / "summary.json").read_text())["iterations"] == 1


def mlflow_store(monkeypatch, store: Path):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses file stores without it
    client = MlflowClient(tracking_uri=store.resolve().as_uri())
    experiment = client.get_experiment_by_name("acodm")
    assert experiment is not None, f"no MLflow experiment in {store}"
    runs = {
        Path(r.data.tags["run_dir"]).name: r for r in client.search_runs([experiment.experiment_id])
    }
    return client, runs


def artifacts(client, run, path: str | None = None) -> set[str]:
    return {Path(a.path).name for a in client.list_artifacts(run.info.run_id, path)}


@needs_venv
@pytest.mark.slow
def test_compare_smoke_block_runs_as_written(readme_quick_comparison, monkeypatch):
    proc, out, _ = (
        readme_quick_comparison  # the README's line, with tracking on and more methods (conftest)
    )
    assert "compare: done" in proc.stdout
    summary = ComparisonSummary.read(out / "summary.json")
    assert not summary.failures and (out / "table.md").is_file()

    # tracking: one store for the comparison, one MLflow run per run dir (targets, proxies, itself)
    client, runs = mlflow_store(monkeypatch, out / "mlruns")
    steps = summary.target.steps
    assert {f"{m}-seed0" for m in summary.methods} | {"proxy-seed0", out.name} <= set(runs)
    for method in summary.methods:  # jobs/target_pretrain.py's run_target: every step from rank 0
        run = runs[f"{method}-seed0"]
        assert run.info.status == "FINISHED" and run.data.params["train.steps"] == str(steps)
        assert [m.step for m in client.get_metric_history(run.info.run_id, "train.loss")] == list(
            range(1, steps + 1)
        )
        assert {"model", "summary", "plots"} <= artifacts(client, run)
        assert {"weights.png", "val_ppl.png"} <= artifacts(client, run, "plots")
        assert list(Path(summary.runs[f"{method}-seed0"].run_dir, "wandb").glob("offline-run-*"))
    proxy = runs["proxy-seed0"]  # jobs/proxy_rl.py's run_proxy_rl, in a Ray task
    assert proxy.data.params["rl.algo"] == "acodm" and "training_iteration" in proxy.data.metrics
    assert {"actor.safetensors", "policy.json"} <= artifacts(client, proxy, "policy")
    comparison = runs[out.name]
    assert any(k.startswith("headline.odm.") for k in comparison.data.metrics)
    assert {"summary.json", "table.md", "val_ppl.png"} <= artifacts(client, comparison, "results")

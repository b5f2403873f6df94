"""Plans checked before anything starts (acodm_ray/runplan.py, `--dry-run` on every job): every
registered method on every shipped preset either plans or is refused with its fix, and the jobs
refuse a plan that cannot run before they start Ray, with the same check the dry run uses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from acodm_ray.compare import METHODS, load_compare_config, plan_runs
from acodm_ray.config import ConfigError
from acodm_ray.data.debian_domains import domain_specs
from acodm_ray.runplan import PlanError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "jobs"))
import _common  # noqa: E402
import compare as compare_job  # noqa: E402
import prepare_corpus as prepare_job  # noqa: E402
import target_pretrain as target_job  # noqa: E402

TINY_QUICK_CASE = "tiny.yaml", True, "uniform,acodm,acodm-reference,acodm-paper"  # issue 29's case
FORCED = {"acodm-reference", "acodm-reference-online"}  # one micro-batch per domain, K = 7
PRESETS = {  # preset, --quick: the methods refused there (K = 7 domains; K unknown on the hub)
    ("tiny.yaml", False): FORCED | {"file"},  # train.grad_accum = 6
    ("tiny.yaml", True): FORCED | {"file"},
    ("demo.yaml", False): {"file"},
    ("bench.yaml", False): {"file"},
    ("paper-pythia.yaml", False): {"file"},  # column mode: K unknown, the K checks are skipped
}
FIXES = {  # what the refusal of each method says to do
    "file": "--set mixer.weights_file=PATH",
    "acodm-reference": "fix: --set train.grad_accum=7",
    "acodm-reference-online": "fix: --set train.grad_accum=7",
}


@pytest.fixture
def bundled_home(tmp_path, monkeypatch):
    """A built bundled corpus as far as a plan reads it: its manifest and (empty) split files."""
    root = tmp_path / "home" / "corpus" / "debian-v1"
    root.mkdir(parents=True)
    manifest = {"domains": {spec.name: {} for spec in domain_specs()}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    for split in ("train", "validation"):
        (root / f"{split}.jsonl").write_text("")
    monkeypatch.setenv("ACODM_HOME", str(tmp_path / "home"))
    return root


def dry_plan(preset: str, quick: bool, methods: str, tmp_path: Path, *sets: str):
    """The comparison's plan of `methods` as `jobs/compare.py --dry-run` builds it."""
    overrides = [f"compare.methods={json.dumps(methods.split(','))}", *sets]
    cfg = load_compare_config(ROOT / "configs" / preset, overrides, quick=quick)
    return plan_runs(cfg, tmp_path / "out")


@pytest.mark.parametrize(
    "preset, quick", list(PRESETS), ids=[f"{p}{'-quick' * q}" for p, q in PRESETS]
)
def test_every_method_plans_or_is_refused_with_its_fix(preset, quick, tmp_path, bundled_home):
    refused = {}
    for method in METHODS:
        try:
            plan = dry_plan(preset, quick, method, tmp_path)
            plan.check()
        except ConfigError as err:  # PlanError is one
            refused[method] = str(err)
            continue
        stages = {(run.method, run.stage) for run in plan.runs}
        kind = METHODS[method].kind
        assert (method, "target") in stages and ((method, "proxy") in stages) == (kind == "proxy")
        assert all(run.cfg.train.seed == run.seed for run in plan.runs)
        rendered = plan.render()
        assert method in rendered and "corpus: " in rendered
    assert set(refused) == PRESETS[preset, quick], refused
    for method, message in refused.items():
        assert FIXES[method] in message, message
    if preset == "paper-pythia.yaml":  # K unknown: said so, and the check that needs it skipped
        assert (
            "the checks that need K are skipped"
            in dry_plan(preset, quick, "odm", tmp_path).render()
        )


def test_the_reference_on_tiny_quick_is_refused_at_plan_time(tmp_path, monkeypatch, capsys):
    """Issue 29: `--methods uniform,acodm,acodm-reference,acodm-paper` on tiny --quick used to start
    its runs and fail minutes later in an RLlib env runner (grad_accum 6 < 7 domains). The dry run
    refuses it with the fix, the job refuses it before Ray starts, and the fix plans."""
    preset, quick, methods = TINY_QUICK_CASE
    with pytest.raises(PlanError, match=r"train.grad_accum = 6; fix: --set train.grad_accum=7"):
        dry_plan(preset, quick, methods, tmp_path).check()
    dry_plan(preset, quick, methods, tmp_path, "train.grad_accum=7").check()  # the fix works

    def no_ray(*args, **kwargs):
        raise AssertionError("the job started Ray")

    monkeypatch.setattr(_common, "init_ray", no_ray)
    argv = ["--config", f"configs/{preset}", "--quick", "--methods", methods]
    argv += ["--output-dir", str(tmp_path / "results")]
    for extra in (["--dry-run"], []):  # the dry run and the job itself: one check
        assert compare_job.main([*argv, *extra]) == 2
        out, err = capsys.readouterr()
        assert "compare: error: the compare plan cannot run (2 problem(s))" in err
        assert "acodm-reference-seed0 (acodm-reference, target)" in err
        assert "--set train.grad_accum=7" in err
        assert ("proxy-acodm-reference-seed0" in out) == bool(extra)  # the plan, under --dry-run
    assert not (tmp_path / "results").exists()
    assert compare_job.main([*argv, "--dry-run", "--set", "train.grad_accum=7"]) == 0
    assert "dry run: nothing was started" in capsys.readouterr().out


def test_every_job_dry_runs_and_refuses_before_ray(tmp_path, monkeypatch, capsys):
    """proxy_rl, target_pretrain, prepare_corpus and `acodm pretrain`: --dry-run prints the plan and
    writes nothing; a plan that cannot run (forced coverage, 6 micro-batches, 7 domains) is refused
    by the dry run and by the job before it starts Ray or a run."""
    import proxy_rl as proxy_job

    from acodm_ray import cli

    monkeypatch.setattr(_common, "init_ray", lambda *a, **k: pytest.fail("the job started Ray"))
    out_dir = ["--output-dir", str(tmp_path / "runs")]
    jobs = {
        "proxy_rl": lambda extra: proxy_job.main(
            ["--config", "configs/tiny.yaml", *out_dir, *extra]
        ),
        "target_pretrain": lambda extra: target_job.main(
            ["--config", "configs/tiny.yaml", "--online-acodm", *out_dir, *extra]
        ),
        "pretrain": lambda extra: cli.main(
            ["pretrain", "--config", "configs/tiny.yaml", *out_dir, *extra]
        ),
    }
    forced = ["--set", "train.coverage=forced"]
    for job, main in jobs.items():
        assert main(["--dry-run"]) == 0, job
        out = capsys.readouterr().out
        assert f"{job} plan: 1 run(s)" in out and "dry run: nothing was started" in out, out
        assert "corpus: 7 domains (the tiny corpus's manifest)" in out
        for extra in (["--dry-run", *forced], forced):
            assert main(extra) == 2, job
            err = capsys.readouterr().err
            assert "train.grad_accum = 6; fix: --set train.grad_accum=7" in err, err
            assert "or --set train.coverage=iid" in err
    assert not (tmp_path / "runs").exists()  # nothing trained, no run dir made
    # the corpus preparation: what it reads and writes, and a source that cannot be read, refused
    assert prepare_job.main(["--config", "configs/tiny.yaml", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "source: tiny" in out and "inputs: 2 file(s)" in out and "dry run" in out
    bad = ["--config", "configs/tiny.yaml", "--set", "corpus.source=json"]
    for extra in (["--dry-run"], []):
        assert prepare_job.main([*bad, *extra]) == 2
        assert "needs corpus.data_files" in capsys.readouterr().err


def test_dry_run_starts_nothing_and_takes_seconds(tmp_path):
    """The dry run of the tiny preset's comparison in a fresh interpreter: it imports no Ray, writes
    nothing and returns in seconds (a `python -c` call of the job's main: no job is started)."""
    program = (
        "import sys, time; t = time.perf_counter(); sys.path.insert(0, 'jobs'); import compare; "
        f"rc = compare.main(['--config', 'configs/tiny.yaml', '--dry-run', '--output-dir', {str(tmp_path)!r}]); "
        "assert rc == 0, rc; assert 'ray' not in sys.modules, 'imported ray'; "
        "print(f'seconds={time.perf_counter() - t:.2f}')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    seconds = float(proc.stdout.rsplit("seconds=", 1)[1])
    assert seconds < 30, seconds  # ~3 s on an idle 2-core machine
    assert not any(tmp_path.iterdir())

"""The tests of the Ray-side guarantees bite: tools/mutants.py breaks each guarantee on purpose in a
temporary copy and the test claiming it must fail there (mutmut covers the pure core; BENCHMARKS.md)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import mutants  # noqa: E402


@pytest.mark.parametrize("m", mutants.MUTANTS, ids=[m.name for m in mutants.MUTANTS])
def test_each_mutant_still_applies_and_names_real_tests(m):
    """A refactor that moves the mutated snippet, or renames a claiming test, must fail here (cheaply),
    not leave the mutant testing nothing."""
    assert (ROOT / m.path).read_text().count(m.old) == 1, (
        f"{m.name}: snippet not found exactly once in {m.path}"
    )
    for node in m.tests:
        path, name = node.split("::")
        assert f"def {name}(" in (ROOT / path).read_text(), node


def test_ci_set_covers_each_ray_side_guarantee():
    ci = {m.name for m in mutants.MUTANTS if m.ci}
    # exact resume, env-runner restart, safe loading, tracking (the Ray Train worker's resume mutant
    # costs two Ray Train runs: `python tools/mutants.py --all` runs it)
    assert {
        "pretrain-resume-restores-nothing",
        "env-runner-not-restarted",
        "policy-weights-fall-back-to-pickle",
        "mlflow-resume-opens-a-new-run",
    } <= ci


@pytest.mark.slow
def test_every_ci_mutant_is_killed_by_the_test_claiming_it():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "mutants.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "SURVIVED" not in proc.stdout

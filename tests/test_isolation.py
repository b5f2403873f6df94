"""tests/isolation.py: the private /tmp hides the real one, but not the checkout or the interpreter the
isolated command runs, wherever they live (a checkout or a virtualenv under /tmp used to vanish
inside: `.../bin/python: No such file or directory`)."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from tests.isolation import can_unshare, kept_paths, run_isolated

needs_unshare = pytest.mark.skipif(not can_unshare(), reason="needs `unshare` (root) and `ip`")


@pytest.fixture
def under_real_tmp():
    """A directory in the real /tmp (whatever pytest's basetemp is), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="acodm-isolation-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@needs_unshare
def test_a_checkout_and_an_interpreter_under_tmp_stay_visible_in_the_private_tmp(
    under_real_tmp, tmp_path
):
    checkout = under_real_tmp / "checkout"
    (checkout / "configs").mkdir(parents=True)
    (checkout / "configs" / "marker.txt").write_text("the checkout\n")
    python = under_real_tmp / "venv" / "bin" / "python"  # a venv-like link to this interpreter
    python.parent.mkdir(parents=True)
    python.symlink_to(sys.executable)
    hidden = Path(tempfile.mkdtemp(prefix="acodm-isolation-hidden-", dir="/tmp"))
    try:
        marker = checkout / "configs" / "marker.txt"
        script = (
            f"{shlex.quote(str(python))} -c 'import sys; print(open(sys.argv[1]).read().strip())' "
            f"{shlex.quote(str(marker))}\n"
            f"test ! -e {shlex.quote(str(hidden))}\n"  # the rest of the real /tmp stays hidden
            "touch /tmp/written-inside\n"
        )
        private = tmp_path / "private"
        proc = run_isolated(script, private, dict(os.environ), checkout, timeout=60, python=python)
    finally:
        hidden.rmdir()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "the checkout"
    assert (private / "written-inside").is_file()  # /tmp inside is the private directory
    assert not (Path("/tmp") / "written-inside").exists()


def test_kept_paths_are_the_outermost_under_tmp(under_real_tmp):
    checkout = under_real_tmp / "checkout"
    checkout.mkdir()
    python = under_real_tmp / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.symlink_to(sys.executable)
    kept = kept_paths(checkout, python)
    assert checkout in kept and under_real_tmp / "venv" in kept
    assert all(Path("/tmp") in p.parents for p in kept)
    outer = kept_paths(under_real_tmp, python)  # the venv is inside: one mount holds both
    assert under_real_tmp in outer and not any(under_real_tmp in p.parents for p in outer)

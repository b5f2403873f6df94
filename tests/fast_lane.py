"""What counts as starting a job, for the fast lane's check in tests/conftest.py.

A test not marked slow may run small subprocesses (git, apt-get's dry runs, a `python -c` import
check) but not a job: a script of the project's entry-point directories, a multi-process launcher,
the Ray or `acodm` command line, or `make`. Read from the command line alone, so the check needs no
list of tests.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

JOB_DIRS = ("jobs", "examples", "benchmarks", "tools")  # python <dir>/<script>.py is a job
JOB_LAUNCHERS = ("torchrun", "torch.distributed.run", "ray", "make", "acodm")


def job_in(args) -> str | None:
    """The job a subprocess command line starts (a launcher, or a script of `JOB_DIRS`), or None;
    the script of `bash -c` / `sh -c` is read too (a `python -c` program is not a command line)."""
    if isinstance(args, (str, bytes, os.PathLike)):
        args = shlex.split(os.fsdecode(args))  # shell=True, or a bare program
    argv = [os.fsdecode(a) for a in args]
    shells = [i for i, word in enumerate(argv) if Path(word).name in ("bash", "sh")]
    if shells and "-c" in argv[shells[0] : -1]:  # `[unshare ...] bash [-opts] -c SCRIPT`
        try:
            argv += shlex.split(argv[argv.index("-c", shells[0]) + 1])
        except ValueError:  # unbalanced quotes: the words around it still count
            pass
    for word in (w for w in argv if not w.startswith("-")):  # options name no job
        path = Path(word)
        if path.name in JOB_LAUNCHERS or (path.suffix == ".py" and path.parent.name in JOB_DIRS):
            return word
    return None

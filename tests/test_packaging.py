"""What `ray job submit --working-dir .` uploads, computed with Ray's own packaging code.

Ray (2.60) zips the working dir with `ray._private.runtime_env.packaging._zip_files`, walking it with
`_dir_travel` and excluding: its default excludes (`.git`, `.venv`, `venv`, `__pycache__`), the
runtime env's `excludes`, and the patterns of every `.gitignore` (unless RAY_RUNTIME_ENV_IGNORE_GITIGNORE=1)
and `.rayignore` on the way down. These tests run that same walk.
"""

from __future__ import annotations

import logging
import shutil
import zipfile
from pathlib import Path

import pytest
from ray._private import ray_constants
from ray._private.runtime_env.packaging import (
    GCS_STORAGE_MAX_SIZE,
    _dir_travel,
    _get_excludes,
    _zip_files,
)

ROOT = Path(__file__).resolve().parents[1]
LOG = logging.getLogger("test_packaging")

SECRETS_AND_OUTPUTS = [
    "runs/x/checkpoint.pt",
    "runs/x/checkpoint/algorithm_state.pkl",
    "runs/x/tensorboard/events.out.tfevents.1",
    "results/bench.json",
    ".venv/bin/python",
    ".venv/lib/python3.11/site-packages/torch/__init__.py",
    ".env",
    ".env.local",
    "key.pem",
    "deploy/id_rsa",
    "acodm_ray/__pycache__/config.cpython-311.pyc",
    "jobs/__pycache__/_common.cpython-311.pyc",
    ".git/config",
    ".pytest_cache/v/cache/nodeids",
    "acodm_ray.egg-info/PKG-INFO",
    "model.ckpt",
    "configs/server.key",
]


def package_files(root: Path, include_gitignore: bool = True) -> list[str]:
    """Relative paths of the files Ray would put in the working-dir package of `root`."""
    files: list[str] = []

    def handler(path: Path) -> None:
        if path.is_file():
            files.append(path.relative_to(root).as_posix())

    excludes = ray_constants.get_runtime_env_default_excludes()
    _dir_travel(
        root,
        [_get_excludes(root, excludes)],
        handler,
        include_gitignore=include_gitignore,
        logger=LOG,
    )
    return sorted(files)


def package_size(root: Path, out: Path) -> int:
    excludes = ray_constants.get_runtime_env_default_excludes()
    _zip_files(str(root), excludes, str(out), include_gitignore=True, logger=LOG)
    return out.stat().st_size


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory) -> Path:
    """The project's sources and ignore files, plus outputs, environments and secrets to keep out."""
    dst = tmp_path_factory.mktemp("repo") / "acodm-ray"
    dst.mkdir()
    for name in (".gitignore", ".rayignore", "pyproject.toml", "constraints.txt"):
        shutil.copy2(ROOT / name, dst / name)
    for name in ("acodm_ray", "jobs", "configs", "envs", "policies"):
        shutil.copytree(ROOT / name, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
    for rel in SECRETS_AND_OUTPUTS:
        path = dst / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 64)
    return dst


@pytest.mark.parametrize(
    "include_gitignore", [True, False], ids=["gitignore+rayignore", "rayignore-only"]
)
def test_outputs_envs_and_secrets_stay_out(repo_copy, include_gitignore):
    files = package_files(repo_copy, include_gitignore=include_gitignore)
    assert [s for s in SECRETS_AND_OUTPUTS if s in files] == []
    for top in ("runs/", "results/", ".venv/", ".git/", ".pytest_cache/", "acodm_ray.egg-info/"):
        assert not [f for f in files if f.startswith(top)], top
    for name in (
        ".env",
        ".env.local",
        "key.pem",
        "deploy/id_rsa",
        "model.ckpt",
        "configs/server.key",
    ):
        assert name not in files
    assert not [f for f in files if "__pycache__" in f]


def test_the_code_and_configs_go(repo_copy):
    files = package_files(repo_copy)
    for need in (
        "jobs/proxy_rl.py",
        "jobs/_common.py",
        "acodm_ray/config.py",
        "acodm_ray/cli.py",
        "configs/demo.yaml",
        "configs/tiny.yaml",
        "envs/__init__.py",
        "policies/run.py",
        "pyproject.toml",
    ):
        assert need in files, need
    assert any(
        f.startswith("acodm_ray/assets/tiny_corpus/") for f in files
    )  # the shipped corpus slice


def test_real_repo_package_is_small(tmp_path, capsys):
    """The package of this checkout, as it is (a demo run in runs/, the .venv ...)."""
    files = package_files(ROOT)
    assert "jobs/proxy_rl.py" in files and not [
        f for f in files if f.startswith(("runs/", ".venv/", ".git/"))
    ]
    size = package_size(ROOT, tmp_path / "pkg.zip")
    with zipfile.ZipFile(tmp_path / "pkg.zip") as z:
        names = z.namelist()
    assert not [n for n in names if n.startswith(("runs/", ".venv/", "results/"))]
    assert size < 16 * 2**20 < GCS_STORAGE_MAX_SIZE, (
        f"working-dir package is {size / 2**20:.1f} MiB"
    )
    with capsys.disabled():
        print(
            f"\n[packaging] `ray job submit --working-dir .` package of {ROOT}: {len(files)} files, "
            f"{size / 2**10:.0f} KiB (runs/ present: {(ROOT / 'runs').is_dir()})"
        )


def test_the_ignore_files_are_what_keeps_them_out(repo_copy, tmp_path):
    """Control: without .gitignore / .rayignore, Ray's defaults alone would upload runs and secrets."""
    bare = tmp_path / "bare"
    shutil.copytree(repo_copy, bare)
    (bare / ".gitignore").unlink()
    (bare / ".rayignore").unlink()
    files = package_files(bare)
    for name in (
        "runs/x/checkpoint.pt",
        "results/bench.json",
        ".env",
        "key.pem",
        "configs/server.key",
    ):
        assert name in files
    assert not [
        f for f in files if f.startswith((".venv/", ".git/")) or "__pycache__" in f
    ]  # Ray's defaults

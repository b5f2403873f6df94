"""`acodm doctor`: reports the stack, the corpus and the auth state; exit 1 names the fixing command."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from acodm_ray.cli import main as cli_main
from acodm_ray.doctor import PACKAGES, run_doctor

TOKEN = "3f" * 32  # the shape of a Ray token (64 hex chars); must never be printed


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    """An empty ACODM_HOME and HOME, no Ray address or auth settings, cwd in a temp dir."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("ACODM_HOME", str(tmp_path / "acodm_home"))
    for var in (
        "RAY_ADDRESS",
        "RAY_AUTH_MODE",
        "RAY_AUTH_TOKEN",
        "RAY_AUTH_TOKEN_PATH",
        "ACODM_OUTPUT_ROOT",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    from acodm_ray import doctor  # no `ray start` address file from elsewhere on this machine

    monkeypatch.setattr(doctor, "_ray_address_file", lambda: tmp_path / "no_ray_current_cluster")
    return tmp_path


def fake_corpus(acodm_home):
    corpus = acodm_home / "corpus" / "debian-v1"
    corpus.mkdir(parents=True)
    manifest = {
        "name": "debian-v1",
        "format_version": 1,
        "apt_host": "debian 12",
        "domains": {
            "python_code": {"train": {"bytes": 2_000_000}},
            "legal": {"train": {"bytes": 500_000}},
        },
        "packages": [{"name": "a"}, {"name": "b"}],
    }
    (corpus / "manifest.json").write_text(json.dumps(manifest))
    return corpus


def test_empty_home_reports_versions_and_missing_corpus(clean_env):
    code, text = run_doctor()
    assert code == 1
    for pkg in PACKAGES:
        assert f"{pkg:<12}" in text
    assert "python" in text and "CPUs" in text and "CUDA GPUs" in text
    assert "[!!] corpus" in text and "fix: acodm corpus build" in text
    assert "RAY_ADDRESS not set" in text and "ray start --head" in text  # says how to start one
    assert "exists: no" in text and "tokenizers   none cached" in text


def test_built_corpus_is_ok(clean_env):
    corpus = fake_corpus(clean_env / "acodm_home")
    code, text = run_doctor()
    assert f"[ok] corpus       {corpus}" in text
    assert "2 domains (python_code, legal), 2.5 MB train, 2 packages from debian 12" in text
    assert "acodm corpus build" not in text
    assert code == 0, text  # everything else the demo needs is installed in this environment


def test_the_demo_config_finds_its_derived_corpus_or_names_the_command(clean_env):
    """configs/demo-decoys.yaml reads `debian-v1-swamped`, a name under $ACODM_HOME/corpus:
    missing, the fix is `acodm corpus derive swamped`; written, it is found there."""
    fake_corpus(clean_env / "acodm_home")
    config = str(Path(__file__).resolve().parents[1] / "configs" / "demo-decoys.yaml")
    derived = clean_env / "acodm_home" / "corpus" / "debian-v1-swamped"
    code, text = run_doctor(config)
    assert code == 1 and f"not built: no {derived / 'manifest.json'}" in text
    assert "fix: acodm corpus derive swamped  (after acodm corpus build)" in text
    fake_corpus(clean_env / "other").rename(derived)
    code, text = run_doctor(config)
    assert f"[ok] corpus       {derived}" in text and code == 0, text


def test_unreadable_manifest_asks_for_a_rebuild(clean_env):
    corpus = fake_corpus(clean_env / "acodm_home")
    (corpus / "manifest.json").write_text("{not json")
    code, text = run_doctor()
    assert code == 1 and "acodm corpus build --force" in text


def test_token_is_never_printed(clean_env, monkeypatch, capsys):
    fake_corpus(clean_env / "acodm_home")
    token_file = clean_env / "home" / ".ray" / "auth_token"
    token_file.parent.mkdir()
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", TOKEN)
    assert cli_main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert TOKEN not in out and TOKEN[:16] not in out
    assert f"{token_file} exists: yes (mode 600)" in out
    assert (
        "RAY_AUTH_TOKEN       set (value not shown)" in out and "RAY_AUTH_MODE        token" in out
    )


def test_token_mode_without_a_token_is_missing(clean_env, monkeypatch):
    fake_corpus(clean_env / "acodm_home")
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    code, text = run_doctor()
    assert code == 1 and "fix: ray get-auth-token --generate" in text


def test_loose_token_file_permissions_are_flagged(clean_env):
    token_file = clean_env / "home" / ".ray" / "auth_token"
    token_file.parent.mkdir()
    token_file.write_text(TOKEN)
    token_file.chmod(0o644)
    _, text = run_doctor()
    assert "readable by others: chmod 600 it" in text and TOKEN not in text


def test_unreachable_ray_address_fails_fast(clean_env, monkeypatch):
    fake_corpus(clean_env / "acodm_home")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    code, text = run_doctor(timeout=10)
    assert code == 1
    assert f"[!!] RAY_ADDRESS=127.0.0.1:{port} is not reachable: cannot connect" in text
    assert "unset RAY_ADDRESS" in text


def test_other_corpus_sources_need_no_build(clean_env):
    tiny = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
    code, text = run_doctor(str(tiny))
    assert "corpus       source=tiny: ships inside the package" in text
    assert code == 0, text


def test_stale_ray_address_file_is_flagged(clean_env, monkeypatch):
    """`ray start` records its address; a plain ray.init() joins it, and fails once that head is gone."""
    from acodm_ray import doctor

    fake_corpus(clean_env / "acodm_home")
    address_file = clean_env / "ray_current_cluster"
    monkeypatch.setattr(doctor, "_ray_address_file", lambda: address_file)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address_file.write_text(f"127.0.0.1:{port}")
    code, text = run_doctor()
    assert code == 1 and f"fix: rm {address_file}" in text
    with socket.socket() as s:  # a live head: information only
        s.bind(("127.0.0.1", 0))
        s.listen()
        address_file.write_text(f"127.0.0.1:{s.getsockname()[1]}")
        code, text = run_doctor()
    assert code == 0 and "a plain ray.init() joins it" in text

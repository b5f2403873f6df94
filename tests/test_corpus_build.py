"""The bundled-corpus build itself, on a restricted domain set, with apt lists that start empty.

Most container images delete `/var/lib/apt/lists`, and a long-lived machine's lists go stale; the
build must refresh them itself (`apt-get update` as root, then retry) rather than fail with "Can't
find a source to download version". The slow test points `APT_CONFIG` at a config whose
`Dir::State::Lists` is an empty directory, so the machine's own lists are never read or changed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from acodm_ray.data import apt, build

needs_apt = pytest.mark.skipif(shutil.which("apt-get") is None, reason="not a Debian/Ubuntu system")


@pytest.fixture
def empty_apt_lists(tmp_path, monkeypatch):
    lists, cache = tmp_path / "apt-lists", tmp_path / "apt-cache"
    lists.mkdir()
    cache.mkdir()
    conf = tmp_path / "apt.conf"
    conf.write_text(
        f'Dir::State::Lists "{lists}";\nDir::Cache "{cache}";\nAPT::Sandbox::User "root";\n'
    )
    monkeypatch.setenv("APT_CONFIG", str(conf))
    monkeypatch.setenv("ACODM_HOME", str(tmp_path / "home"))
    return lists


@needs_apt
@pytest.mark.slow
@pytest.mark.network
@pytest.mark.skipif(
    os.geteuid() != 0, reason="apt-get update needs root (the CI image runs as root)"
)
def test_build_refreshes_empty_apt_lists(empty_apt_lists, tmp_path):
    assert not any(empty_apt_lists.iterdir())
    # with no lists apt knows installed packages only, and cannot download them
    probe = subprocess.run(
        ["apt-get", "download", "base-files"], cwd=tmp_path, capture_output=True, text=True
    )
    assert probe.returncode != 0
    out = tmp_path / "corpus"
    build.build_bundled_corpus(out, domains=["legal", "literature"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["apt_lists_refreshed"] is True
    assert list(manifest["domains"]) == ["literature", "legal"]
    assert {p["name"] for p in manifest["packages"]} == {"base-files", "bible-kjv-text"}
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert {r["domain"] for r in rows} == {"literature", "legal"}
    assert any(empty_apt_lists.iterdir())  # the refresh wrote into the configured lists dir only


def _fake_apt(monkeypatch, tmp_path, download_ok_after_update: bool):
    calls = []

    def fake_run(cmd, cwd=None, capture_output=True, text=True):
        calls.append(cmd[:2])
        if cmd[:2] == ["apt-get", "update"]:
            return subprocess.CompletedProcess(cmd, 0, "", "")
        if cmd[:2] == ["apt-get", "download"]:
            refreshed = ["apt-get", "update"] in calls
            if refreshed and download_ok_after_update:
                (cwd / f"{cmd[2]}_1.0_all.deb").write_bytes(b"deb")
                return subprocess.CompletedProcess(cmd, 0, "", "")
            return subprocess.CompletedProcess(
                cmd, 100, "", "E: Can't find a source to download version '1.0'"
            )
        return subprocess.CompletedProcess(cmd, 0, "1.0\n", "")

    monkeypatch.setattr(apt.subprocess, "run", fake_run)
    return calls


def test_download_refreshes_once_then_retries(monkeypatch, tmp_path):
    monkeypatch.setattr(apt.os, "geteuid", lambda: 0)
    calls = _fake_apt(monkeypatch, tmp_path, download_ok_after_update=True)
    lists = apt.AptLists()
    deb = apt.download_package("base-files", tmp_path, lists)
    assert deb.version == "1.0" and lists.refreshed
    assert calls[:3] == [["apt-get", "download"], ["apt-get", "update"], ["apt-get", "download"]]
    apt.download_package(
        "bible-kjv-text", tmp_path, lists
    )  # the lists are refreshed once per build
    assert calls.count(["apt-get", "update"]) == 1


def test_download_still_missing_after_refresh_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setattr(apt.os, "geteuid", lambda: 0)
    calls = _fake_apt(monkeypatch, tmp_path, download_ok_after_update=False)
    with pytest.raises(build.CorpusBuildError, match=r"'base-files'.*after `apt-get update`"):
        apt.download_package("base-files", tmp_path)
    assert calls.count(["apt-get", "download"]) == 2


def test_not_root_says_the_exact_command(monkeypatch, tmp_path):
    monkeypatch.setattr(apt.os, "geteuid", lambda: 1000)
    calls = _fake_apt(monkeypatch, tmp_path, download_ok_after_update=True)
    with pytest.raises(
        build.CorpusBuildError, match=r"Run `sudo apt-get update`, then `acodm corpus build`"
    ):
        apt.download_package("base-files", tmp_path)
    assert ["apt-get", "update"] not in calls


def test_partial_build_needs_out_and_known_domains(tmp_path):
    with pytest.raises(build.CorpusBuildError, match="--out"):
        build.build_bundled_corpus(domains=["legal"])
    with pytest.raises(build.CorpusBuildError, match=r"unknown corpus domain\(s\) \['poetry'\]"):
        build.select_domains(build.domain_specs(), ["poetry"])

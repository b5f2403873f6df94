"""check_output_path: run names never lead outside the output root."""

from __future__ import annotations

import os

import pytest

from acodm_ray.safety import UnsafePathError, check_output_path


def test_plain_and_nested_names_stay_inside(tmp_path):
    root = tmp_path / "runs"
    assert check_output_path(root, "demo-proxy-acodm") == root / "demo-proxy-acodm"
    assert check_output_path(root, "sweep/run-1") == root / "sweep" / "run-1"
    assert check_output_path(root, "./a/./b") == root / "a" / "b"
    assert check_output_path(str(root), "x") == root / "x"  # str roots too; the root need not exist


@pytest.mark.parametrize("name", ["..", "../x", "a/../../b", "a/..", "x/../../../etc"])
def test_dotdot_is_refused(tmp_path, name):
    with pytest.raises(UnsafePathError, match=r"\.\."):
        check_output_path(tmp_path, name)


@pytest.mark.parametrize("name", ["/etc", "/tmp/x", "~/runs", "~", "C:\\runs", "\\\\server\\share"])
def test_absolute_names_are_refused(tmp_path, name):
    with pytest.raises(UnsafePathError, match="absolute"):
        check_output_path(tmp_path, name)


@pytest.mark.parametrize("name", ["", "   ", ".", "./", "a\x00b"])
def test_empty_dot_and_nul_are_refused(tmp_path, name):
    with pytest.raises(UnsafePathError):
        check_output_path(tmp_path, name)


def test_error_is_a_valueerror_naming_the_value(tmp_path):
    with pytest.raises(ValueError, match="'../secret'"):
        check_output_path(tmp_path, "../secret")


def test_symlink_leading_outside_is_refused(tmp_path):
    root = tmp_path / "runs"
    outside = tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(UnsafePathError, match="outside the output root"):
        check_output_path(root, "link")
    with pytest.raises(UnsafePathError, match="outside the output root"):
        check_output_path(root, "link/run-1")  # a deeper name through the link
    os.symlink("/", root / "to-root")
    with pytest.raises(UnsafePathError):
        check_output_path(root, "to-root/etc")


def test_symlink_inside_the_root_and_a_symlinked_root_are_fine(tmp_path):
    real_root = tmp_path / "data" / "runs"
    (real_root / "a").mkdir(parents=True)
    os.symlink(real_root / "a", real_root / "alias")  # points inside: allowed
    assert check_output_path(real_root, "alias/run") == real_root / "alias" / "run"
    linked_root = tmp_path / "runs"
    os.symlink(real_root, linked_root)  # the root itself may be a link (the operator's choice)
    assert check_output_path(linked_root, "demo") == linked_root / "demo"

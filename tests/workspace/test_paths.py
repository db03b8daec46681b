"""app.workspace.paths.resolve: every client path lands inside the root, or is refused."""

import os
from pathlib import Path

import pytest

from app.workspace.paths import MAX_PATH_CHARS, OutsideWorkspace, WorkspacePathError, resolve


def test_absolute_and_relative_paths_both_mean_inside_the_root(root: Path) -> None:
    real = root.resolve()
    assert resolve(root, "/a/b.txt") == real / "a" / "b.txt"
    assert resolve(root, "a/b.txt") == real / "a" / "b.txt"
    assert resolve(root, "//a//./b.txt") == real / "a" / "b.txt"
    assert resolve(root, "/") == real
    assert resolve(root, "") == real
    assert resolve(root, ".") == real
    # `..` that stays inside is fine
    assert resolve(root, "/a/../b") == real / "b"


def test_an_absolute_path_of_this_machine_is_mapped_under_the_root(
    root: Path, outside: Path
) -> None:
    target = resolve(root, str(outside / "secret.txt"))
    assert target == root.resolve() / str(outside / "secret.txt").lstrip("/")
    assert resolve(root, "/etc/passwd") == root.resolve() / "etc" / "passwd"


@pytest.mark.parametrize("path", ["..", "../x", "/..", "/../x", "a/../../x", "a/b/../../../x"])
def test_dot_dot_out_of_the_root_is_refused(root: Path, path: str) -> None:
    with pytest.raises(OutsideWorkspace) as caught:
        resolve(root, path)
    assert caught.value.status_code == 403
    assert "outside the workspace" in caught.value.message


def test_a_symlink_out_of_the_root_is_refused(root: Path, outside: Path) -> None:
    (root / "link").symlink_to(outside)
    (root / "file_link").symlink_to(outside / "secret.txt")
    (root / "rel_link").symlink_to("../outside")
    for path in ("link", "/link/secret.txt", "link/new.txt", "file_link", "rel_link/x"):
        with pytest.raises(OutsideWorkspace):
            resolve(root, path)


def test_dot_dot_after_a_symlink_is_taken_from_the_link_target(root: Path) -> None:
    """`a/..` is not `.` when `a` is a link: the kernel resolves the link first."""
    (root / "deep" / "er").mkdir(parents=True)
    (root / "up").symlink_to(root / "deep" / "er")
    assert resolve(root, "up/..") == root.resolve() / "deep"
    (root / "top").symlink_to(root)
    with pytest.raises(OutsideWorkspace):
        resolve(root, "top/..")


def test_a_symlink_inside_the_root_is_followed(root: Path) -> None:
    (root / "real").mkdir()
    (root / "alias").symlink_to("real")
    assert resolve(root, "/alias/f.txt") == root.resolve() / "real" / "f.txt"


def test_a_root_that_is_itself_a_symlink_works(tmp_path: Path, root: Path) -> None:
    via = tmp_path / "via"
    via.symlink_to(root)
    assert resolve(via, "/x") == root.resolve() / "x"
    with pytest.raises(OutsideWorkspace):
        resolve(via, "/../x")


def test_malformed_paths_are_400(root: Path) -> None:
    (root / "loop").symlink_to("loop")
    for path in ("a\x00b", "x" * (MAX_PATH_CHARS + 1), "loop/x"):
        with pytest.raises(WorkspacePathError) as caught:
            resolve(root, path)
        assert caught.value.status_code == 400, path


def test_the_root_need_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "not" / "yet"
    assert resolve(missing, "/a") == missing / "a"
    assert not os.path.exists(missing)

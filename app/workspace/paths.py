"""Where a path a client names lies on this machine: always inside the workspace root.

A client's path is read as if the workspace root were `/`: `/a/b` and `a/b` both mean
`<root>/a/b`. The result is resolved as the kernel would (symlinks followed, `..` taken after
the link it follows), and a result outside the root is refused. `resolve` touches the file
system (it reads links): call it off the event loop.

What it cannot prevent: a link created inside the root after the check (by a command of the
bash routes or the agent's terminal tool, which run arbitrary code anyway) is followed by the
file operation that comes after it.
"""

from pathlib import Path

from app.errors import BadRequest

# Linux PATH_MAX: a longer path could never be opened.
MAX_PATH_CHARS = 4096


class WorkspacePathError(BadRequest):
    """A path that cannot name anything in the workspace (400); the base of every error
    `resolve` raises."""


class OutsideWorkspace(WorkspacePathError):
    """A path that resolves outside the workspace root (403)."""

    status_code = 403
    code = "forbidden"


def resolve(root: Path, client_path: str) -> Path:
    """The real, absolute path `client_path` names inside `root` (which need not exist).

    Raises OutsideWorkspace when it resolves outside `root` (through `..` or a symlink), and
    WorkspacePathError when it is malformed (a NUL character, too long, a symlink loop).
    """
    if "\x00" in client_path:
        raise WorkspacePathError("a path may not hold NUL characters")
    if len(client_path) > MAX_PATH_CHARS:
        raise WorkspacePathError(f"a path may hold at most {MAX_PATH_CHARS} characters")
    base = root.resolve()
    # Split by hand: PurePosixPath keeps a leading `//` as a root of its own.
    parts = [part for part in client_path.split("/") if part]
    try:
        target = base.joinpath(*parts).resolve()
    except (RuntimeError, OSError) as exc:  # a symlink loop: RuntimeError before 3.13
        raise WorkspacePathError(f"path {client_path!r} cannot be resolved: {exc}") from exc
    if target != base and base not in target.parents:
        raise OutsideWorkspace(f"path {client_path!r} is outside the workspace")
    return target

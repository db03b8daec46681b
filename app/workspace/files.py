"""Files in and out of the workspace root. Blocking: callers run these in a worker thread.

An upload is written to a temporary file next to its destination and renamed over it, so a
reader never sees half a file and a failed upload leaves nothing behind. Its size is bounded
by the request body limit (AGENT_SERVER_MAX_BODY_BYTES, app/limits.py), before any of it is
read.
"""

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from app.errors import AppError, NotFound
from app.workspace.paths import WorkspacePathError, resolve

COPY_CHUNK_BYTES = 1024 * 1024
UPLOAD_MODE = 0o644  # mkstemp makes 0600: an uploaded file is an ordinary file


class WorkspacePermissionDenied(AppError):
    status_code = 403
    code = "forbidden"


@contextlib.contextmanager
def _client_errors(client_path: str) -> Iterator[None]:
    """OS errors that a client's path causes, as 4xx; any other stays a server error."""
    try:
        yield
    except (NotADirectoryError, FileExistsError) as exc:
        raise WorkspacePathError(f"{client_path!r}: a part of the path is a file") from exc
    except IsADirectoryError as exc:
        raise WorkspacePathError(f"{client_path!r} is a directory") from exc
    except PermissionError as exc:
        raise WorkspacePermissionDenied(f"{client_path!r}: permission denied") from exc
    except OSError as exc:
        if exc.errno in (errno.ENAMETOOLONG, errno.ELOOP, errno.EINVAL):
            raise WorkspacePathError(f"{client_path!r}: {os.strerror(exc.errno)}") from exc
        raise


def save_upload(root: Path, client_path: str, source: BinaryIO) -> int:
    """Write `source` to `client_path` in the workspace, making its directories; its size."""
    target = resolve(root, client_path)
    if target == root.resolve():
        raise WorkspacePathError("the workspace root is a directory, not a file")
    with _client_errors(client_path):
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_dir():
            raise IsADirectoryError(client_path)
        fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=".upload-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(source, out, COPY_CHUNK_BYTES)
                out.flush()
                os.fsync(out.fileno())
                size = out.tell()
            os.chmod(temp_name, UPLOAD_MODE)
            os.replace(temp_name, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
            raise
    return size


def locate_download(root: Path, client_path: str) -> tuple[Path, os.stat_result]:
    """The regular file `client_path` names in the workspace, and its stat."""
    target = resolve(root, client_path)
    with _client_errors(client_path):
        try:
            status = target.stat()
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise NotFound(f"no file {client_path!r} in the workspace") from exc
    if not stat.S_ISREG(status.st_mode):
        raise WorkspacePathError(f"{client_path!r} is not a regular file")
    return target, status

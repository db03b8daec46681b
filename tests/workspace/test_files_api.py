"""The file routes: upload and download inside the workspace root, whatever the path says."""

from pathlib import Path
from typing import Any

import httpx
import pytest

from app.db.session import Database
from tests.workspace.conftest import fs, workspace_client

UPLOAD = "/api/file/upload"
DOWNLOAD = "/api/file/download"
PAYLOAD = bytes(range(256)) * 1000  # every byte value, 256 kB


def _file(content: bytes, name: str = "f.bin") -> dict[str, Any]:
    # An explicit content type: httpx would otherwise guess one by reading mime.types.
    return {"file": (name, content, "application/octet-stream")}


@pytest.fixture
async def files_client(db: Database, root: Path) -> Any:
    """The terminal off (the default): the file routes work regardless."""
    async with workspace_client(db, root) as client:
        yield client


def _listing(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


async def test_upload_then_download_round_trip(files_client: httpx.AsyncClient, root: Path) -> None:
    response = await files_client.post(
        UPLOAD, params={"path": "/dir/sub/f.bin"}, files=_file(PAYLOAD)
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "path": "/dir/sub/f.bin", "file_size": len(PAYLOAD)}
    assert await fs(lambda: (root / "dir" / "sub" / "f.bin").read_bytes()) == PAYLOAD
    # Nothing else is left in the directory (the temporary file was renamed into place).
    assert await fs(lambda: _listing(root)) == ["dir", "dir/sub", "dir/sub/f.bin"]

    for path in ("/dir/sub/f.bin", "dir/sub/f.bin", "/dir/../dir/sub/f.bin"):
        download = await files_client.get(DOWNLOAD, params={"path": path})
        assert download.status_code == 200, download.text
        assert download.content == PAYLOAD
        assert download.headers["content-type"] == "application/octet-stream"


async def test_upload_replaces_a_file_whole(files_client: httpx.AsyncClient, root: Path) -> None:
    for content in (b"first version, longer", b"second"):
        response = await files_client.post(UPLOAD, params={"path": "a.txt"}, files=_file(content))
        assert response.status_code == 200, response.text
    assert await fs(lambda: (root / "a.txt").read_bytes()) == b"second"
    assert await fs(lambda: _listing(root)) == ["a.txt"]
    assert await fs(lambda: (root / "a.txt").stat().st_mode & 0o777) == 0o644
    empty = await files_client.post(UPLOAD, params={"path": "empty"}, files=_file(b""))
    assert empty.json()["file_size"] == 0


async def test_download_of_a_missing_file_is_404(
    files_client: httpx.AsyncClient, root: Path
) -> None:
    await fs(lambda: (root / "plain").write_text("x"))
    for path in ("/missing.txt", "/no/such/dir/f", "/plain/below"):
        response = await files_client.get(DOWNLOAD, params={"path": path})
        assert response.status_code == 404, (path, response.text)
        assert response.json()["code"] == "not_found"


async def test_a_directory_is_not_a_file(files_client: httpx.AsyncClient, root: Path) -> None:
    await fs(lambda: (root / "d").mkdir())
    await fs(lambda: (root / "plain").write_text("x"))
    for path in ("/", "/d"):
        download = await files_client.get(DOWNLOAD, params={"path": path})
        assert download.status_code == 400, download.text
        upload = await files_client.post(UPLOAD, params={"path": path}, files=_file(b"x"))
        assert upload.status_code == 400, upload.text
    below_a_file = await files_client.post(UPLOAD, params={"path": "/plain/x"}, files=_file(b"x"))
    assert below_a_file.status_code == 400, below_a_file.text
    assert await fs(lambda: _listing(root)) == ["d", "plain"]


async def test_paths_out_of_the_workspace_are_refused(
    files_client: httpx.AsyncClient, root: Path, outside: Path
) -> None:
    await fs(lambda: (root / "link").symlink_to(outside))
    await fs(lambda: (root / "file_link").symlink_to(outside / "secret.txt"))
    escapes = [
        "../outside/secret.txt",
        "/../outside/secret.txt",
        "/a/../../outside/secret.txt",
        "/link/secret.txt",
        "link/new.txt",
        "/file_link",
    ]
    for path in escapes:
        download = await files_client.get(DOWNLOAD, params={"path": path})
        assert download.status_code == 403, (path, download.text)
        assert download.json()["code"] == "forbidden"
        assert "outside the workspace" in download.json()["message"]
        upload = await files_client.post(UPLOAD, params={"path": path}, files=_file(b"evil"))
        assert upload.status_code == 403, (path, upload.text)
    assert await fs(lambda: _listing(outside)) == ["secret.txt"]
    assert await fs(lambda: (outside / "secret.txt").read_text()) == "outside the workspace"


async def test_an_absolute_path_of_this_machine_stays_inside_the_root(
    files_client: httpx.AsyncClient, root: Path, outside: Path
) -> None:
    secret = str(outside / "secret.txt")
    assert (await files_client.get(DOWNLOAD, params={"path": secret})).status_code == 404
    assert (await files_client.get(DOWNLOAD, params={"path": "/etc/passwd"})).status_code == 404
    written = await files_client.post(UPLOAD, params={"path": secret}, files=_file(b"mine"))
    assert written.status_code == 200, written.text
    assert await fs(lambda: (outside / "secret.txt").read_text()) == "outside the workspace"
    inside = root / secret.lstrip("/")
    assert await fs(inside.read_bytes) == b"mine"


async def test_an_oversize_upload_is_413_and_writes_nothing(db: Database, root: Path) -> None:
    async with workspace_client(db, root, max_body_bytes=4096) as client:
        small = await client.post(UPLOAD, params={"path": "small"}, files=_file(b"x" * 1000))
        assert small.status_code == 200, small.text
        big = await client.post(UPLOAD, params={"path": "big"}, files=_file(b"x" * 5000))
        assert big.status_code == 413, big.text
        assert big.json()["code"] == "payload_too_large"
    assert await fs(lambda: _listing(root)) == ["small"]


async def test_bad_paths_are_4xx(files_client: httpx.AsyncClient) -> None:
    for path in ("a\x00b", "x" * 5000, "/" + "n" * 300):
        response = await files_client.get(DOWNLOAD, params={"path": path})
        assert 400 <= response.status_code < 500, (path[:20], response.text)
        upload = await files_client.post(UPLOAD, params={"path": path}, files=_file(b"x"))
        assert 400 <= upload.status_code < 500, (path[:20], upload.text)
    missing_file = await files_client.post(UPLOAD, params={"path": "a"}, data={"other": "x"})
    assert missing_file.status_code == 422

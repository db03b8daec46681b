"""The bash routes: commands run in the background, their output read back by search.

The process-group tests (timeout, background jobs, server stop) were checked once against a
deliberately broken variant that signalled only the shell (`process.send_signal` instead of
`os.killpg`): all three failed, each on a `sleep 60` left running; on the real code they pass.
"""

import asyncio
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from app.db.session import Database
from app.workspace import bash
from tests.workspace.conftest import (
    SEARCH,
    first_outputs,
    fs,
    outputs,
    run,
    start,
    wait_gone,
    workspace_client,
)


async def test_a_command_runs_and_its_output_and_exit_code_arrive_by_search(
    bash_client: httpx.AsyncClient,
) -> None:
    response = await bash_client.post(
        "/api/bash/start_bash_command",
        json={"command": "printf 'out\\n'; printf 'err\\n' >&2; exit 3", "timeout": 30},
    )
    assert response.status_code == 200, response.text
    command = response.json()
    assert command["kind"] == "BashCommand"
    assert command["command"] == "printf 'out\\n'; printf 'err\\n' >&2; exit 3"
    assert (command["cwd"], command["timeout"]) == (None, 30)
    uuid.UUID(command["id"])
    events = await outputs(bash_client, command["id"])
    assert [e["order"] for e in events] == list(range(len(events)))
    assert len({e["id"] for e in events}) == len(events)
    assert all(e["kind"] == "BashOutput" and e["command_id"] == command["id"] for e in events)
    assert [e["exit_code"] for e in events] == [None] * (len(events) - 1) + [3]
    assert "".join(e["stdout"] or "" for e in events) == "out\n"
    assert "".join(e["stderr"] or "" for e in events) == "err\n"


async def test_output_arrives_while_the_command_runs_and_pages_by_order(
    bash_client: httpx.AsyncClient,
) -> None:
    command_id = await start(bash_client, "for i in 1 2 3 4 5; do echo line$i; sleep 0.2; done")
    first = await first_outputs(bash_client, command_id)  # before the command ends
    assert first[0]["exit_code"] is None

    # Polled one event at a time, as a slow SDK poller would: nothing lost, nothing twice.
    one_by_one = await outputs(bash_client, command_id, limit=1)
    assert "".join(e["stdout"] or "" for e in one_by_one) == "".join(
        f"line{i}\n" for i in range(1, 6)
    )
    assert len(one_by_one) >= 3  # the lines came as they were printed, not all at the end

    everything = (await bash_client.get(SEARCH, params={"command_id__eq": command_id})).json()
    assert everything["items"] == one_by_one and everything["next_page_id"] is None
    after = await bash_client.get(SEARCH, params={"command_id__eq": command_id, "order__gt": 1})
    assert after.json()["items"] == one_by_one[2:]

    # next_page_id pages, both ways, give the same events.
    for sort_order, expected in (("TIMESTAMP", one_by_one), ("TIMESTAMP_DESC", one_by_one[::-1])):
        paged, page_id = [], None
        while True:
            params = {"command_id__eq": command_id, "limit": 2, "sort_order": sort_order}
            page = (
                await bash_client.get(
                    SEARCH, params={**params, "page_id": page_id} if page_id else params
                )
            ).json()
            paged += page["items"]
            page_id = page["next_page_id"]
            if page_id is None:
                break
        assert paged == expected, sort_order


async def test_search_without_a_command_id_sees_commands_and_outputs_in_time_order(
    bash_client: httpx.AsyncClient,
) -> None:
    first = await start(bash_client, "echo one")
    await outputs(bash_client, first)
    second = await start(bash_client, "echo two")
    await outputs(bash_client, second)
    everything = (await bash_client.get(SEARCH)).json()["items"]
    assert [(e["kind"], e.get("command_id") or e["id"]) for e in everything][:2] == [
        ("BashCommand", first),
        ("BashOutput", first),
    ]
    commands = (await bash_client.get(SEARCH, params={"kind__eq": "BashCommand"})).json()
    assert [c["id"] for c in commands["items"]] == [first, second]
    # The SDK's get_command_output(None): the newest output event.
    newest = await bash_client.get(
        SEARCH, params={"kind__eq": "BashOutput", "sort_order": "TIMESTAMP_DESC", "limit": 1}
    )
    assert newest.json()["items"][0]["command_id"] == second
    assert newest.json()["items"][0]["exit_code"] == 0


async def test_search_by_time_window(bash_client: httpx.AsyncClient) -> None:
    command_id = await start(bash_client, "true")
    await outputs(bash_client, command_id)
    commands = {"kind__eq": "BashCommand"}
    stamp = datetime.fromisoformat(
        (await bash_client.get(SEARCH, params=commands)).json()["items"][0]["timestamp"]
    )
    plus_two = stamp.astimezone(timezone(timedelta(hours=2))).isoformat()
    windows = {
        "timestamp__gte": [(stamp.isoformat(), 1), (plus_two, 1), ("2000-01-01T00:00:00", 1)],
        "timestamp__lt": [(stamp.isoformat(), 0), (plus_two, 0), ("0001-01-01T00:00:00+01:00", 0)],
    }
    for bound, cases in windows.items():
        for value, found in cases:
            page = await bash_client.get(SEARCH, params={**commands, bound: value})
            assert page.status_code == 200, page.text
            assert len(page.json()["items"]) == found, (bound, value)


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 101}, {"kind__eq": "BashError"}, {"command_id__eq": "x"}],
)
async def test_bad_search_parameters_are_422(
    bash_client: httpx.AsyncClient, params: dict[str, object]
) -> None:
    response = await bash_client.get(SEARCH, params=params)
    assert response.status_code == 422, response.text


async def test_a_page_id_this_server_did_not_give_is_400(bash_client: httpx.AsyncClient) -> None:
    response = await bash_client.get(SEARCH, params={"page_id": "abc"})
    assert response.status_code == 400
    assert "page_id" in response.json()["message"]


async def test_the_timeout_kills_the_whole_process_group(bash_client: httpx.AsyncClient) -> None:
    began = time.monotonic()
    # A background child that ignores SIGTERM: the SIGKILL that follows takes it too.
    command_id = await start(bash_client, "(trap '' TERM; sleep 60) & echo $!; sleep 60", timeout=1)
    events = await outputs(bash_client, command_id)
    assert time.monotonic() - began < 15
    assert events[-1]["exit_code"] == -1
    assert "timed out after 1 seconds" in "".join(e["stderr"] or "" for e in events)
    pid = int("".join(e["stdout"] or "" for e in events).split()[0])
    assert await wait_gone(pid)


async def test_background_jobs_do_not_outlive_their_command(
    bash_client: httpx.AsyncClient,
) -> None:
    stdout, _, exit_code, _ = await run(bash_client, "sleep 60 > /dev/null 2>&1 & echo $!")
    assert exit_code == 0
    assert await wait_gone(int(stdout))


async def test_stop_ends_a_running_command_and_is_idempotent(
    bash_client: httpx.AsyncClient,
) -> None:
    command_id = await start(bash_client, "echo started; sleep 60")
    await first_outputs(bash_client, command_id)
    stopped = await bash_client.post(f"/api/bash/bash_commands/{command_id}/stop")
    assert stopped.status_code == 200 and stopped.json() == {"success": True}
    events = await outputs(bash_client, command_id, wait=5)
    assert events[-1]["exit_code"] == -15  # the shell's SIGTERM, as OpenHands reports it
    again = await bash_client.post(f"/api/bash/bash_commands/{command_id}/stop")
    assert again.status_code == 200
    unknown = await bash_client.post(f"/api/bash/bash_commands/{uuid.uuid4()}/stop")
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"


async def test_cwd_is_inside_the_workspace(bash_client: httpx.AsyncClient, root: Path) -> None:
    await fs(lambda: (root / "sub" / "dir").mkdir(parents=True))
    real = await fs(root.resolve)
    assert (await run(bash_client, "pwd"))[0] == f"{real}\n"
    assert (await run(bash_client, "pwd", cwd="/"))[0] == f"{real}\n"
    assert (await run(bash_client, "pwd", cwd="/sub/dir"))[0] == f"{real}/sub/dir\n"
    assert (await run(bash_client, "pwd", cwd="sub"))[0] == f"{real}/sub\n"


async def test_a_cwd_out_of_the_workspace_is_refused(
    bash_client: httpx.AsyncClient, root: Path, outside: Path
) -> None:
    await fs(lambda: (root / "link").symlink_to(outside))
    for cwd in ("..", "/../..", "sub/../..", "/link", "link/"):
        response = await bash_client.post(
            "/api/bash/start_bash_command", json={"command": "pwd", "cwd": cwd}
        )
        assert response.status_code == 403, (cwd, response.text)
        assert response.json()["code"] == "forbidden"
        assert "outside the workspace" in response.json()["message"]
    # An absolute path of this machine is read inside the root, where it does not exist.
    for cwd in (str(outside), "/missing", "/" + "n" * 300):
        response = await bash_client.post(
            "/api/bash/start_bash_command", json={"command": "pwd", "cwd": cwd}
        )
        assert response.status_code == 400, response.text
        assert "not a directory" in response.json()["message"]
    commands = (await bash_client.get(SEARCH, params={"kind__eq": "BashCommand"})).json()
    assert commands["items"] == []  # nothing ran


async def test_the_command_does_not_see_the_servers_own_settings(
    bash_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_SERVER_SECRET_KEY", "sentinel-secret-key")
    monkeypatch.setenv("AGENT_SERVER_LLM_API_KEY", "sentinel-llm-key")
    monkeypatch.setenv("agent_server_session_api_keys", "sentinel-session-key")
    monkeypatch.setenv("WORKSPACE_TEST_VISIBLE", "passed-through")
    stdout, _, exit_code, _ = await run(bash_client, "env")
    assert exit_code == 0
    assert "WORKSPACE_TEST_VISIBLE=passed-through" in stdout
    assert "sentinel" not in stdout
    assert "AGENT_SERVER_" not in stdout.upper()


@pytest.mark.parametrize(
    "body",
    [
        {"command": "x" * (64 * 1024 + 1)},
        {"command": "echo", "timeout": 0},
        {"command": "echo", "timeout": 3601},
        {"command": "echo", "timeout": "soon"},
        {"command": "echo \x00"},
        {"command": "echo", "cwd": "a\x00b"},
        {"cwd": "/"},
    ],
)
async def test_bad_commands_are_422(
    bash_client: httpx.AsyncClient, body: dict[str, object]
) -> None:
    response = await bash_client.post("/api/bash/start_bash_command", json=body)
    assert response.status_code == 422, response.text


async def test_live_commands_are_bounded(
    bash_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bash, "MAX_LIVE_COMMANDS", 2)
    running = [await start(bash_client, "sleep 60") for _ in range(2)]
    refused = await bash_client.post("/api/bash/start_bash_command", json={"command": "true"})
    assert refused.status_code == 429
    assert refused.json()["code"] == "too_many_requests"
    assert refused.headers["retry-after"] == "1"
    await bash_client.post(f"/api/bash/bash_commands/{running[0]}/stop")
    await outputs(bash_client, await start(bash_client, "true"))  # a slot is free again
    await bash_client.post(f"/api/bash/bash_commands/{running[1]}/stop")


async def test_kept_commands_are_bounded_oldest_finished_first(
    bash_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bash, "MAX_LIVE_COMMANDS", 2)
    monkeypatch.setattr(bash, "MAX_KEPT_COMMANDS", 3)
    ids = []
    for n in range(4):
        ids.append(await start(bash_client, f"echo {n}"))
        await outputs(bash_client, ids[-1])
    commands = (await bash_client.get(SEARCH, params={"kind__eq": "BashCommand"})).json()
    assert [c["id"] for c in commands["items"]] == ids[1:]
    gone = await bash_client.get(SEARCH, params={"command_id__eq": ids[0]})
    assert gone.json()["items"] == []
    assert (await bash_client.post(f"/api/bash/bash_commands/{ids[0]}/stop")).status_code == 404


async def test_the_output_kept_per_command_is_its_newest_part(
    bash_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bash, "MAX_OUTPUT_CHARS", 1000)
    monkeypatch.setattr(bash, "READ_BYTES", 100)
    command = "for i in $(seq 1 500); do printf '%04d\\n' $i; done"
    command_id = await start(bash_client, command)
    await outputs(bash_client, command_id)
    kept = (await bash_client.get(SEARCH, params={"command_id__eq": command_id})).json()["items"]
    text = "".join(e["stdout"] or "" for e in kept)
    assert 900 <= len(text) <= 1000
    assert text.endswith("0499\n0500\n")
    assert kept[0]["order"] > 0 and kept[-1]["exit_code"] == 0


async def test_bash_routes_are_403_when_the_terminal_is_disabled(
    client: httpx.AsyncClient,
) -> None:
    """The session app: AGENT_SERVER_ENABLE_TERMINAL is off by default."""
    requests = [
        client.post("/api/bash/start_bash_command", json={"command": "touch /tmp/x"}),
        client.post("/api/bash/start_bash_command", json={"bad": "body"}),
        client.get(SEARCH),
        client.post(f"/api/bash/bash_commands/{uuid.uuid4()}/stop"),
    ]
    for response in await asyncio.gather(*requests):
        assert response.status_code == 403, response.text
        assert response.json()["code"] == "forbidden"
        assert "AGENT_SERVER_ENABLE_TERMINAL" in response.json()["message"]


async def test_the_routes_need_the_api_key(db: Database, root: Path) -> None:
    async with workspace_client(db, root, enable_terminal=True, session_api_keys="k1") as client:
        for response in (
            await client.post("/api/bash/start_bash_command", json={"command": "true"}),
            await client.get(SEARCH),
            await client.get("/api/file/download", params={"path": "/x"}),
            await client.post(
                "/api/file/upload",
                params={"path": "/x"},
                files={"file": ("x", b"x", "application/octet-stream")},
            ),
        ):
            assert response.status_code == 401, response.text
        allowed = await client.get(SEARCH, headers={"X-Session-API-Key": "k1"})
        assert allowed.status_code == 200


async def test_a_stopped_server_leaves_no_command_behind(db: Database, root: Path) -> None:
    async with workspace_client(db, root, enable_terminal=True) as client:
        command_id = await start(client, "sleep 60 & echo $! $$; wait")
        items = await first_outputs(client, command_id)
        pids = [int(p) for p in items[0]["stdout"].split()]
    # The lifespan has ended: the shell and its background child are gone.
    for pid in pids:
        assert await wait_gone(pid)

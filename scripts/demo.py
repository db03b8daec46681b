"""A first look at the agent server: one conversation, one run, against a fake LLM.

Usage:

    .venv/bin/python scripts/demo.py

The script starts two processes of its own on 127.0.0.1 and stops them (by PID) at the end:

- the fake OpenAI-compatible LLM of the tests (`python -m tests.fakellm --port 0`), scripted
  with a short exchange: think, create a file with `file_editor`, then `finish`;
- the real server (`python -m app.cli serve`) on a free port, with a throw-away SQLite
  database and workspace in a temporary directory (deleted at the end).

Through the REST API it creates a conversation with a first user message, starts a run
(`POST /api/conversations/{id}/run`), polls `GET /api/runs/{run_id}` until the run ends,
then prints the conversation's events, the run and the conversation's stats. It exits 0 when
the run completed, 1 otherwise (with the tail of the server's log).
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # so `tests` imports when run as `python scripts/...`

from tests.procs import free_port, start_fake_llm, start_server, stop, wait_ready  # noqa: E402

MODEL = "openai/fake-model"
TASK = "Write a short note about this server to notes/hello.md, then tell me you are done."
SCRIPT = [
    {
        "text": "I will plan first.",
        "tool_calls": [
            {"name": "think", "arguments": {"thought": "Create notes/hello.md, then finish."}}
        ],
    },
    {
        "tool_calls": [
            {
                "name": "file_editor",
                "arguments": {
                    "command": "create",
                    "path": "notes/hello.md",
                    "file_text": "# Hello\n\nEvery event of this conversation is a SQL row.\n",
                },
            }
        ]
    },
    {"tool_calls": [{"name": "finish", "arguments": {"message": "Wrote notes/hello.md."}}]},
]
ENDED = {"completed", "failed", "cancelled", "interrupted"}


def call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    response = client.request(method, path, **kwargs)
    if response.status_code >= 300:
        raise RuntimeError(f"{method} {path} answered {response.status_code}: {response.text}")
    return response.json()


def text_of(content: Any) -> str:
    if isinstance(content, dict):
        content = [content]
    if not isinstance(content, list):
        return ""
    return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))


def summary(event: dict[str, Any]) -> str:
    """One line about an event, whatever its kind."""
    kind = event["kind"]
    if kind == "MessageEvent":
        message = event["llm_message"]
        line = f"{message['role']}: {text_of(message.get('content'))}"
    elif kind == "SystemPromptEvent":
        tools = ", ".join(str(t.get("title", "?")) for t in event.get("tools", []))
        line = f"{text_of(event['system_prompt'])}  [tools: {tools}]"
    elif kind == "ActionEvent":
        thought = text_of(event.get("thought"))
        line = f"{event['tool_name']}({event['tool_call']['arguments']})"
        line = f"{line}  thought: {thought}" if thought else line
    elif kind == "ObservationEvent":
        line = f"{event['tool_name']} -> {text_of(event['observation'].get('content'))}"
    elif kind == "AgentErrorEvent":
        line = f"error from {event.get('tool_name')}: {event['error']}"
    elif kind == "ConversationErrorEvent":
        line = f"{event['code']}: {event['detail']}"
    elif kind == "ConversationStateUpdateEvent":
        line = f"{event['key']} = {json.dumps(event.get('value'))}"
    else:
        line = json.dumps({k: v for k, v in event.items() if k not in ("id", "timestamp")})
    line = " ".join(line.split())
    return line if len(line) <= 100 else line[:97] + "..."


def events_of(client: httpx.Client, conversation_id: str) -> list[dict[str, Any]]:
    path = f"/api/conversations/{conversation_id}/events/search"
    params: dict[str, Any] = {"limit": 100, "with_seq": "true"}  # seq is opt-in
    items: list[dict[str, Any]] = []
    for _ in range(100):  # bounded: at most 10,000 events
        page = call(client, "GET", path, params=params)
        items += page["items"]
        if page["next_page_id"] is None:
            break
        params = {**params, "page_id": page["next_page_id"]}
    return items


def demo(tmp: Path, llm_url: str, client: httpx.Client) -> bool:
    httpx.post(f"{llm_url}/_reset", timeout=5).raise_for_status()
    httpx.post(f"{llm_url}/_script", json={"replies": SCRIPT}, timeout=5).raise_for_status()

    llm = {"model": MODEL, "base_url": f"{llm_url}/v1", "api_key": "fake-key"}
    agent = {"kind": "LLMAgent", "llm": llm}  # the async agent; "SyncLLMAgent" is sync-only
    body = {
        "title": "demo",
        "tags": {"source": "scripts/demo.py"},
        "agent": agent,
        "initial_message": {"role": "user", "content": [{"type": "text", "text": TASK}]},
    }
    conversation = call(client, "POST", "/api/conversations", json=body)
    cid = conversation["id"]
    print(f"\nPOST /api/conversations -> {cid} ({conversation['execution_status']})")
    run = call(client, "POST", f"/api/conversations/{cid}/run")
    print(f"POST /api/conversations/{cid}/run -> run {run['id']} ({run['status']})")

    started = time.monotonic()
    while run["status"] not in ENDED and time.monotonic() - started < 30:
        time.sleep(0.05)
        run = call(client, "GET", f"/api/runs/{run['id']}")
    print(f"GET /api/runs/{run['id']} -> {run['status']} after {time.monotonic() - started:.2f} s")

    events = events_of(client, cid)
    print(f"\nevents ({len(events)}):")
    print(f"{'seq':>4}  {'kind':<28}  {'source':<11}  summary")
    for event in events:
        print(f"{event['seq']:>4}  {event['kind']:<28}  {event['source']:<11}  {summary(event)}")

    print("\nrun:")
    for key, value in run.items():
        print(f"  {key:<20} {value}")
    conversation = call(client, "GET", f"/api/conversations/{cid}")
    print(f"\nconversation: status {conversation['execution_status']}, "
          f"version {conversation['version']}, last_seq {conversation['last_seq']}")  # fmt: skip
    print("stats:")
    for key, value in conversation["stats"].items():
        print(f"  {key:<20} {value}")
    note = tmp / "workspaces" / cid / "notes" / "hello.md"
    if note.exists():
        print(f"\nthe agent's file, {note.relative_to(tmp)}:")
        print("\n".join(f"  {line}".rstrip() for line in note.read_text().splitlines()))
    return bool(run["status"] == "completed")


def main() -> int:
    llm: subprocess.Popen[str] | None = None
    server: subprocess.Popen[bytes] | None = None
    ok = False
    with tempfile.TemporaryDirectory(prefix="agent-server-demo-") as tmp_name:
        tmp = Path(tmp_name)
        server_log = tmp / "server.log"
        try:
            with (tmp / "fakellm.log").open("w") as llm_log:
                llm, llm_url = start_fake_llm(stderr=llm_log)
            port = free_port()
            env = {
                "AGENT_SERVER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'demo.db'}",
                "AGENT_SERVER_WORKSPACE_ROOT": str(tmp / "workspaces"),
                "AGENT_SERVER_LOG_LEVEL": "WARNING",
                "AGENT_SERVER_SESSION_API_KEYS": None,  # the demo sends no key
            }
            with server_log.open("wb") as out:
                server = start_server(port, env, stdout=out, stderr=subprocess.STDOUT)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                wait_ready(f"http://127.0.0.1:{port}", server, 60)
                print(f"fake LLM on {llm_url} (pid {llm.pid}); "
                      f"server on http://127.0.0.1:{port} (pid {server.pid}); "
                      f"database and workspace in {tmp}")  # fmt: skip
                ok = demo(tmp, llm_url, client)
        except (RuntimeError, httpx.HTTPError) as exc:
            print(f"\ndemo failed: {exc}", file=sys.stderr)
        finally:
            stop(server)
            stop(llm)
            log = server_log.read_text(errors="replace") if server_log.exists() else ""
            if not ok and log.strip():
                print("\nserver log (last 40 lines):", file=sys.stderr)
                print("\n".join(log.splitlines()[-40:]), file=sys.stderr)
    print(f"\n{'OK: the run completed' if ok else 'FAILED: the run did not complete'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

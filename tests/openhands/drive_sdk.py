"""Drive this server with the unchanged OpenHands SDK client; run by the SDK venv's interpreter.

    $OPENHANDS_SDK_PYTHON -I tests/openhands/drive_sdk.py SERVER_URL FAKE_LLM_URL WORK_DIR

Every step is what an OpenHands user's script does (`Conversation(agent=Agent(...),
workspace=RemoteWorkspace(...))`, send, run, pause, secrets, confirmation, fork, the
workspace's commands and files, close). Each prints one JSON line: {"step", "ok", "detail",
"seconds"}; a failed step does not stop the others unless they depend on it. The script
scripts the fake LLM itself (POST /_script) before each run. It imports only the SDK and
httpx (never this project). Exit status 0 when every step passed.
"""

import json
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

SERVER, FAKE_LLM, WORK = sys.argv[1], sys.argv[2], Path(sys.argv[3])
RUN_LIMIT = 5.0  # seconds: the SDK's 30 s fallback must never be what ends a run
SECRET = "tok-" + uuid.uuid4().hex
results: list[dict[str, Any]] = []


def step(name: str) -> Callable[[Callable[[], Any]], Any]:
    def run(fn: Callable[[], Any]) -> Any:
        started = time.monotonic()
        try:
            detail = fn()
            ok = True
        except Exception as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-2000:]}"
        line = {
            "step": name,
            "ok": ok,
            "detail": detail,
            "seconds": round(time.monotonic() - started, 3),
        }
        results.append(line)
        print(json.dumps(line, default=str), flush=True)
        return detail if ok else None

    return run


def script(*replies: dict[str, Any]) -> None:
    httpx.post(f"{FAKE_LLM}/_script", json={"replies": list(replies)}).raise_for_status()


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


def finish(message: str) -> dict[str, Any]:
    return call("finish", message=message)


def eventually(check: Callable[[], bool], limit: float = 3.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, "not within 3 s"
        time.sleep(0.02)


def timed_run(conversation: Any) -> float:
    started = time.monotonic()
    conversation.run(timeout=60)
    took = time.monotonic() - started
    assert took < RUN_LIMIT, f"run() took {took:.1f} s (the client's fallback poll ended it?)"
    return took


def stored_ids(conversation: Any) -> list[str]:
    """The ids of the events the client holds, without the snapshots the WebSocket sends on
    subscribe (they are not stored)."""
    conversation.state.events.reconcile()
    return [e.id for e in conversation.state.events if getattr(e, "key", None) != "full_state"]


def kinds(conversation: Any) -> list[str]:
    return [type(event).__name__ for event in conversation.state.events]


def main() -> int:
    import openhands.tools.file_editor
    import openhands.tools.terminal  # noqa: F401  (registers TerminalTool)
    from openhands.sdk import LLM, Agent, Conversation, Tool
    from openhands.sdk.conversation.state import ConversationExecutionStatus as Status
    from openhands.sdk.event import ActionEvent, ObservationEvent, UserRejectObservation
    from openhands.sdk.security.confirmation_policy import AlwaysConfirm, NeverConfirm
    from openhands.sdk.workspace import RemoteWorkspace
    from pydantic import SecretStr

    agent = Agent(
        llm=LLM(
            model="openai/fake",
            api_key=SecretStr("sk-client-key"),
            base_url=f"{FAKE_LLM}/v1",
            usage_id="agent",
        ),
        tools=[Tool(name="TerminalTool"), Tool(name="FileEditorTool")],
    )
    workspace = RemoteWorkspace(host=SERVER, working_dir="/project")
    state: dict[str, Any] = {}

    @step("create")
    def _create() -> str:
        conversation = Conversation(agent=agent, workspace=workspace, delete_on_close=True)
        state["conversation"] = conversation
        assert conversation.state.execution_status == Status.IDLE
        return str(conversation.id)

    conversation = state.get("conversation")
    if conversation is None:
        return 1

    @step("attach by id")
    def _attach() -> str:
        attached = Conversation(
            agent=agent,
            workspace=workspace,
            conversation_id=conversation.id,
            delete_on_close=False,
        )
        assert attached.id == conversation.id
        assert type(attached.state.agent).__name__ == "Agent"
        assert attached.state.agent.llm.model == "openai/fake"
        raw = httpx.get(f"{SERVER}/api/conversations/{conversation.id}").json()
        assert raw["agent"]["llm"]["api_key"] == "**********", raw["agent"]["llm"]
        assert isinstance(attached.state.confirmation_policy, NeverConfirm)
        assert attached.state.workspace["working_dir"] == "/project"
        state["attached"] = attached
        return str(attached.state.execution_status.value)

    @step("send and run to completion")
    def _run() -> dict[str, Any]:
        script(
            {
                "text": "Let me think.",
                "tool_calls": [{"name": "think", "arguments": {"thought": "ok"}}],
            },
            finish("All done."),
        )
        conversation.send_message("Say hello.")
        took = timed_run(conversation)
        assert conversation.state.execution_status == Status.FINISHED, (
            conversation.state.execution_status
        )
        seen = kinds(conversation)
        for kind in ("SystemPromptEvent", "MessageEvent", "ActionEvent", "ObservationEvent"):
            assert kind in seen, seen
        return {"seconds": round(took, 3), "events": len(seen)}

    @step("state.events all valid, in order, same through REST")
    def _events() -> int:
        conversation.state.events.reconcile()
        events = list(conversation.state.events)
        stamps = [event.timestamp for event in events]
        assert stamps == sorted(stamps), stamps
        ids = [event.id for event in events]
        assert len(ids) == len(set(ids)), ids
        page = httpx.get(
            f"{SERVER}/api/conversations/{conversation.id}/events/search", params={"limit": 100}
        ).json()
        # The client also keeps the snapshot the WebSocket sends on subscribe (not stored).
        stored = {item["id"] for item in page["items"]}
        extra = [e for e in events if e.id not in stored]
        assert all(getattr(e, "key", None) == "full_state" for e in extra), extra
        assert [item["id"] for item in page["items"]] == [e.id for e in events if e.id in stored]
        return len(events)

    @step("the attached client saw the run")
    def _attached_saw() -> int:
        attached = state["attached"]
        attached.state.events.reconcile()
        theirs = [e.id for e in attached.state.events if getattr(e, "key", None) != "full_state"]
        ours = [e.id for e in conversation.state.events if getattr(e, "key", None) != "full_state"]
        assert theirs == ours, (theirs, ours)
        return len(attached.state.events)

    @step("pause and interrupt without a run")
    def _pause() -> str:
        conversation.pause()
        conversation.interrupt()
        return conversation.state.execution_status.value

    @step("secrets reach the terminal, masked")
    def _secrets() -> str:
        conversation.update_secrets({"MY_TOKEN": SECRET})
        script(call("terminal", command="echo token=$MY_TOKEN"), finish("Echoed."))
        conversation.send_message("Echo the token.")
        timed_run(conversation)
        outputs = [
            e.observation
            for e in conversation.state.events
            if isinstance(e, ObservationEvent) and e.tool_name == "terminal"
        ]
        assert outputs, kinds(conversation)
        text = str(outputs[-1].to_llm_content)
        assert "token=<secret-hidden>" in text and SECRET not in text, text
        info = httpx.get(f"{SERVER}/api/conversations/{conversation.id}").text
        assert SECRET not in info
        return text[:200]

    @step("confirmation: AlwaysConfirm waits, run() accepts")
    def _confirm_accept() -> str:
        conversation.set_confirmation_policy(AlwaysConfirm())
        # The client learns it from the state update the WebSocket brings.
        eventually(lambda: isinstance(conversation.state.confirmation_policy, AlwaysConfirm))
        script(
            call("file_editor", command="create", path="accepted.txt", file_text="yes"),
            finish("Made it."),
        )
        conversation.send_message("Create accepted.txt.")
        timed_run(conversation)
        status = conversation.state.execution_status
        assert status == Status.WAITING_FOR_CONFIRMATION, status
        pending = [e for e in conversation.state.events if isinstance(e, ActionEvent)][-1]
        assert pending.tool_name == "file_editor"
        timed_run(conversation)  # running again accepts the pending action
        observed = [
            e
            for e in conversation.state.events
            if isinstance(e, ObservationEvent) and e.action_id == pending.id
        ]
        assert observed, kinds(conversation)
        status = conversation.state.execution_status
        assert status == Status.FINISHED, status  # a lone finish needs no confirmation
        return status.value

    @step("confirmation: reject records a rejection")
    def _confirm_reject() -> str:
        script(call("terminal", command="echo no > rejected.txt"), finish("Fine."))
        conversation.send_message("Write rejected.txt.")
        timed_run(conversation)
        assert conversation.state.execution_status == Status.WAITING_FOR_CONFIRMATION
        conversation.reject_pending_actions("not that")
        conversation.state.events.reconcile()
        rejected = [e for e in conversation.state.events if isinstance(e, UserRejectObservation)]
        assert rejected and rejected[-1].rejection_reason == "not that", kinds(conversation)
        conversation.set_confirmation_policy(NeverConfirm())
        return conversation.state.execution_status.value

    @step("fork")
    def _fork() -> str:
        fork = conversation.fork(title="forked")
        try:
            assert fork.id != conversation.id
            assert stored_ids(fork) == stored_ids(conversation), (
                stored_ids(fork),
                stored_ids(conversation),
            )
            script(finish("Fork done."))
            fork.send_message("Go on in the fork.")
            timed_run(fork)
            assert len(fork.state.events) > len(conversation.state.events)
        finally:
            fork.delete_on_close = True
            fork.close()
        return str(fork.id)

    @step("server_info")
    def _server_info() -> dict[str, Any]:
        info = httpx.get(f"{SERVER}/server_info")
        info.raise_for_status()
        return info.json()

    @step("execute_command")
    def _execute() -> str:
        result = workspace.execute_command("echo hello-from-bash && pwd", cwd="/project")
        assert result.exit_code == 0, result
        assert "hello-from-bash" in result.stdout, result
        return result.stdout.strip()

    @step("file upload and download")
    def _files() -> int:
        source = WORK / "upload.bin"
        data = bytes(range(256)) * 64
        source.write_bytes(data)
        up = workspace.file_upload(source, "/project/uploaded.bin")
        assert up.success, up
        back = WORK / "download.bin"
        down = workspace.file_download("/project/uploaded.bin", back)
        assert down.success, down
        assert back.read_bytes() == data
        return len(data)

    @step("the agent's files are in the workspace")
    def _agent_files() -> str:
        back = WORK / "accepted.txt"
        down = workspace.file_download("/project/accepted.txt", back)
        assert down.success, down
        assert back.read_text() == "yes"
        return "accepted.txt"

    @step("delete on close")
    def _delete() -> int:
        state["attached"].close()
        conversation.close()
        gone = httpx.get(f"{SERVER}/api/conversations/{conversation.id}")
        assert gone.status_code == 404, gone.status_code
        return gone.status_code

    return 0 if all(line["ok"] for line in results) else 1


if __name__ == "__main__":
    sys.exit(main())

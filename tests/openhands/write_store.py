"""Write an OpenHands agent-server store with the SDK's own persistence; run by the SDK venv.

    $OPENHANDS_SDK_PYTHON -I tests/openhands/write_store.py OUT_DIR

OUT_DIR plays the agent-server's `workspace` dir: OUT_DIR/conversations is its
`conversations_path` (what `agent-server import openhands` reads), OUT_DIR/project the working
directory. Each conversation is what openhands-agent-server 1.58.2 leaves in `<id.hex>/`:
base_state.json saved by the SDK's own `ConversationState` (on every field change; the LLM key
Fernet-encrypted under OH_SECRET_KEY, or "**********" without one), events appended through
its own `EventLog` (`events/event-NNNNN-<event id>.json`, lock and length-marker sidecars),
field changes logged by the state-change callback as the server wires it, and meta.json (the
server's `StoredConversation`). No LLM is called: events are built from the SDK's classes.

Healthy conversations of ~5, ~40, ~200 events (finished; waiting for confirmation; paused,
no cipher) and one a crash left `running` with its lease and four broken event files
(missing, truncated, invalid JSON, unknown kind). Prints a JSON manifest (`main`).
"""

import json
import os
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENHANDS_SUPPRESS_BANNER", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at import

import openhands.sdk
from openhands.sdk import LLM, Agent, ConversationExecutionStatus, LocalWorkspace, Tool
from openhands.sdk import event as ev
from openhands.sdk.conversation.persistence_const import EVENT_FILE_PATTERN, EVENT_NAME_RE
from openhands.sdk.conversation.request import ConversationConfig, SendMessageRequest
from openhands.sdk.conversation.state import ConversationState
from openhands.sdk.event.error_classification import AGENT_OUTCOME
from openhands.sdk.llm import Message, MessageToolCall, TextContent
from openhands.sdk.llm.utils.metrics import Metrics, MetricsSnapshot
from openhands.sdk.profiles.agent_profile import LaunchedAgentProfile
from openhands.sdk.secret import StaticSecret
from openhands.sdk.security.confirmation_policy import AlwaysConfirm, NeverConfirm
from openhands.sdk.tool import ToolExecutor, builtins
from openhands.sdk.tool.registry import get_tool_module_qualnames
from openhands.sdk.utils import OpenHandsUUID, utc_now
from openhands.sdk.utils.cipher import Cipher
from openhands.sdk.utils.files import atomic_write_text
from openhands.tools.file_editor import FileEditorAction, FileEditorObservation, FileEditorTool
from openhands.tools.task_tracker import TaskTrackerTool
from openhands.tools.terminal import TerminalAction, TerminalObservation, TerminalTool
from pydantic import Field, SecretStr

SECRET_KEY = "import-test-oh-secret-key"  # the emulated server's OH_SECRET_KEY
API_KEY = "sk-import-test-key"
GITHUB_TOKEN = "ghp-import-test-token"


class StoredConversation(ConversationConfig):
    """meta.json: openhands-agent-server 1.58.2's StoredConversation, field for field (that
    package is not in the SDK venv; its model reads and writes these files identically)."""

    required_runtime_credential_bindings: set[str] = Field(default_factory=set)
    id: OpenHandsUUID
    title: str | None = None
    metrics: MetricsSnapshot | None = None
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)
    forked_from_conversation_id: OpenHandsUUID | None = None
    forked_from_event_id: str | None = None
    launched_agent_profile: LaunchedAgentProfile | None = None


class NoExecutor(ToolExecutor):  # type: ignore[misc]  # the terminal's, without a shell
    def __call__(self, action: Any, conversation: Any = None) -> Any:
        raise RuntimeError("no tool runs here")


class Writer:
    """One conversation, written the way the agent-server's EventService drives the SDK."""

    def __init__(self, root: Path, spec: dict[str, Any]) -> None:
        self.spec, self.calls, self.turns = spec, 0, 0
        self.written: list[tuple[int, str, str]] = []  # (index, event id, kind) appended
        self.id = uuid.uuid4()
        self.dir = root / "conversations" / self.id.hex
        self.cipher = Cipher(SECRET_KEY) if spec["cipher"] else None
        llm = LLM(model=spec["model"], api_key=SecretStr(API_KEY), usage_id="agent")
        tools = [Tool(name=n) for n in ("TerminalTool", "FileEditorTool", "TaskTrackerTool")]
        workspace = LocalWorkspace(working_dir=str(root / "project"))
        secrets = {n: StaticSecret(value=SecretStr(v)) for n, v in spec["secrets"].items()}
        self.stored = StoredConversation(  # what the SDK client's create request leaves
            id=self.id,
            workspace=workspace,
            confirmation_policy=spec["policy"],
            secrets=secrets,
            tool_module_qualnames=get_tool_module_qualnames(),
            tags=spec["tags"],
            initial_message=spec.get("initial_message"),
        )
        # EventService.start -> LocalConversation -> ConversationState.create
        self.state = ConversationState.create(
            id=self.id,
            agent=Agent(llm=llm, tools=tools),
            workspace=workspace,
            persistence_dir=str(self.dir),
            cipher=self.cipher,
            tags=spec["tags"],
        )
        if secrets:
            self.state.secret_registry.update_secrets(secrets)
        self.state.confirmation_policy = spec["policy"]
        # the server's state-change callback: each changed field becomes an event in the log
        self.state.set_on_state_change(self.emit)
        (self.dir / ".owner_lease.lock").touch()  # ConversationLease's FileLock
        self.save_meta()  # right after a successful start
        self.init_state()

    def save_meta(self, **update: Any) -> None:
        self.stored = self.stored.model_copy(update={"updated_at": utc_now(), **update})
        text = self.stored.model_dump_json(context={"cipher": self.cipher})
        atomic_write_text(self.dir / "meta.json", text)

    def emit(self, event: Any) -> Any:
        self.written.append((self.state.append_event(event), event.id, type(event).__name__))
        return event

    def status(self, value: str) -> None:
        self.state.execution_status = ConversationExecutionStatus(value)

    def init_state(self) -> None:
        """Agent.init_state: the system prompt and the tools' definitions."""
        state, agent = self.state, self.state.agent
        tools = [
            *TerminalTool.create(state, executor=NoExecutor()),
            *FileEditorTool.create(state),
            *TaskTrackerTool.create(state),
            *builtins.FinishTool.create(state),
            *builtins.ThinkTool.create(state),
        ]
        dynamic = agent.get_dynamic_context(state)
        self.emit(
            ev.SystemPromptEvent(
                system_prompt=TextContent(text=agent.static_system_message),
                tools=tools,
                dynamic_context=TextContent(text=dynamic) if dynamic else None,
            )
        )

    def user(self, text: str) -> None:
        """LocalConversation.send_message."""
        if self.state.execution_status in ("finished", "stuck"):
            self.status("idle")
        msg = Message(role="user", content=[TextContent(text=text)])
        self.state.last_user_message_id = self.emit(
            ev.MessageEvent(source="user", llm_message=msg)
        ).id

    def llm_call(self) -> str:
        """One LLM response: the metrics it adds, and the stats update the server streams."""
        self.calls += 1
        response_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        usage = self.state.stats.usage_to_metrics
        metrics = usage.setdefault("agent", Metrics(model_name=self.spec["model"]))
        metrics.add_cost(0.0012 * self.calls)
        metrics.add_response_latency(0.8, response_id)
        metrics.add_token_usage(1200 + 150 * self.calls, 90, 1000, 0, 128000, response_id)
        self.emit(ev.ConversationStateUpdateEvent(key="stats", value=self.state.stats))
        return response_id

    def act(self, tool: str, action: Any, thought: str = "", args: str = "") -> Any:
        call_id = f"call_{uuid.uuid4().hex[:24]}"
        args = args or json.dumps(
            action.model_dump(mode="json", exclude={"kind"}, exclude_defaults=True)
        )
        call = MessageToolCall(id=call_id, name=tool, arguments=args, origin="completion")
        return self.emit(
            ev.ActionEvent(
                thought=[TextContent(text=thought)] if thought else [],
                action=action,
                tool_name=tool,
                tool_call_id=call_id,
                tool_call=call,
                llm_response_id=self.llm_call(),
            )
        )

    def observe(self, action: Any, observation: Any) -> None:
        ids = {"tool_name": action.tool_name, "tool_call_id": action.tool_call_id}
        self.emit(ev.ObservationEvent(observation=observation, action_id=action.id, **ids))

    def terminal(self, command: str, output: str) -> None:
        action = self.act("terminal", TerminalAction(command=command), f"Run `{command}`.")
        self.observe(action, TerminalObservation.from_text(output, command=command, exit_code=0))

    def think(self, thought: str) -> None:
        action = self.act("think", builtins.ThinkAction(thought=thought))
        self.observe(action, builtins.ThinkObservation.from_text("Your thought has been logged."))

    def edit(self, path: str, text: str) -> None:
        action = self.act(
            "file_editor", FileEditorAction(command="create", path=path, file_text=text)
        )
        done = f"File created successfully at: {path}"
        kw = {"command": "create", "path": path, "new_content": text}
        self.observe(action, FileEditorObservation.from_text(done, **kw))

    def finish(self, message: str) -> None:
        action = self.act("finish", builtins.FinishAction(message=message))
        self.observe(action, builtins.FinishObservation.from_text(message))
        self.status("finished")

    def reply(self, text: str) -> None:
        response_id = self.llm_call()
        msg = Message(role="assistant", content=[TextContent(text=text)])
        self.emit(ev.MessageEvent(source="agent", llm_message=msg, llm_response_id=response_id))
        self.status("finished")

    def agent_error(self, error: str) -> None:
        """Arguments the tool refuses: an ActionEvent without action, then the error."""
        action = self.act("terminal", None, args='{"cmd": "ls"}')
        ids = {"tool_name": "terminal", "tool_call_id": action.tool_call_id}
        self.emit(ev.AgentErrorEvent(error=error, classification=AGENT_OUTCOME, **ids))

    def reject(self, action: Any, reason: str) -> None:
        ids = {"tool_name": action.tool_name, "tool_call_id": action.tool_call_id}
        self.emit(ev.UserRejectObservation(action_id=action.id, rejection_reason=reason, **ids))

    def condense(self) -> None:
        users = [i for i, _, kind in self.written if kind == "MessageEvent"][:2]
        forgotten = {eid for i, eid, _ in self.written if users[0] <= i < users[1]}  # turn 1
        summary = "The user asked for a repository survey; files were listed and read."
        self.emit(
            ev.Condensation(
                forgotten_event_ids=forgotten,
                summary=summary,
                summary_offset=2,
                llm_response_id=self.llm_call(),
            )
        )


def work(w: Writer, turns: int) -> None:
    """`turns` rounds of a user asking and the agent running terminal commands."""
    for _ in range(turns):
        n = w.turns = w.turns + 1
        w.user(f"Step {n}: check the test suite and fix what fails.")
        w.status("running")
        w.terminal(f"pytest -q tests/test_{n}.py", f"{n % 3} failed, {40 + n} passed in 1.2s")
        if n % 4 == 1:
            w.think(f"Test {n} fails on an off-by-one in the pager; fix it there.")
        if n % 5 == 2:
            w.edit(f"/workspace/project/fix_{n}.py", f"LIMIT = {n}\n")
        if n % 7 == 3:
            w.agent_error('Error validating args {"cmd": "ls"}: missing command')
        w.finish(f"Step {n} done: {n % 3} failures fixed.")


def write_small(root: Path) -> Writer:
    w = Writer(root, spec("openai/gpt-4o-mini", "List the files", {"team": "alpha"}))
    w.user("What is in this repository?")
    w.status("running")
    w.reply("A Python package with a README and a tests directory.")
    w.save_meta(title=w.spec["title"])  # the auto-title
    return w


def write_medium(root: Path) -> Writer:
    first = "Clean up the build directory."
    more = {"policy": AlwaysConfirm(), "secrets": {"GITHUB_TOKEN": GITHUB_TOKEN}}
    more["initial_message"] = SendMessageRequest(content=[TextContent(text=first)])
    tags = {"team": "beta", "ticket": "ops-42"}
    w = Writer(
        root, spec("anthropic/claude-sonnet-4-5-20250929", "Clean up the build", tags, **more)
    )
    w.user(first)
    w.status("running")
    risky = w.act("terminal", TerminalAction(command="rm -rf build/"), "Delete build/.")
    w.status("waiting_for_confirmation")
    w.reject(risky, "Do not delete anything yet.")
    w.status("idle")
    w.save_meta(title=w.spec["title"])
    work(w, 2)
    w.user("Now remove only build/tmp.")
    w.status("running")
    w.act("terminal", TerminalAction(command="rm -rf build/tmp"), "Delete build/tmp.")
    w.status("waiting_for_confirmation")  # the pending action: no observation
    return w


def write_large(root: Path) -> Writer:
    w = Writer(
        root,
        spec("litellm_proxy/qwen3-coder-480b", "Fix the flaky tests", {"team": "gamma"}, False),
    )
    w.save_meta(title=w.spec["title"])
    work(w, 3)
    w.condense()
    while len(w.state.events) < 195:
        work(w, 1)
    w.user("Stop for now.")
    w.status("running")
    w.emit(ev.PauseEvent())
    w.status("paused")
    return w


def write_damaged(root: Path) -> tuple[Writer, list[dict[str, Any]]]:
    """A server that died mid-run: `running`, its lease left, four event files broken."""
    w = Writer(root, spec("openai/gpt-4.1", "Crashed run", {"team": "delta"}))
    work(w, 2)
    w.save_meta(title=w.spec["title"])
    w.user("Keep going.")
    w.status("running")
    w.terminal("make build", "gcc -O2 -c main.c")
    w.act("terminal", TerminalAction(command="make test"), "Run the tests.")  # cut off here
    lease = {"owner_instance_id": uuid.uuid4().hex, "generation": 1, "expires_at": time.time()}
    lease |= {"owner_host": "agent-server-0", "owner_pid": 7}
    (w.dir / "owner_lease.json").write_text(json.dumps(lease))  # never released
    damage, idx = [], 4
    for how, kind in (
        ("missing", "ActionEvent"),
        ("truncated", "ObservationEvent"),
        ("invalid_json", "MessageEvent"),
        ("unknown_kind", "ObservationEvent"),
    ):
        idx, eid, _ = next(e for e in w.written[idx + 2 :] if e[2] == kind)
        path = w.dir / "events" / EVENT_FILE_PATTERN.format(idx=idx, event_id=eid)
        text = path.read_text()
        if how == "missing":
            path.unlink()
        elif how == "truncated":
            path.write_text(text[: len(text) // 2])
        elif how == "invalid_json":
            path.write_text(text.replace('"', "'", 6))
        else:  # what a newer SDK might write: the Event fields, a new kind, its own fields
            new = {k: json.loads(text)[k] for k in ("id", "timestamp", "parent_id")}
            new |= {"source": "environment", "kind": "SomethingNew", "detail": {"gauge": 3}}
            path.write_text(json.dumps(new, separators=(",", ":")))
        damage.append({"index": idx, "id": eid, "kind_written": kind, "damage": how})
    return w, damage


def spec(model: str, title: str, tags: dict[str, str], cipher: bool = True, **more: Any) -> dict:
    more = {"policy": NeverConfirm(), "secrets": {}, **more}
    return {"model": model, "title": title, "tags": tags, "cipher": cipher, **more}


def manifest_entry(w: Writer, damage: list[dict[str, Any]]) -> dict[str, Any]:
    """What the import must find: the conversation's settings and each event the SDK wrote."""
    base = json.loads((w.dir / "base_state.json").read_text())
    meta = json.loads((w.dir / "meta.json").read_text())
    names = [p.name for p in (w.dir / "events").iterdir()]
    key = base["agent"]["llm"]["api_key"]
    if not damage:  # the SDK's own naming, checked against what was appended
        on_disk = sorted(m.groups() for n in names if (m := EVENT_NAME_RE.match(n)))
        assert on_disk == [(f"{i:05d}", e) for i, e, _ in w.written], w.dir
    return {
        "id": str(w.id),
        "dir": w.id.hex,
        "title": meta["title"],
        "tags": meta["tags"],
        "created_at": meta["created_at"],
        "updated_at": meta["updated_at"],
        "llm_model": base["agent"]["llm"]["model"],
        "api_key_stored": "redacted" if key == "**********" else "encrypted",
        "execution_status": base["execution_status"],
        "confirmation_policy": base["confirmation_policy"]["kind"],
        "secrets": sorted(meta["secrets"]),
        "leaf_event_id": base.get("leaf_event_id"),
        "length_marker": [n for n in names if n.startswith(".eventlog-len-")],
        "events": [list(e) for e in w.written],
        "damaged": damage,
        "files": sorted(str(p.relative_to(w.dir)) for p in w.dir.rglob("*") if p.is_file()),
    }


def main() -> None:
    out, sys.stdout = sys.stdout, sys.stderr  # what the SDK prints must not mix with ours
    root = Path(sys.argv[1]).resolve()
    (root / "project").mkdir(parents=True, exist_ok=True)
    healthy = [write_small(root), write_medium(root), write_large(root)]
    damaged, damage = write_damaged(root)
    for w in healthy:  # EventService.close: the final meta.json save
        w.save_meta()
    conversations = {w.id.hex: manifest_entry(w, []) for w in healthy}
    conversations[damaged.id.hex] = manifest_entry(damaged, damage)
    manifest = {
        "conversations_dir": str(root / "conversations"),
        "sdk_version": openhands.sdk.__version__,
        "oh_secret_key": SECRET_KEY,
        "api_key": API_KEY,
        "secret_values": {"GITHUB_TOKEN": GITHUB_TOKEN},
        "conversations": conversations,
    }
    out.write(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()

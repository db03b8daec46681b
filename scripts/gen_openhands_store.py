"""Write a large OpenHands agent-server store quickly, for benchmarking `agent-server import`.

    .venv/bin/python scripts/gen_openhands_store.py OUT_DIR --conversations N --events M
    .venv/bin/python scripts/gen_openhands_store.py --make-templates STORE_DIR

Writes OUT_DIR/conversations/<id.hex>/ exactly as tests/openhands/write_store.py (and so
openhands-agent-server 1.58.2) lays it out: base_state.json, meta.json, .owner_lease.lock,
events/event-NNNNN-<event id>.json, events/.eventlog.lock, events/.eventlog-len-M.marker. The
events are copies of template events the real SDK wrote (tests/openhands/store_templates.json):
a system prompt, then whole turns (a user message, state updates, tool actions and their
observations, a finish) repeated until M, each copy with fresh event ids, tool call ids, LLM
response ids and increasing timestamps, its references (`parent_id`, `action_id`,
`last_user_message_id`) pointing at the copies. The LLM key is the template's Fernet token
(OH_SECRET_KEY in the templates) or, with --redacted, "**********", as the server writes it.
Each event is written as it is made: memory stays flat whatever N and M are.

--make-templates STORE_DIR rebuilds the templates from a store write_store.py wrote (its
largest healthy conversation). No SDK is needed here.
"""

import argparse
import itertools
import json
import re
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).resolve().parent.parent / "tests/openhands/store_templates.json"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
TS = "@@timestamp@@"  # where an event's timestamp goes in a compiled template
TOKEN = re.compile(rf"{UUID}|call_[0-9a-f]{{24}}|chatcmpl-[0-9a-f]{{24}}|{TS}")
MAX_TURN_SHAPES = 6
STEP = timedelta(milliseconds=350)  # between two events' timestamps


def dump(value: Any) -> str:
    """JSON as pydantic's model_dump_json writes it: compact, UTF-8, keys in order."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# ---- templates, from a store write_store.py wrote ------------------------------------------


def make_templates(store: Path) -> dict[str, Any]:
    conversations = store / "conversations" if (store / "conversations").is_dir() else store
    dirs = [d for d in conversations.iterdir() if (d / "meta.json").exists()]
    healthy = [d for d in dirs if not (d / "owner_lease.json").exists()]
    source = max(healthy, key=lambda d: len(list((d / "events").glob("event-*.json"))))
    keyed = [d for d in healthy if "gAAAA" in (d / "base_state.json").read_text()]
    events = [json.loads(p.read_text()) for p in sorted((source / "events").glob("event-*.json"))]
    starts = [
        i for i, e in enumerate(events) if e["kind"] == "MessageEvent" and e["source"] == "user"
    ]
    starts = [i - 1 if events[i - 1].get("value") == "idle" else i for i in starts]
    turns, shapes = [], set()
    for start, end in zip(starts, [*starts[1:], len(events)], strict=True):
        turn = events[start:end]
        ids = {e["id"] for e in turn}
        outside = set(TOKEN.findall(dump(turn))) - ids - {turn[0].get("parent_id")}
        shape = tuple(e["kind"] for e in turn)
        if any(re.fullmatch(UUID, t) for t in outside) or shape in shapes:
            continue  # refers to events before it (a condensation), or a shape we have
        if turn[-1].get("value") != "finished" or any(e["kind"] == "PauseEvent" for e in turn):
            continue
        turns.append(turn)
        shapes.add(shape)
    base = json.loads((source / "base_state.json").read_text())
    encrypted = json.loads((keyed[0] / "base_state.json").read_text())["agent"]["llm"]["api_key"]
    return {
        "about": "events and files tests/openhands/write_store.py wrote with the OpenHands SDK;"
        " scripts/gen_openhands_store.py replicates them (--make-templates rebuilds this)",
        "oh_secret_key": "import-test-oh-secret-key",
        "api_key": "sk-import-test-key",
        "api_key_encrypted": encrypted,
        "base_state": base,
        "meta": json.loads((source / "meta.json").read_text()),
        "prefix": events[: starts[0]],
        "turns": turns[:MAX_TURN_SHAPES],
    }


# ---- compiled templates: JSON text cut at every id, ready to be joined with fresh ones ------


class Compiled:
    """One template event as text pieces between the tokens (ids, timestamp) to replace."""

    def __init__(self, event: dict[str, Any], external: str | None) -> None:
        self.kind = event["kind"]
        self.status = event["value"] if event.get("key") == "execution_status" else None
        self.user = self.kind == "MessageEvent" and event["source"] == "user"
        text = dump({**event, "timestamp": TS})
        self.tokens = TOKEN.findall(text)
        self.pieces = TOKEN.split(text)
        self.id = event["id"]
        self.external = external  # the template's previous leaf: the copy's current leaf

    def render(self, fresh: dict[str, str], entry_leaf: str | None, timestamp: str) -> str:
        out = [self.pieces[0]]
        for token, piece in zip(self.tokens, self.pieces[1:], strict=True):
            if token == TS:
                value = timestamp
            elif token == self.external:
                value = entry_leaf or token
            else:
                value = fresh.get(token) or fresh.setdefault(token, new_token(token))
            out.append(value)
            out.append(piece)
        return "".join(out)


def new_token(token: str) -> str:
    if token.startswith("call_"):
        return "call_" + uuid.uuid4().hex[:24]
    if token.startswith("chatcmpl-"):
        return "chatcmpl-" + uuid.uuid4().hex[:24]
    return str(uuid.uuid4())


def compile_turns(templates: dict[str, Any]) -> tuple[list[Compiled], list[list[Compiled]]]:
    prefix = [Compiled(e, None) for e in templates["prefix"]]
    turns = [[Compiled(e, turn[0].get("parent_id")) for e in turn] for turn in templates["turns"]]
    return prefix, turns


# ---- the store ---------------------------------------------------------------------------


def events_of(
    prefix: list[Compiled], turns: list[list[Compiled]], m: int
) -> Iterator[tuple[Compiled, bool]]:
    """The first m events of the prefix, then the turns over and over; True starts a copy."""
    n = 0
    for copy in itertools.chain([prefix], itertools.cycle(turns)):
        for position, event in enumerate(copy):
            if n == m:
                return
            yield event, position == 0
            n += 1


def write_conversation(
    root: Path,
    templates: dict[str, Any],
    compiled: tuple[list[Compiled], list[list[Compiled]]],
    m: int,
    number: int,
    args: Any,
) -> None:
    cid = uuid.uuid4()
    cdir = root / cid.hex
    events_dir = cdir / "events"
    events_dir.mkdir(parents=True)
    start = datetime.now(UTC) - timedelta(days=1) + timedelta(minutes=number)
    clock = start.replace(tzinfo=None)  # events carry naive local time (datetime.now())
    leaf = entry_leaf = last_user = None
    status = "idle"
    fresh: dict[str, str] = {}
    for index, (event, first) in enumerate(events_of(*compiled, m)):
        if first:  # a new copy: new ids, its outside reference the leaf it starts from
            fresh, entry_leaf = {}, leaf
        text = event.render(fresh, entry_leaf, clock.isoformat(timespec="microseconds"))
        new_id = fresh[event.id]
        (events_dir / f"event-{index:05d}-{new_id}.json").write_text(text, encoding="utf-8")
        clock += STEP
        if event.kind != "ConversationStateUpdateEvent":
            leaf = new_id
        elif event.status is not None:
            status = event.status
        if event.user:
            last_user = new_id
    if status == "running":
        status = "paused"  # cut mid-turn: as if the user paused it there
    (cdir / ".owner_lease.lock").touch()
    (events_dir / ".eventlog.lock").touch()
    (events_dir / f".eventlog-len-{m}.marker").touch()
    base = dict(templates["base_state"])
    llm = dict(base["agent"]["llm"])
    llm["api_key"] = "**********" if args.redacted else templates["api_key_encrypted"]
    base["agent"] = {**base["agent"], "llm": llm}
    base.update(id=str(cid), persistence_dir=str(cdir), execution_status=status)
    base.update(leaf_event_id=leaf, last_user_message_id=last_user, tags={"bench": str(number)})
    base["workspace"] = {**base["workspace"], "working_dir": str(root.parent / "project")}
    base = {k: v for k, v in base.items() if v is not None}  # exclude_none, as the SDK saves
    (cdir / "base_state.json").write_text(dump(base), encoding="utf-8")
    meta = dict(templates["meta"])
    meta.update(id=cid.hex, title=f"Bench conversation {number}", tags={"bench": str(number)})
    meta["workspace"] = base["workspace"]
    meta["created_at"] = start.isoformat(timespec="microseconds").replace("+00:00", "Z")
    updated = start + STEP * m
    meta["updated_at"] = updated.isoformat(timespec="microseconds").replace("+00:00", "Z")
    (cdir / "meta.json").write_text(dump(meta), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="OUT_DIR (or STORE_DIR with --make-templates)")
    parser.add_argument("--conversations", "-n", type=int, default=10)
    parser.add_argument("--events", "-m", type=int, default=1000, help="per conversation")
    parser.add_argument("--templates", type=Path, default=TEMPLATES)
    parser.add_argument("--redacted", action="store_true", help="the LLM key as '**********'")
    parser.add_argument(
        "--make-templates", action="store_true", help="rebuild --templates from the store OUT"
    )
    args = parser.parse_args(argv)
    if args.make_templates:
        args.templates.write_text(json.dumps(make_templates(args.out), indent=1) + "\n")
        return
    if args.events < 1 or args.conversations < 0:
        parser.error("--events must be at least 1 and --conversations at least 0")
    templates = json.loads(args.templates.read_text())
    compiled = compile_turns(templates)
    root = args.out.resolve() / "conversations"
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    for number in range(args.conversations):
        write_conversation(root, templates, compiled, args.events, number, args)
    summary = {
        "conversations_dir": str(root),
        "conversations": args.conversations,
        "events": args.conversations * args.events,
        "seconds": round(time.monotonic() - started, 2),
        "oh_secret_key": None if args.redacted else templates["oh_secret_key"],
    }
    sys.stdout.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()

"""Agents for the runtime tests. Each event they emit names the thread its step ran on."""

import asyncio
import json
import threading
import time
from typing import Any

from app.agent import sdk_shapes
from app.agent.base import AgentBase, StepContext, StepOutcome, register_agent
from app.events.schemas import (
    ActionEvent,
    Message,
    MessageEvent,
    ObservationEvent,
    TextContent,
    ToolCall,
)


def _say(text: str) -> MessageEvent:
    return MessageEvent(
        source="agent", llm_message=Message(role="assistant", content=[TextContent(text=text)])
    )


def _label(ctx: StepContext) -> str:
    return f"step {ctx.iteration + 1} thread={threading.current_thread().name}"


class _Scripted(AgentBase):
    def steps(self) -> int:
        return int(self.spec.get("steps", 1))

    def sleep(self) -> float:
        return float(self.spec.get("sleep", 0))


@register_agent
class AsyncTestAgent(_Scripted):
    """Overrides astep: runs on the event loop."""

    kind = "AsyncTestAgent"

    async def astep(self, ctx: StepContext) -> StepOutcome:
        await asyncio.sleep(self.sleep())
        await ctx.emit(_say(_label(ctx)))
        return StepOutcome(finished=ctx.iteration + 1 >= self.steps())


@register_agent
class SyncTestAgent(_Scripted):
    """Implements only step: its whole loop runs on the run pool."""

    kind = "SyncTestAgent"

    def step(self, ctx: StepContext) -> StepOutcome:
        time.sleep(self.sleep())
        ctx.emit_sync(_say(_label(ctx)))
        return StepOutcome(finished=ctx.iteration + 1 >= self.steps())


@register_agent
class FanOutTestAgent(_Scripted):
    """A sync agent whose step fans out parallel tool calls and waits for all of them."""

    kind = "FanOutTestAgent"

    def step(self, ctx: StepContext) -> StepOutcome:
        fan_out = int(self.spec.get("fan_out", 4))
        futures = [ctx.submit_tool(_tool, self.sleep()) for _ in range(fan_out)]
        names = sorted({f.result(timeout=30) for f in futures})
        ctx.emit_sync(_say(f"{_label(ctx)} tools={','.join(names)}"))
        return StepOutcome(finished=True)


@register_agent
class ToolTestAgent(_Scripted):
    """Each step an ActionEvent, a blocking tool call of `sleep` s on the tool pool, then its
    ObservationEvent; runs on the event loop."""

    kind = "ToolTestAgent"

    async def astep(self, ctx: StepContext) -> StepOutcome:
        action = (await ctx.emit(_action(ctx)))[0]
        name = await ctx.run_tool(_tool, self.sleep())
        await ctx.emit(_observation(action, name))
        return StepOutcome(finished=ctx.iteration + 1 >= self.steps())


@register_agent
class SyncToolTestAgent(_Scripted):
    """ToolTestAgent as a sync agent that waits for its tool without interruption checks."""

    kind = "SyncToolTestAgent"

    def step(self, ctx: StepContext) -> StepOutcome:
        action = ctx.emit_sync(_action(ctx))[0]
        name = ctx.submit_tool(_tool, self.sleep()).result()
        ctx.emit_sync(_observation(action, name))
        return StepOutcome(finished=ctx.iteration + 1 >= self.steps())


def action_event(name: str, call_id: str, arguments: str = "{}") -> ActionEvent:
    """A tool call as the LLM agent records one: `arguments` is the raw JSON text."""
    return ActionEvent(
        tool_name=name,
        tool_call_id=call_id,
        tool_call=ToolCall(id=call_id, name=name, arguments=arguments),
        action=sdk_shapes.action(name, json.loads(arguments)),
        llm_response_id=f"response-{call_id}",
    )


def _action(ctx: StepContext) -> ActionEvent:
    return action_event("sleep", f"call_{ctx.run_id.hex[:8]}_{ctx.iteration + 1}")


def _observation(action: dict[str, Any], text: str) -> ObservationEvent:
    return ObservationEvent(
        tool_name="sleep",
        tool_call_id=action["tool_call_id"],
        action_id=action["id"],
        observation=sdk_shapes.observation("sleep", {}, text),
    )


def _tool(sleep: float) -> str:
    time.sleep(sleep)
    return threading.current_thread().name.rsplit("_", 1)[0]


def agent_spec(kind: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "llm": {"model": "unused"}, **extra}

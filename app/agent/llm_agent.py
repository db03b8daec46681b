"""The built-in LLM agent: litellm.acompletion with OpenAI-style tools, natively async."""

import asyncio
import json
import logging
import time
from typing import Any

import litellm

from app.agent.base import AgentBase, LLMCallRecord, StepContext, StepOutcome, register_agent
from app.agent.tools import Tool, ToolResult, parse_arguments, tools_for
from app.events.schemas import (
    ActionEvent,
    AgentErrorEvent,
    EventBase,
    Message,
    MessageEvent,
    ObservationEvent,
    SystemPromptEvent,
    TextContent,
)

logger = logging.getLogger(__name__)

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful agent. Use the tools to do the task; call `finish` when it is done."
)
TRANSIENT = (
    litellm.exceptions.RateLimitError,
    litellm.exceptions.APIConnectionError,
    litellm.exceptions.Timeout,
    litellm.exceptions.InternalServerError,
    litellm.exceptions.ServiceUnavailableError,
    litellm.exceptions.BadGatewayError,
)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def event_to_messages(event: dict[str, Any], messages: list[dict[str, Any]]) -> None:
    """Extend the LLM context with one stored event (OpenAI chat format)."""
    kind = event["kind"]
    if kind == "SystemPromptEvent":
        messages.append({"role": "system", "content": event["system_prompt"]["text"]})
    elif kind == "MessageEvent":
        message = event["llm_message"]
        messages.append({"role": message["role"], "content": _text(message.get("content"))})
    elif kind == "ActionEvent":
        call = {
            "id": event["tool_call_id"],
            "type": "function",
            "function": {"name": event["tool_name"], "arguments": json.dumps(event["arguments"])},
        }
        last = messages[-1] if messages else None
        same_response = (
            last is not None
            and last.get("role") == "assistant"
            and last.get("_response_id") == event.get("llm_response_id")
            and event.get("llm_response_id") is not None
        )
        if same_response and last is not None:
            last["tool_calls"].append(call)
        else:
            thought = _text(event.get("thought"))
            messages.append(
                {
                    "role": "assistant",
                    "content": thought or None,
                    "tool_calls": [call],
                    "_response_id": event.get("llm_response_id"),
                }
            )
    elif kind in ("ObservationEvent", "AgentErrorEvent") and event.get("tool_call_id"):
        text = _text(event.get("content")) if kind == "ObservationEvent" else event["error"]
        messages.append({"role": "tool", "tool_call_id": event["tool_call_id"], "content": text})


def _for_llm(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in m.items() if not k.startswith("_")} for m in messages]


@register_agent
class LLMAgent(AgentBase):
    kind = "LLMAgent"

    def _tools(self) -> list[Tool]:
        return tools_for(self.spec.get("tools"), self.settings)

    def system_prompt_event(self) -> EventBase:
        text = self.spec.get("system_prompt") or DEFAULT_SYSTEM_PROMPT
        return SystemPromptEvent(
            system_prompt=TextContent(text=text), tools=[t.schema() for t in self._tools()]
        )

    def init_context(self, ctx: StepContext, history: list[dict[str, Any]]) -> None:
        # The system prompt leads the context even when it was recorded after the first
        # user message (it is written when the first run starts).
        prompts = [e for e in history if e["kind"] == "SystemPromptEvent"][-1:]
        for event in prompts + [e for e in history if e["kind"] != "SystemPromptEvent"]:
            event_to_messages(event, ctx.messages)

    def _llm_kwargs(self) -> dict[str, Any]:
        llm = dict(self.spec.get("llm") or {})
        model = llm.pop("model", None) or self.settings.llm_model
        if not model:
            raise ValueError("no LLM model: set agent.llm.model or AGENT_SERVER_LLM_MODEL")
        base_url = llm.pop("base_url", None) or self.settings.llm_base_url
        api_key = llm.pop("api_key", None) or (
            self.settings.llm_api_key.get_secret_value() if self.settings.llm_api_key else None
        )
        # max_retries=0: the client's own silent retries are off; _complete retries transient
        # errors itself, with backoff, and records every attempt in llm_calls.
        kwargs: dict[str, Any] = {
            "model": model,
            "timeout": self.settings.llm_timeout_seconds,
            "max_retries": 0,
        }
        kwargs.update(llm)
        if base_url:
            kwargs["api_base"] = base_url
        if api_key:
            kwargs["api_key"] = api_key
        return kwargs

    async def _complete(self, ctx: StepContext, tools: list[Tool]) -> Any:
        kwargs = self._llm_kwargs()
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                response = await litellm.acompletion(
                    messages=_for_llm(ctx.messages), tools=[t.schema() for t in tools], **kwargs
                )
            except TRANSIENT as exc:
                await ctx.record_llm_call(_failed_call(kwargs["model"], started, exc))
                if attempt >= self.settings.llm_max_retries:
                    raise
                await asyncio.sleep(self.settings.llm_retry_base_seconds * 2**attempt)
                attempt += 1
                continue
            except Exception as exc:
                await ctx.record_llm_call(_failed_call(kwargs["model"], started, exc))
                raise
            await ctx.record_llm_call(_usage(kwargs["model"], started, response))
            return response

    async def astep(self, ctx: StepContext) -> StepOutcome:
        tools = self._tools()
        response = await self._complete(ctx, tools)
        message = response.choices[0].message
        content = message.content or ""
        calls = list(message.tool_calls or [])
        if not calls:
            reply = Message(role="assistant", content=[TextContent(text=content)])
            await ctx.emit(MessageEvent(source="agent", llm_message=reply))
            ctx.messages.append({"role": "assistant", "content": content})
            return StepOutcome(finished=True)
        actions = []
        for index, call in enumerate(calls):
            arguments, _problem = parse_arguments(call.function.arguments)
            actions.append(
                ActionEvent(
                    tool_name=call.function.name or "",
                    tool_call_id=call.id,
                    arguments=arguments,
                    thought=[TextContent(text=content)] if content and index == 0 else [],
                    llm_response_id=getattr(response, "id", None),
                )
            )
        stored = await ctx.emit(*actions)
        for event in stored:
            event_to_messages(event, ctx.messages)
        results = await asyncio.gather(
            *(
                self._run_tool(ctx, tools, call, event)
                for call, event in zip(calls, stored, strict=True)
            )
        )
        answers = [answer for answer, _ in results]
        for event in await ctx.emit(*answers):
            event_to_messages(event, ctx.messages)
        return StepOutcome(finished=any(finish for _, finish in results))

    async def _run_tool(
        self, ctx: StepContext, tools: list[Tool], call: Any, action: dict[str, Any]
    ) -> tuple[EventBase, bool]:
        name = call.function.name or ""
        by_name = {t.name: t for t in tools}
        arguments, problem = parse_arguments(call.function.arguments)
        tool = by_name.get(name)
        if tool is None or problem is not None:
            error = problem or f"unknown tool {name!r}; available: {sorted(by_name)}"
            return AgentErrorEvent(error=error, tool_name=name, tool_call_id=call.id), False
        result: ToolResult = await ctx.run_tool(tool.run, arguments, ctx.workspace, ctx.settings)
        if result.is_error:
            return (
                AgentErrorEvent(error=result.text, tool_name=name, tool_call_id=call.id),
                False,
            )
        observation = ObservationEvent(
            tool_name=name,
            tool_call_id=call.id,
            action_id=action["id"],
            content=[TextContent(text=result.text)],
        )
        return observation, result.finish


def _usage(model: str, started: float, response: Any) -> LLMCallRecord:
    usage = getattr(response, "usage", None)
    try:
        cost: float | None = float(litellm.completion_cost(completion_response=response))
    except Exception:  # no price known for this model: cost unknown, not a failure
        cost = None
    return LLMCallRecord(
        model=model,
        prompt_tokens=getattr(usage, "prompt_tokens", None),
        completion_tokens=getattr(usage, "completion_tokens", None),
        cost_usd=cost,
        latency_ms=(time.perf_counter() - started) * 1000,
    )


def _failed_call(model: str, started: float, exc: BaseException) -> LLMCallRecord:
    return LLMCallRecord(
        model=model,
        prompt_tokens=None,
        completion_tokens=None,
        cost_usd=None,
        latency_ms=(time.perf_counter() - started) * 1000,
        error=f"{type(exc).__name__}: {exc}"[:2000],
    )

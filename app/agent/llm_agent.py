"""The built-in LLM agent: litellm.acompletion with OpenAI-style tools, natively async."""

import asyncio
import functools
import logging
import time
import uuid
from typing import Any

import litellm

from app.agent import retry, sdk_shapes
from app.agent.base import AgentBase, StepContext, StepOutcome, register_agent
from app.agent.confirmation import needs_confirmation, waiting_actions
from app.agent.context import context_messages, event_to_messages
from app.agent.llm_usage import call_record, failed_call_record
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
    ToolCall,
)
from app.vault.policy import EndpointPolicy
from app.vault.redact import MASK
from app.vault.specs import LLM_CREDENTIALS, MODEL_PARAMETERS

logger = logging.getLogger(__name__)

# agent.llm fields passed to litellm as they are (model, endpoint and key are chosen above).
LLM_ENDPOINT = frozenset({"model", "base_url", "api_key", "timeout"})
FORWARDED = (MODEL_PARAMETERS | LLM_CREDENTIALS) - LLM_ENDPOINT

NO_KEY = "none"  # the api_key sent to an endpoint whose credentials are in extra_headers
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful agent. Use the tools to do the task; call `finish` when it is done."
)
CONDENSE_PROMPT = (
    "Summarise the conversation events below for the agent that will continue the task"
    " without them: the user's goals and requests, what was done and found (files, commands,"
    " results), decisions, and what remains. Be concise and keep exact names and values."
)
TRANSIENT = (
    litellm.exceptions.RateLimitError,
    litellm.exceptions.APIConnectionError,
    litellm.exceptions.Timeout,
    litellm.exceptions.InternalServerError,
    litellm.exceptions.ServiceUnavailableError,
    litellm.exceptions.BadGatewayError,
)


def _for_llm(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in m.items() if not k.startswith("_")} for m in messages]


@register_agent
class LLMAgent(AgentBase):
    kind = "LLMAgent"

    def _tool_names(self) -> list[str] | None:
        """The tools the spec asks for (None: all it may use)."""
        tools = self.spec.get("tools")
        return tools if isinstance(tools, list) else None

    def _llm_fields(self) -> dict[str, Any]:
        """agent.llm as litellm arguments: model, base_url, api_key, timeout and FORWARDED."""
        llm = self.spec.get("llm") or {}
        return {k: v for k, v in llm.items() if k in FORWARDED or k in LLM_ENDPOINT}

    def _tools(self) -> list[Tool]:
        return tools_for(self._tool_names(), self.settings)

    def system_prompt_event(self) -> EventBase:
        text = self.spec.get("system_prompt") or DEFAULT_SYSTEM_PROMPT
        tools = [sdk_shapes.definition(t.name, t.description) for t in self._tools()]
        return SystemPromptEvent(
            system_prompt=TextContent(text=text), tools=[t for t in tools if t is not None]
        )

    def init_context(self, ctx: StepContext, history: list[dict[str, Any]]) -> None:
        ctx.messages.extend(context_messages(history))
        ctx.pending = waiting_actions(history)

    @functools.cached_property
    def _policy(self) -> EndpointPolicy:
        return EndpointPolicy.from_settings(self.settings)

    def _llm_kwargs(self) -> dict[str, Any]:
        """litellm's arguments: the allowlisted model parameters and credentials of
        agent.llm, and the endpoint chosen by the rule of app/vault/policy.py (the server's
        key goes only to the server's URL)."""
        llm = {k: v for k, v in self._llm_fields().items() if v is not None and v != MASK}
        model = llm.get("model") or self.settings.llm_model
        if not model:
            raise ValueError("no LLM model: set agent.llm.model or AGENT_SERVER_LLM_MODEL")
        policy = self._policy
        policy.check(llm)  # also for conversations stored before the rule existed
        api_key = llm.get("api_key")
        base_url = llm.get("base_url")
        if policy.is_server_endpoint(base_url):
            base_url = self.settings.llm_base_url
            if api_key is None and self.settings.llm_api_key is not None:
                api_key = self.settings.llm_api_key.get_secret_value()
        elif api_key is None and not llm.get("aws_access_key_id"):
            # Credentials in extra_headers: an explicit key, or litellm would read one from
            # this process's environment (OPENAI_API_KEY, ...) and send it to that URL.
            api_key = NO_KEY
        # max_retries=0: the client's own silent retries are off; _complete retries transient
        # errors itself, with backoff, and records every attempt in llm_calls.
        kwargs: dict[str, Any] = {
            "model": model,
            "timeout": llm.get("timeout") or self.settings.llm_timeout_seconds,
            "max_retries": 0,
        }
        kwargs.update((k, v) for k, v in llm.items() if k in FORWARDED)
        if base_url:
            kwargs["api_base"] = base_url
        if api_key:
            kwargs["api_key"] = api_key
        return kwargs

    async def ask(self, history: list[dict[str, Any]], question: str) -> str:
        """One LLM call over the conversation's context and a question (OpenHands
        `ask_agent`): no tool may be called, nothing is recorded."""
        messages = context_messages(history)
        messages.append({"role": "user", "content": question})
        tools = [t.schema() for t in self._tools()]
        response = await litellm.acompletion(
            messages=_for_llm(messages), tools=tools, tool_choice="none", **self._llm_kwargs()
        )
        return str(response.choices[0].message.content or "")

    async def summarize(self, events: str, previous: str | None) -> tuple[str, str]:
        """One LLM call that summarises events being condensed (and the summary they
        follow): the summary and the LLM response's id."""
        earlier = f"\n\nThe summary of what came before them:\n{previous}" if previous else ""
        prompt = f"{CONDENSE_PROMPT}{earlier}\n\nThe events:\n{events}"
        response = await litellm.acompletion(
            messages=[{"role": "user", "content": prompt}], **self._llm_kwargs()
        )
        response_id = getattr(response, "id", None) or f"response-{uuid.uuid4()}"
        return str(response.choices[0].message.content or ""), str(response_id)

    async def _complete(self, ctx: StepContext, tools: list[Tool]) -> Any:
        kwargs = self._llm_kwargs()
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                response = await litellm.acompletion(
                    messages=_for_llm(ctx.messages), tools=[t.schema() for t in tools], **kwargs
                )
            except Exception as exc:
                await ctx.record_llm_call(failed_call_record(kwargs["model"], started, exc))
                if not self._retry(exc, attempt):
                    raise
                await asyncio.sleep(self._backoff(exc, attempt))
                attempt += 1
                continue
            await ctx.record_llm_call(call_record(kwargs["model"], started, response))
            return response

    def _retry(self, exc: Exception, attempt: int) -> bool:
        return isinstance(exc, TRANSIENT) and attempt < self.settings.llm_max_retries

    def _backoff(self, exc: Exception, attempt: int) -> float:
        return retry.delay(exc, attempt, self.settings.llm_retry_base_seconds)

    async def astep(self, ctx: StepContext) -> StepOutcome:
        tools = self._tools()
        stored, ctx.pending = ctx.pending, []
        calls = _stored_calls(stored)
        _add_to_context(ctx, stored)  # accepted actions (the context leaves out unanswered ones)
        if not stored:  # no accepted actions to run first: ask the LLM
            response = await self._complete(ctx, tools)
            reply, actions = _read_response(response)
            if reply is not None:
                await ctx.emit(reply)
                return _replied(ctx, reply)
            stored, calls = await ctx.emit(*actions), _raw_calls(response)
            _add_to_context(ctx, stored)
            if needs_confirmation(ctx, stored):
                return StepOutcome(waiting=True)
        planned = _plan(ctx, tools, calls)
        results = await asyncio.gather(
            *(ctx.run_tool(*job) if job else _no_tool() for job, _ in planned)
        )
        answers = [
            _answer(action, result, problem)
            for (_, problem), action, result in zip(planned, stored, results, strict=True)
        ]
        for event in await ctx.emit(*(event for event, _ in answers)):
            event_to_messages(event, ctx.messages)
        return StepOutcome(finished=any(finish for _, finish in answers))


@register_agent
class SyncLLMAgent(LLMAgent):
    """The same agent through litellm's sync client: it implements only `step`, so the runner
    runs its whole loop on the run pool; its tool calls go to the tool pool."""

    kind = "SyncLLMAgent"
    astep = AgentBase.astep  # sync-only: dispatch must not take it for a native async agent

    def _complete_sync(self, ctx: StepContext, tools: list[Tool]) -> Any:
        kwargs = self._llm_kwargs()
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                response = litellm.completion(
                    messages=_for_llm(ctx.messages), tools=[t.schema() for t in tools], **kwargs
                )
            except Exception as exc:
                ctx.record_llm_call_sync(failed_call_record(kwargs["model"], started, exc))
                if not self._retry(exc, attempt):
                    raise
                ctx.interrupted.wait(self._backoff(exc, attempt))
                ctx.check_interrupted()
                attempt += 1
                continue
            ctx.record_llm_call_sync(call_record(kwargs["model"], started, response))
            return response

    def step(self, ctx: StepContext) -> StepOutcome:
        tools = self._tools()
        stored, ctx.pending = ctx.pending, []
        calls = _stored_calls(stored)
        _add_to_context(ctx, stored)  # accepted actions (the context leaves out unanswered ones)
        if not stored:  # no accepted actions to run first: ask the LLM
            response = self._complete_sync(ctx, tools)
            ctx.check_interrupted()
            reply, actions = _read_response(response)
            if reply is not None:
                ctx.emit_sync(reply)
                return _replied(ctx, reply)
            stored, calls = ctx.emit_sync(*actions), _raw_calls(response)
            _add_to_context(ctx, stored)
            if needs_confirmation(ctx, stored):
                return StepOutcome(waiting=True)
        planned = _plan(ctx, tools, calls)
        futures = [ctx.submit_tool(*job) if job else None for job, _ in planned]
        answers = []
        for (_, problem), action, future in zip(planned, stored, futures, strict=True):
            result = None if future is None else _wait(ctx, future)
            answers.append(_answer(action, result, problem))
        stored_answers = ctx.emit_sync(*(event for event, _ in answers))
        for event in stored_answers:
            event_to_messages(event, ctx.messages)
        return StepOutcome(finished=any(finish for _, finish in answers))


def _wait(ctx: StepContext, future: Any) -> ToolResult:
    while True:
        ctx.check_interrupted()
        try:
            result: ToolResult = future.result(timeout=0.1)
            return result
        except TimeoutError:
            continue


async def _no_tool() -> None:
    return None


def _calls(response: Any) -> list[Any]:
    return list(response.choices[0].message.tool_calls or [])


def _read_response(response: Any) -> tuple[MessageEvent | None, list[ActionEvent]]:
    """A plain reply (no tool calls) or the actions the LLM asked for."""
    message = response.choices[0].message
    content = message.content or ""
    calls = _calls(response)
    if not calls:
        reply = Message(role="assistant", content=[TextContent(text=content)])
        return MessageEvent(source="agent", llm_message=reply), []
    actions = []
    # The SDK needs a response id: it groups the calls of one LLM answer.
    response_id = getattr(response, "id", None) or f"response-{uuid.uuid4()}"
    for index, call in enumerate(calls):
        name = call.function.name or ""
        raw = call.function.arguments or "{}"
        arguments, problem = parse_arguments(raw)
        actions.append(
            ActionEvent(
                tool_name=name,
                tool_call_id=call.id,
                tool_call=ToolCall(id=call.id, name=name, arguments=raw),
                action=None if problem else sdk_shapes.action(name, arguments),
                thought=[TextContent(text=content)] if content and index == 0 else [],
                llm_response_id=response_id,
            )
        )
    return None, actions


def _replied(ctx: StepContext, reply: MessageEvent) -> StepOutcome:
    text = "".join(p.text for p in reply.llm_message.content if isinstance(p, TextContent))
    ctx.messages.append({"role": "assistant", "content": text})
    return StepOutcome(finished=True)


Job = tuple[Any, dict[str, Any], Any, Any, Any]


def _add_to_context(ctx: StepContext, stored: list[dict[str, Any]]) -> None:
    for event in stored:
        event_to_messages(event, ctx.messages)


# A tool call as (tool name, raw arguments).
Call = tuple[str, str | None]


def _raw_calls(response: Any) -> list[Call]:
    """The calls as the LLM sent them (a NUL in them is refused, not replaced)."""
    return [(call.function.name or "", call.function.arguments) for call in _calls(response)]


def _stored_calls(actions: list[dict[str, Any]]) -> list[Call]:
    return [(a["tool_call"]["name"], a["tool_call"]["arguments"]) for a in actions]


def _plan(
    ctx: StepContext, tools: list[Tool], calls: list[Call]
) -> list[tuple[Job | None, str | None]]:
    """Per call: the tool job to run, or the problem that stops it from running."""
    by_name = {t.name: t for t in tools}
    planned: list[tuple[Job | None, str | None]] = []
    for name, raw in calls:
        arguments, problem = parse_arguments(raw)
        tool = by_name.get(name)
        if tool is None:
            problem = f"unknown tool {name!r}; available: {sorted(by_name)}"
        if problem is not None or tool is None:
            planned.append((None, problem))
        else:
            planned.append(((tool.run, arguments, ctx.workspace, ctx.settings, ctx.env), None))
    return planned


def _answer(
    action: dict[str, Any], result: ToolResult | None, problem: str | None
) -> tuple[EventBase, bool]:
    name, call_id = action["tool_call"]["name"], action["tool_call"]["id"]
    if result is None or result.is_error:
        error = problem if result is None else result.text
        return AgentErrorEvent(
            error=error or "no result", tool_name=name, tool_call_id=call_id
        ), False
    observation = ObservationEvent(
        tool_name=name,
        tool_call_id=call_id,
        action_id=action["id"],
        # The call's SDK action (as stored) gives the observation its own fields.
        observation=sdk_shapes.observation(
            name, action.get("action") or {}, result.text, fields=result.fields
        ),
    )
    return observation, result.finish

"""Helpers for the skills tests."""

from typing import Any

import httpx


def skill_md(name: str, description: str = "Does things", body: str = "Do the thing.") -> str:
    return f"---\nname: {name}\ndescription: {description}\n---\n{body}\n"


async def create_skill(
    client: httpx.AsyncClient, name: str, body: str = "Do the thing.", **fields: Any
) -> dict[str, Any]:
    payload = {"content": skill_md(name, body=body), **fields}
    response = await client.post("/api/skills", json=payload)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is an error in the app's one shape: {status, code, message, details}."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"status", "code", "message", "details"}, body
    assert body["status"] == status and body["code"] == code, body
    assert body["message"], body
    return body


# The run fixtures (a fake OpenAI-compatible LLM process, apps whose worker runs) for the
# tests of skills in agent runs.
from tests.runs.conftest import fake_llm_server, llm, run_app  # noqa: E402, F401

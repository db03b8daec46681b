"""A fake OpenAI-compatible chat-completions server for tests, demos and benchmarks.

Real HTTP on 127.0.0.1, so litellm's whole client path runs. It answers from a script of
replies (pushed over HTTP), then with a default reply: a call of the `finish` tool.

    python -m tests.fakellm [--port 0] [--latency 0.2]   # prints "PORT <n>" when listening

Control endpoints: POST /_script {"replies": [...], "latency": s}, POST /_reset,
GET /_requests (the chat requests received), GET /_headers (their paths and headers: chat
is served under any prefix, `/<anything>/chat/completions`, so a test can tell endpoints
apart). A reply is {"text": ...}, or
{"tool_calls": [{"name": ..., "arguments": {...}}, ...], "text": optional thought}, or
{"error": status, "message": ..., "echo_auth": bool} (echo_auth: the message repeats the
request's Authorization header, as a careless or hostile endpoint might); any reply may carry
its own "latency".
"""

import argparse
import asyncio
import itertools
import json
import socket
import sys
from collections import deque
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

app = FastAPI()
_script: deque[dict[str, Any]] = deque()
_requests: list[dict[str, Any]] = []
_headers: list[dict[str, Any]] = []
_state: dict[str, float] = {"latency": 0.0}
_ids = itertools.count(1)


def completion(reply: dict[str, Any], model: str) -> dict[str, Any]:
    n = next(_ids)
    message: dict[str, Any] = {"role": "assistant", "content": reply.get("text")}
    finish_reason = "stop"
    if reply.get("tool_calls"):
        message["tool_calls"] = [
            {
                "id": call.get("id") or f"call_{n}_{i}",
                "type": "function",
                "function": {
                    "name": call["name"],
                    "arguments": call.get("raw_arguments") or json.dumps(call.get("arguments", {})),
                },
            }
            for i, call in enumerate(reply["tool_calls"])
        ]
        finish_reason = "tool_calls"
    return {
        "id": f"chatcmpl-fake-{n}",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


DEFAULT_REPLY = {"tool_calls": [{"name": "finish", "arguments": {"message": "done"}}]}


@app.post("/chat/completions")
@app.post("/{prefix:path}/chat/completions")
async def chat(request: Request) -> JSONResponse:
    body = await request.json()
    _requests.append(body)
    _headers.append({"path": request.url.path, "headers": dict(request.headers)})
    reply = _script.popleft() if _script else DEFAULT_REPLY
    await asyncio.sleep(float(reply.get("latency", _state["latency"])))
    if "error" in reply:
        status = int(reply["error"])
        message = reply.get("message", "fake error")
        if reply.get("echo_auth"):
            message += f" (you sent {request.headers.get('authorization')})"
        error = {"message": message, "type": "fake", "code": status}
        return JSONResponse({"error": error}, status_code=status)
    return JSONResponse(completion(reply, str(body.get("model", "fake"))))


@app.post("/_script")
async def script(request: Request) -> dict[str, int]:
    body = await request.json()
    _script.extend(body.get("replies", []))
    if "latency" in body:
        _state["latency"] = float(body["latency"])
    return {"queued": len(_script)}


@app.post("/_reset")
async def reset() -> dict[str, bool]:
    _script.clear()
    _requests.clear()
    _headers.clear()
    _state["latency"] = 0.0
    return {"ok": True}


@app.get("/_requests")
async def requests() -> list[dict[str, Any]]:
    return _requests


@app.get("/_headers")
async def headers() -> list[dict[str, Any]]:
    return _headers


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    _state["latency"] = args.latency
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())

"""A WSGI and an ASGI application for the server tests; each request times itself.

``handle_request`` spins the CPU for ``SERVER_APP_SPIN`` seconds (default
0.05) and appends one JSON line to ``$SERVER_APP_LOG/<pid>.jsonl``: how long
it took by ``time.perf_counter`` and whether this process was profiling when
it started and when it ended. That is the ground truth a worker's CPU profile
is checked against.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Dict, Iterable, List

from otel_profiling import get_profiling_agent

SPIN = float(os.environ.get("SERVER_APP_SPIN", "0.05"))
LOG = os.environ.get("SERVER_APP_LOG", "")


def profiling() -> bool:
    agent = get_profiling_agent()
    return bool(agent is not None and agent.active_profiles)


def spin(seconds: float) -> int:
    deadline = time.perf_counter() + seconds
    count = 0
    while time.perf_counter() < deadline:
        count += sum(i * i for i in range(200))
    return count


def handle_request() -> bytes:
    was_profiling = profiling()
    began = time.perf_counter()
    spin(SPIN)
    elapsed = time.perf_counter() - began
    record = {"elapsed": elapsed, "profiled": was_profiling and profiling()}
    if LOG:
        with open(os.path.join(LOG, f"{os.getpid()}.jsonl"), "a") as out:
            out.write(json.dumps(record) + "\n")
    return f"{os.getpid()}\n".encode()


def application(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """WSGI: gunicorn, uWSGI."""
    body = handle_request() if environ.get("PATH_INFO") == "/work" else f"{os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


async def asgi(
    scope: Dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
) -> None:
    """ASGI: uvicorn."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = handle_request() if scope.get("path") == "/work" else f"{os.getpid()}\n".encode()
    headers: List[Any] = [(b"content-type", b"text/plain")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})

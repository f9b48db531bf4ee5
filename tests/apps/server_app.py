"""A WSGI and an ASGI application for the server tests; each request times itself.

``handle_request`` spins the CPU for ``SERVER_APP_SPIN`` seconds (default
0.05) and appends one JSON line to ``$SERVER_APP_LOG/<pid>.jsonl``: how long
it took by ``time.perf_counter`` (and in CPU time, ``time.thread_time``) and
whether this process was profiling when it started and when it ended. That is
the ground truth a worker's CPU profile is checked against. Under ASGI, a
request first awaits ``wait_upstream()`` (``asyncio.sleep`` of
``SERVER_APP_AWAIT`` seconds, default 0.05, as a call to a database or another
service would) and logs the time it was suspended there to ``<pid>.awaited``,
one JSON line per request.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any, Callable, Dict, Iterable, List

from otel_profiling import get_profiling_agent

SPIN = float(os.environ.get("SERVER_APP_SPIN", "0.05"))
AWAIT = float(os.environ.get("SERVER_APP_AWAIT", "0.05"))
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
    began, began_cpu = time.perf_counter(), time.thread_time()
    spin(SPIN)
    elapsed, cpu = time.perf_counter() - began, time.thread_time() - began_cpu
    log({"elapsed": elapsed, "cpu": cpu, "profiled": was_profiling and profiling()}, ".jsonl")
    return f"{os.getpid()}\n".encode()


def log(record: Dict[str, Any], suffix: str) -> None:
    if LOG:
        with open(os.path.join(LOG, f"{os.getpid()}{suffix}"), "a") as out:
            out.write(json.dumps(record) + "\n")


async def wait_upstream() -> None:
    """Suspended in ``await``: no thread runs it, the event loop waits in ``select``."""
    was_profiling = profiling()
    began = time.perf_counter()
    await asyncio.sleep(AWAIT)
    elapsed = time.perf_counter() - began
    log({"elapsed": elapsed, "profiled": was_profiling and profiling()}, ".awaited")


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
    body = f"{os.getpid()}\n".encode()
    if scope.get("path") == "/work":
        await wait_upstream()
        body = handle_request()
    headers: List[Any] = [(b"content-type", b"text/plain")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})

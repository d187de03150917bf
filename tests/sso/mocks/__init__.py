"""Offline stand-ins for the sign-in providers, written for the tests: real HTTP servers on
127.0.0.1 (uvicorn in a thread) that check every signature and parameter the way the real
provider does and answer with the payloads the providers document.

Each mock has switches a test flips to make it misbehave (``fail = "500" | "slow" | "html"``)
and records the calls it served.
"""
from __future__ import annotations

import asyncio
import socket
import threading
import time
from contextlib import contextmanager

import uvicorn
from fastapi import Request
from fastapi.responses import HTMLResponse, PlainTextResponse


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(app, lifespan: str = "off", timeout: float = 10):
    """Run ``app`` on a free loopback port in a thread; yield its base URL once it listens
    (after its lifespan start-up when ``lifespan="on"``)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan=lifespan, access_log=False))
    thread = threading.Thread(target=server.run, name=f"mock:{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "mock server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class Misbehaviour:
    """The failure switches every mock shares."""

    def __init__(self):
        self.fail: str | None = None  # "500" | "slow" | "html"
        self.slow_seconds = 3.0
        self.calls: list[tuple[str, dict]] = []

    async def misbehave(self, request: Request):
        """A response that replaces the real one, or None to answer normally."""
        if self.fail == "500":
            return PlainTextResponse("Internal Server Error", status_code=500)
        if self.fail == "html":
            return HTMLResponse("<html><body><h1>502 Bad Gateway</h1></body></html>", status_code=502)
        if self.fail == "slow":
            await asyncio.sleep(self.slow_seconds)
        return None


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><html lang='zh'><head><meta charset='utf-8'><title>{title}</title>"
                        f"</head><body><h1>{title}</h1>{body}</body></html>", status_code=status)

"""The API served for real by uvicorn, in a thread of the test process, on a free loopback port."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from nightjar.api.app import create_app, server_config
from nightjar.settings import Settings
from nightjar.streams.broker import free_port


@contextmanager
def serving(settings: Settings, own_config: bool = False) -> Iterator[str]:
    """The app of ``settings`` served and started; its base URL. ``own_config``: with ``nightjar serve``'s own
    server configuration (its trusted proxies) instead of a plain one."""
    port = free_port()
    if own_config:
        config = server_config(settings, "127.0.0.1", port)
    else:
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)  # waiting for the server thread to bind
    assert server.started, "the server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)

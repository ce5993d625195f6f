"""Static queries in a child process: the one way to stop a query that sits inside one huge scalar call.

DuckDB's ``interrupt()`` is checked between vectors, so ``regexp_extract_all(repeat('ab', 50000000), ...)`` or
``lpad('x', 1500000000, 'y')`` runs to its end whatever the watchdog says (70–400 s against a 10 s limit). A
static query (CLI, query API, Lasair query, export) therefore runs in a child forked from a small fork server
(started once, with Nightjar already imported, so a query costs a fork, not an interpreter start). The child
caps its own memory; the parent waits for the time limit plus a grace second and then kills it.

Streaming filters stay in process (a child per batch would cost more than the filters): their limits are the
sandbox's watchdog and the worker's memory cap.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from multiprocessing.context import ForkServerContext
from typing import Any, TypeVar

import duckdb

from nightjar import memory_cap
from nightjar.sql.parse import QueryError, QueryTimeout

T = TypeVar("T")
GRACE_S = 1.0  # after the in-process watchdog's time limit, before the child is killed


@functools.cache
def _context() -> ForkServerContext:
    ctx = mp.get_context("forkserver")
    assert isinstance(ctx, ForkServerContext)
    ctx.set_forkserver_preload(["nightjar.sql.engine"])
    return ctx


def _child(out: Connection, fn: Callable[..., Any], args: tuple[Any, ...], memory_bytes: int | None) -> None:
    try:
        if memory_bytes:
            memory_cap.cap_process_memory(memory_bytes)
        result = fn(*args)
    except (QueryError, ValueError) as exc:
        out.send(("error", type(exc).__name__, str(exc)))
    except (MemoryError, duckdb.OutOfMemoryException):  # beyond the cap wherever it is hit (connecting too)
        out.send(("error", "QueryError", _memory_message()))
    except Exception as exc:  # anything else is the query's failure, told to its author without internals
        out.send(("error", "QueryError", f"the query failed: {type(exc).__name__}: {exc}"))
    else:
        try:
            out.send(("ok", result))
        except MemoryError:
            out.send(("error", "QueryError", _memory_message()))
    finally:
        out.close()


def _memory_message() -> str:
    return "query stopped: it needs more than its memory limit; narrow it, aggregate, or add a LIMIT"


def call(fn: Callable[..., T], args: tuple[Any, ...], timeout_s: float, memory_bytes: int | None) -> T:
    """``fn(*args)`` in a child process, killed ``GRACE_S`` after ``timeout_s``; its QueryError or ValueError
    raised here, a QueryError when it was killed or died (out of memory)."""
    ctx = _context()
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(send, fn, args, memory_bytes), daemon=True)
    started = time.monotonic()
    child.start()
    send.close()
    try:
        ready = wait([receive, child.sentinel], timeout_s + GRACE_S)
        if not ready:
            raise QueryTimeout(timeout_s)
        try:
            if not receive.poll(0):  # the child ended without an answer
                raise EOFError
            message = receive.recv()
        except EOFError:
            if time.monotonic() - started >= timeout_s:
                raise QueryTimeout(timeout_s) from None
            raise QueryError(_memory_message()) from None
    finally:
        if child.is_alive():
            child.kill()
        child.join(10)
        receive.close()
    if message[0] == "ok":
        result: T = message[1]
        return result
    _, kind, text = message
    if kind == QueryTimeout.__name__:
        raise QueryTimeout(timeout_s)
    raise (ValueError if kind == "ValueError" else QueryError)(text)

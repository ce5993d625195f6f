"""``nightjar run`` as a process of its own, for the tests that kill it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def start_run(settings_env: dict[str, str], topic: str, idle_exit_s: int, log: Path) -> subprocess.Popen[bytes]:
    """Start ``nightjar run --topic topic`` with the ``NIGHTJAR_*`` variables ``settings_env`` and one worker, its
    output appended to ``log``, in a process group of its own so that killing the group takes its Dask workers too."""
    env = {**os.environ, **settings_env, "NIGHTJAR_BATCH_TIMEOUT_S": "0.5", "NIGHTJAR_WORKERS": "1"}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "nightjar.cli", "run", "--topic", topic, "--idle-exit", str(idle_exit_s)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

"""Where background jobs of one kind (queries, exports) are kept: in memory while their process runs, and as a
small JSON file each under a folder of ``NIGHTJAR_HOME``, so finished jobs outlive the process that ran them."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"


class JobState(Protocol):
    """What a stored job has: an id, a status and an error."""

    id: str
    status: str
    error: str | None


J = TypeVar("J", bound=JobState)


class JobStore(Generic[J]):
    """Jobs of type ``kind`` (a dataclass) by id; ``what`` names them in messages ("job", "export")."""

    def __init__(self, folder: Path, kind: type[J], what: str) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.kind = kind
        self.what = what
        self.jobs: dict[str, J] = {}
        self.lock = threading.Lock()

    def _state_path(self, job_id: str) -> Path:
        return self.folder / f"{job_id}.json"

    def save(self, job: J) -> None:
        """Write the job's state to its JSON file."""
        state: dict[str, Any] = asdict(job)  # type: ignore[call-overload]
        self._state_path(job.id).write_text(json.dumps(state))

    def add(self, job: J) -> None:
        """Add a new job and write its state."""
        with self.lock:
            self.jobs[job.id] = job
        self.save(job)

    def get(self, job_id: str) -> J | None:
        """A job of this process, or one stored by an earlier one (failed if it never finished)."""
        with self.lock:
            job = self.jobs.get(job_id)
        if job is not None:
            return job
        path = self._state_path(job_id)
        if not (len(job_id) == 16 and job_id.isalnum() and path.is_file()):
            return None
        stored = self.kind(**json.loads(path.read_text()))
        if stored.status in (QUEUED, RUNNING):  # its process ended before it did
            stored.status = FAILED
            stored.error = f"interrupted: the server stopped before the {self.what} finished"
        return stored

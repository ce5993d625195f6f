"""``nightjar replay``: send alert files to a Kafka topic as Rubin does (Confluent wire format)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nightjar.progress import Progress
from nightjar.settings import Settings
from nightjar.streams import kafka
from nightjar.streams.files import AlertFileError, read_payloads
from nightjar.streams.publish import Publisher


@dataclass
class ReplayReport:
    """What a replay sent: files and alerts, and an error for each file skipped."""

    files: int = 0
    alerts: int = 0
    errors: list[str] = field(default_factory=list)


def alert_files(paths: list[Path]) -> list[Path]:
    """The files named, and every ``*.avro`` and ``*.parquet`` file under the folders named, in a stable order."""
    found: list[Path] = []
    for p in paths:
        found.extend(sorted([*p.rglob("*.avro"), *p.rglob("*.parquet")]) if p.is_dir() else [p])
    return found


def replay(settings: Settings, files: list[Path], topic: str, progress: Progress | None = None) -> ReplayReport:
    """Produce every alert of ``files`` to ``topic``; unreadable files are reported and skipped. ``progress``
    hears the files done out of all the alert files found."""
    kafka.ensure_topics(settings, [topic])
    report = ReplayReport()
    found = alert_files(files)
    with Publisher(kafka.producer_config(settings)) as publisher:
        for done, path in enumerate(found, 1):
            if progress is not None:
                progress(done - 1, len(found))
            try:
                payloads = read_payloads(path)
            except (AlertFileError, ValueError, OSError) as exc:
                report.errors.append(f"{path}: {exc}")
                continue
            for payload in payloads:
                publisher.raw(topic, payload)
            report.files += 1
            report.alerts += len(payloads)
        publisher.flush()
        if progress is not None:
            progress(len(found), len(found))
    return report

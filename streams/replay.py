"""``nightjar replay``: send alert files to a Kafka topic as Rubin does (Confluent wire format)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nightjar.settings import Settings
from nightjar.streams import kafka
from nightjar.streams.files import AlertFileError, read_payloads
from nightjar.streams.publish import Publisher


@dataclass
class ReplayReport:
    files: int = 0
    alerts: int = 0
    errors: list[str] = field(default_factory=list)


def alert_files(paths: list[Path]) -> list[Path]:
    """The files named, and every ``*.avro`` and ``*.parquet`` file under the folders named, in a stable order."""
    found: list[Path] = []
    for p in paths:
        found.extend(sorted([*p.rglob("*.avro"), *p.rglob("*.parquet")]) if p.is_dir() else [p])
    return found


def replay(settings: Settings, files: list[Path], topic: str) -> ReplayReport:
    """Produce every alert of ``files`` to ``topic``; unreadable files are reported and skipped."""
    kafka.ensure_topics(settings, [topic])
    report = ReplayReport()
    with Publisher(kafka.producer_config(settings)) as publisher:
        for path in alert_files(files):
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
    return report

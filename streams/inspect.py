"""``nightjar alerts inspect``: what is in alert files, and what is wrong with them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nightjar.streams import container, wire
from nightjar.streams.decode import RawBatch, decode_batch
from nightjar.streams.files import AlertFileError, read_payloads
from nightjar.streams.replay import alert_files


@dataclass
class FileReport:
    """What ``nightjar alerts inspect`` found in one alert file: its format and schema, the alerts and their
    diaSourceId range, and the errors."""

    path: Path
    format: str = "?"
    schema: str = "?"
    alerts: int = 0
    id_min: int | None = None
    id_max: int | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the file had no error."""
        return not self.errors

    def line(self) -> str:
        """The report as one tab-separated line."""
        ids = f"{self.id_min}..{self.id_max}" if self.id_min is not None else "-"
        status = "ok" if self.ok else "ERROR " + "; ".join(self.errors)
        return f"{self.path}\t{self.format}\t{self.schema}\t{self.alerts} alerts\tdiaSourceId {ids}\t{status}"


def _describe(data: bytes) -> tuple[str, str]:
    if data[:1] == b"\x00":
        sid, _ = wire.unframe(data)
        return "confluent-wire", f"lsst v{sid // 100}.{sid % 100}"
    if container.is_container(data):
        schema, _, codec, _, _ = container.read_header(data)
        return f"avro-container/{codec}", container.schema_name(schema)
    return "unknown", "?"


def inspect_files(paths: list[Path]) -> list[FileReport]:
    """One report per alert file (folders are searched for ``*.avro``)."""
    reports = []
    for path in alert_files(paths):
        report = FileReport(path)
        try:
            report.format, report.schema = _describe(path.read_bytes())
            payloads = read_payloads(path, wire_format=False)
        except (AlertFileError, container.ContainerError, wire.WireFormatError, ValueError, OSError) as exc:
            report.errors.append(str(exc).removeprefix(f"{path}: "))
            reports.append(report)
            continue
        out = decode_batch(RawBatch.from_payloads(payloads))
        report.alerts = out.sources.num_rows
        if report.alerts:
            ids = out.sources["diaSourceId"]
            report.id_min, report.id_max = int(min(ids.to_pylist())), int(max(ids.to_pylist()))
        report.errors.extend(r.reason for r in out.rejects)
        reports.append(report)
    return reports

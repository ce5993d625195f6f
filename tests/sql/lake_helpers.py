"""Build a small real lake (Delta tables) from simulated alerts, batch by batch, without Kafka or Dask."""

from __future__ import annotations

from pathlib import Path

from nightjar.pipelines import stages
from nightjar.streams import simulate
from nightjar.streams.decode import RawBatch, decode_batch


def build_lake(home: Path, alerts: int, batches: int, seed: int = 7, topic: str = "sim") -> list[bytes]:
    """Commit ``alerts`` simulated alerts to the lake in ``batches`` commits (one Delta version each)."""
    payloads = [a.payload for a in simulate.generate_alerts(alerts, seed=seed)]
    size = -(-alerts // batches)
    for start in range(0, alerts, size):
        chunk = payloads[start : start + size]
        raw = RawBatch(chunk, [topic] * len(chunk), [0] * len(chunk), list(range(start, start + len(chunk))))
        decoded = stages.locate(decode_batch(raw), partition_order=5)
        stages.commit_to_lake(decoded, home, {f"nightjar:{topic}:0": start + len(chunk) - 1})
    return payloads

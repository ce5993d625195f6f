"""Schema ids resolved through a real (loopback) Confluent-compatible schema registry."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import fastavro
import pytest

from nightjar.streams import schemas, wire
from nightjar.streams.decode import RawBatch, decode_batch
from nightjar.streams.simulate import generate_alerts

CUSTOM_ID = 424242


@pytest.fixture
def registry() -> Iterator[str]:
    """A schema registry answering ``/schemas/ids/{id}`` for one id, as Confluent's does."""
    text = json.dumps(schemas.lsst_schema(schemas.latest_schema_id()), default=str)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == f"/schemas/ids/{CUSTOM_ID}":
                body = json.dumps({"schema": text}).encode()
                self.send_response(200)
            else:
                body = b'{"error_code": 40403, "message": "Schema not found"}'
                self.send_response(404)
            self.send_header("content-type", "application/vnd.schemaregistry.v1+json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_ids_unknown_offline_resolve_through_the_registry(registry: str, tmp_path: Path) -> None:
    alert = next(generate_alerts(1, seed=2))
    sid, body = wire.unframe(alert.payload)
    custom = wire.frame(CUSTOM_ID, bytes(body))
    offline = decode_batch(RawBatch.from_payloads([custom]))
    assert offline.accepted == 0 and "unknown LSST schema id 424242" in offline.rejects[0].reason
    online = decode_batch(RawBatch.from_payloads([custom, alert.payload]), registry_url=registry)
    assert online.rejects == [] and online.accepted == 2
    expected = fastavro.schemaless_reader(io.BytesIO(bytes(body)), schemas.lsst_schema(sid), None)
    assert isinstance(expected, dict)
    assert online.sources["diaSourceId"].to_pylist() == [expected["diaSource"]["diaSourceId"]] * 2
    # An id neither the registry nor the package knows is rejected with the registry's answer.
    missing = decode_batch(RawBatch.from_payloads([wire.frame(777777, bytes(body))]), registry_url=registry)
    assert "not in the registry" in missing.rejects[0].reason

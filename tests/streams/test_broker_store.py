"""The embedded broker's disk storage answers the S3 calls Tansu makes as S3 does, conditions included."""

from __future__ import annotations

import http.client
import socket
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nightjar.streams import broker_store

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


class Client:
    def __init__(self, port: int) -> None:
        self.port = port

    def __call__(self, method: str, path: str, body: bytes = b"", **headers: str) -> Answer:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(method, path, body=body, headers={k.replace("_", "-"): v for k, v in headers.items()})
            response = connection.getresponse()
            return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            connection.close()

    def keys(self, query: str) -> tuple[list[str], list[str], str | None]:
        answer = self("GET", f"/b?list-type=2&{query}")
        assert answer.status == 200
        root = ET.fromstring(answer.body)
        token = root.find(f"{NS}NextContinuationToken")
        return (
            [e.text or "" for e in root.iter(f"{NS}Key")],
            [e.findtext(f"{NS}Prefix") or "" for e in root.findall(f"{NS}CommonPrefixes")],
            token.text if token is not None else None,
        )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Client]:
    (tmp_path / "b").mkdir()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    httpd = broker_store.server(tmp_path, sock)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Client(sock.getsockname()[1])
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_conditional_writes_and_reads(store: Client) -> None:
    created = store("PUT", "/b/w.json", b"1", If_None_Match="*")
    assert created.status == 200
    tag = created.headers["etag"]
    # Create only if new: refused once it exists.
    assert store("PUT", "/b/w.json", b"2", If_None_Match="*").status == 412
    # Update only if unchanged: the first writer with the tag it read wins, the second is refused.
    updated = store("PUT", "/b/w.json", b"2", If_Match=tag)
    assert updated.status == 200 and updated.headers["etag"] != tag
    assert store("PUT", "/b/w.json", b"3", If_Match=tag).status == 412
    assert store("PUT", "/b/missing.json", b"3", If_Match=tag).status == 412
    got = store("GET", "/b/w.json")
    assert (got.status, got.body, got.headers["etag"]) == (200, b"2", updated.headers["etag"])
    assert store("GET", "/b/w.json", If_None_Match=updated.headers["etag"]).status == 304
    assert store("GET", "/b/w.json", If_None_Match=tag).status == 200
    assert store("GET", "/b/nothing").status == 404
    assert store("PUT", "/nobucket/k", b"x").status == 404


def test_ranges_head_and_delete(store: Client) -> None:
    assert store("PUT", "/b/t/p/r/0001.batch", b"0123456789").status == 200
    part = store("GET", "/b/t/p/r/0001.batch", Range="bytes=2-4")
    assert (part.status, part.body, part.headers["content-range"]) == (206, b"234", "bytes 2-4/10")
    assert store("GET", "/b/t/p/r/0001.batch", Range="bytes=-3").body == b"789"
    head = store("HEAD", "/b/t/p/r/0001.batch")
    assert (head.status, head.body, head.headers["content-length"]) == (200, b"", "10")
    assert store("DELETE", "/b/t/p/r/0001.batch").status == 204
    assert store("GET", "/b/t/p/r/0001.batch").status == 404
    # No empty folder is left to be listed as a common prefix.
    assert store.keys("prefix=t/&delimiter=/") == ([], [], None)


def test_listing_by_prefix_delimiter_and_page(store: Client) -> None:
    for key in ("c/topics/a.json", "c/topics/b.json", "c/topics/a/p/0/r/1", "c/topics/a/p/0/r/2", "c/meta.json"):
        assert store("PUT", f"/b/{key}", b"x").status == 200
    assert store.keys("prefix=c/topics/&delimiter=/") == (
        ["c/topics/a.json", "c/topics/b.json"],
        ["c/topics/a/"],
        None,
    )
    assert store.keys("prefix=c/topics/a/p/0/r/")[0] == ["c/topics/a/p/0/r/1", "c/topics/a/p/0/r/2"]
    assert store.keys("prefix=c/top")[0] == [
        "c/topics/a.json",
        "c/topics/a/p/0/r/1",
        "c/topics/a/p/0/r/2",
        "c/topics/b.json",
    ]
    first, _, token = store.keys("prefix=c/&max-keys=2")
    assert first == ["c/meta.json", "c/topics/a.json"] and token is not None
    rest, _, end = store.keys(f"prefix=c/&max-keys=2&continuation-token={token}")
    assert rest == ["c/topics/a/p/0/r/1", "c/topics/a/p/0/r/2"] and end is not None
    last, _, none = store.keys(f"prefix=c/&max-keys=2&continuation-token={end}")
    assert (last, none) == (["c/topics/b.json"], None)

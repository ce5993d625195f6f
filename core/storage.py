"""Where the lake and the context catalogues live: a local folder or an S3-compatible object store, and the options
to reach it.

The one place that turns a storage location into what the readers and writers need: a table's URI and the storage
options delta-rs takes (``storage_options``), or a pyarrow file system. Every lake function takes a ``home``: the
Nightjar home folder (``Path``; the lake is its ``lake/`` folder) or a :class:`LakeRoot` built from the settings
(``Settings.lake``), which is how the pipeline, its Dask workers and the API reach a lake on object storage
(``NIGHTJAR_LAKE_URI=s3://bucket/prefix``). Every catalogue function likewise takes the home folder (its
``catalogs/`` folder) or a :class:`CatalogsRoot` (``Settings.catalogs``, ``NIGHTJAR_CATALOGS_URI``), read and
written through :meth:`StorageRoot.filesystem`.

Storage options are those of delta-rs (the ``object_store`` crate): ``AWS_ENDPOINT_URL``, ``AWS_REGION``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_ALLOW_HTTP``,
``AWS_VIRTUAL_HOSTED_STYLE_REQUEST`` (path-style requests unless "true"). Options not given are read by delta-rs
from the process environment (the same ``AWS_*`` names).

Examples
--------
>>> root = LakeRoot("s3://alerts/nightjar", {"AWS_REGION": "eu-west-1"})
>>> root.table_uri("sources")
's3://alerts/nightjar/sources'
>>> lake_root(Path("/data/nj")).table_uri("sources")
'/data/nj/lake/sources'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath
from urllib.parse import urlparse

import pyarrow.fs as pafs

from nightjar import paths
from nightjar.errors import UserError

OBJECT_STORE_SCHEMES = ("s3", "s3a")
"""URI schemes of the object stores the lake may live on (S3 and S3-compatible servers)."""


class StorageError(UserError):
    """A storage location Nightjar cannot use (an unsupported scheme, a malformed URI)."""


def is_uri(value: str) -> bool:
    """True when ``value`` names an object-store location (``scheme://...``), not a local path.

    >>> is_uri("s3://bucket/lake"), is_uri("/data/lake")
    (True, False)
    """
    return "://" in value and not value.startswith("file://")


def check_uri(uri: str) -> str:
    """``uri`` without a trailing slash, if it is an object-store URI Nightjar supports; else a StorageError."""
    parsed = urlparse(uri)
    if parsed.scheme not in OBJECT_STORE_SCHEMES:
        raise StorageError(f"unsupported storage location {uri!r}: use a local folder or s3://bucket/prefix")
    if not parsed.netloc:
        raise StorageError(f"no bucket in {uri!r}: use s3://bucket/prefix")
    return uri.rstrip("/")


@dataclass(frozen=True)
class StorageRoot:
    """A folder on the local file system or ``s3://bucket/prefix`` on an object store, with the storage options
    reaching it. Picklable and small: Dask tasks carry it and need nothing else to reach the data."""

    uri: str
    options: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if is_uri(self.uri):
            object.__setattr__(self, "uri", check_uri(self.uri))
        else:
            local = self.uri.removeprefix("file://")
            object.__setattr__(self, "uri", str(Path(local).expanduser().resolve()))
        object.__setattr__(self, "options", dict(self.options))

    def __repr__(self) -> str:  # never show credentials
        return f"{type(self).__name__}({self.uri!r})"

    def __str__(self) -> str:
        return self.uri

    @property
    def is_local(self) -> bool:
        """True for a folder on the local file system."""
        return not is_uri(self.uri)

    @property
    def path(self) -> Path:
        """The local folder (a StorageError on object storage)."""
        if not self.is_local:
            raise StorageError(f"{self.uri} is not a local folder")
        return Path(self.uri)

    @property
    def storage_options(self) -> dict[str, str] | None:
        """The options delta-rs takes for this location (None locally, or when the environment supplies them)."""
        return dict(self.options) if self.options and not self.is_local else None

    def filesystem(self) -> pafs.FileSystem:
        """A pyarrow file system reaching this location; paths on it are ``bucket/prefix/...`` on object storage."""
        if self.is_local:
            return pafs.LocalFileSystem()
        return s3_filesystem(self.options)

    def fs_path(self, uri: str) -> str:
        """``uri`` (under this root) as a path on :meth:`filesystem`."""
        if self.is_local:
            return uri.removeprefix("file://")
        parsed = urlparse(uri)
        return f"{parsed.netloc}{parsed.path}"

    @property
    def fs_root(self) -> str:
        """This location as a path on :meth:`filesystem` (``bucket/prefix`` on object storage)."""
        return self.fs_path(self.uri)

    def check_reachable(self, fs: pafs.FileSystem | None = None) -> None:
        """A StorageError naming this location unless its object store answers and holds its bucket (a missing
        bucket would otherwise read as an empty folder). Local folders are not checked: absent means empty."""
        if self.is_local:
            return
        bucket = urlparse(self.uri).netloc
        try:
            found = (fs or self.filesystem()).get_file_info(bucket)
        except OSError as exc:
            raise StorageError(f"cannot reach {self.uri}: {exc}") from exc
        if found.type == pafs.FileType.NotFound:
            raise StorageError(
                f"no bucket {bucket!r} for {self.uri}: create it, or check the location and the storage options "
                "(NIGHTJAR_STORAGE_OPTIONS, AWS_* variables)"
            )


@dataclass(frozen=True, repr=False)
class LakeRoot(StorageRoot):
    """The folder holding the lake's Delta tables: a local path or ``s3://bucket/prefix``, with storage options.

    The pipeline sends it to its Dask workers, which need nothing else to reach the lake.
    """

    def table_uri(self, table: str) -> str:
        """Where the Delta table ``table`` lives (a local path or an object-store URI)."""
        return f"{self.uri}/{table}"


@dataclass(frozen=True, repr=False)
class CatalogsRoot(StorageRoot):
    """The folder holding the context catalogues (one HATS collection each, see ``nightjar.catalogs.layout``): a
    local path or ``s3://bucket/prefix``, with storage options. Catalogue handles carry it to the Dask workers."""


Home = Path | LakeRoot
"""What lake functions take: the Nightjar home folder (its ``lake/`` folder is the lake) or a :class:`LakeRoot`."""


def lake_root(home: Home | str) -> LakeRoot:
    """The lake of ``home``: ``home/lake`` for a local home folder, or the given root itself."""
    if isinstance(home, LakeRoot):
        return home
    if isinstance(home, str) and is_uri(home):
        raise StorageError(
            f"{home!r} is an object-store URI: the lake's location there is a LakeRoot (NIGHTJAR_LAKE_URI)"
        )
    return LakeRoot(str(paths.lake_dir(Path(home))))


CatalogsHome = Path | CatalogsRoot
"""What catalogue functions take: the Nightjar home folder (its ``catalogs/`` folder holds the catalogues) or a
:class:`CatalogsRoot`."""


def catalogs_root(home: CatalogsHome | str) -> CatalogsRoot:
    """The catalogues of ``home``: ``home/catalogs`` for a local home folder, or the given root itself.

    >>> catalogs_root(Path("/data/nj")).uri
    '/data/nj/catalogs'
    """
    if isinstance(home, CatalogsRoot):
        return home
    if isinstance(home, str) and is_uri(home):
        raise StorageError(
            f"{home!r} is an object-store URI: the catalogues' location there is a CatalogsRoot (NIGHTJAR_CATALOGS_URI)"
        )
    return CatalogsRoot(str(paths.catalogs_dir(Path(home))))


def filesystem_of(root: StorageRoot | None) -> pafs.FileSystem:
    """The file system of ``root`` (None: the local one)."""
    return root.filesystem() if root is not None else pafs.LocalFileSystem()


def _truthy(value: str | None) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def s3_filesystem(options: Mapping[str, str]) -> pafs.S3FileSystem:
    """A pyarrow S3 file system from delta-rs storage options (keys in any case); options not given are taken from
    the ``AWS_*`` environment variables, as delta-rs takes them, so both clients reach the same store."""
    upper = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    upper.update({k.upper(): v for k, v in options.items()})
    endpoint = upper.get("AWS_ENDPOINT_URL") or upper.get("AWS_ENDPOINT")
    scheme = None
    if endpoint:
        parsed = urlparse(endpoint)
        scheme = parsed.scheme or None
        endpoint = parsed.netloc or parsed.path
    return pafs.S3FileSystem(
        access_key=upper.get("AWS_ACCESS_KEY_ID"),
        secret_key=upper.get("AWS_SECRET_ACCESS_KEY"),
        session_token=upper.get("AWS_SESSION_TOKEN"),
        region=upper.get("AWS_REGION") or upper.get("AWS_DEFAULT_REGION"),
        endpoint_override=endpoint,
        scheme=scheme or ("http" if _truthy(upper.get("AWS_ALLOW_HTTP")) else "https"),
        force_virtual_addressing=_truthy(upper.get("AWS_VIRTUAL_HOSTED_STYLE_REQUEST")),
    )


# Small file operations on a pyarrow file system (local or object storage), for the catalogues' files; ``path`` is a
# path on ``fs`` (``StorageRoot.fs_path``).


def file_exists(fs: pafs.FileSystem, path: str | PurePath) -> bool:
    """True when ``path`` is a file on ``fs`` (an unreachable store raises, it never reads as absent)."""
    return bool(fs.get_file_info(str(path)).type == pafs.FileType.File)


def read_text(fs: pafs.FileSystem, path: str | PurePath) -> str:
    """The text of the file ``path`` on ``fs`` (FileNotFoundError when there is none)."""
    with fs.open_input_stream(str(path)) as stream:
        return bytes(stream.read()).decode()


def make_parent(fs: pafs.FileSystem, path: str | PurePath) -> None:
    """Create the folder of the file ``path`` on a local file system; object stores have no folders to create (each
    level would cost requests)."""
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(str(PurePosixPath(str(path)).parent), recursive=True)


def write_text(fs: pafs.FileSystem, path: str | PurePath, text: str) -> None:
    """Write ``text`` as the file ``path`` on ``fs`` (its folder is created as needed)."""
    make_parent(fs, path)
    with fs.open_output_stream(str(path)) as stream:
        stream.write(text.encode())


def list_folders(fs: pafs.FileSystem, path: str | PurePath) -> list[str]:
    """The names of the folders directly under ``path`` on ``fs``, sorted (none when ``path`` does not exist)."""
    found = fs.get_file_info(pafs.FileSelector(str(path), allow_not_found=True))
    return sorted(PurePosixPath(f.path).name for f in found if f.type == pafs.FileType.Directory)


def remove_tree(fs: pafs.FileSystem, path: str | PurePath) -> None:
    """Delete the folder ``path`` and everything under it, if it exists."""
    if fs.get_file_info(str(path)).type != pafs.FileType.NotFound:
        fs.delete_dir(str(path))

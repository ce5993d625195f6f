"""The on-disk layout of a context catalogue, in one place.

Each catalogue is a HATS *collection* under ``NIGHTJAR_CATALOGS_URI/<name>/`` (default
``NIGHTJAR_HOME/catalogs/<name>/``), the layout that ``hats`` and ``lsdb`` open::

    catalogs/<name>/
        collection.properties            the collection: primary catalogue and its margin cache
        nightjar.json                    kind, column mapping, version (ours; HATS readers ignore it)
        <name>/                          the primary catalogue
            hats.properties, properties
            partition_info.csv
            point_map.fits, skymap.fits
            dataset/_metadata, dataset/_common_metadata
            dataset/Norder=<k>/Dir=<d>/Npix=<n>.parquet   adaptive-order HEALPix partitions
        <name>_<T>arcs/                  the margin cache: rows of neighbouring partitions near each edge

Every partition file is sorted by the order-29 nested HEALPix index ``_healpix_29`` and starts with Nightjar's
standard columns; the source catalogue's own columns follow.

Locations are paths on the catalogues' file system (``CatalogsRoot.filesystem()``): a local ``Path``, or a
``PurePosixPath`` ``bucket/prefix/...`` on object storage.
"""

from __future__ import annotations

import re
from pathlib import PurePath, PurePosixPath

from nightjar.storage import CatalogsHome, catalogs_root

INFO_FILE = "nightjar.json"
# hats' names, inside each HATS catalogue (primary or margin)
PARTITION_INFO = "partition_info.csv"
DATASET_DIR = "dataset"
PARQUET_METADATA = "_metadata"
PARQUET_COMMON_METADATA = "_common_metadata"
COLLECTION_PROPERTIES = "collection.properties"
STAGING_PREFIX = ".staging-"
TRASH_PREFIX = ".trash-"

# Standard columns of every partition file (the first columns, in this order).
SPATIAL_INDEX = "_healpix_29"
SPATIAL_INDEX_ORDER = 29
RA = "ra"
DEC = "dec"
OBJECT_ID = "object_id"
Z = "z"  # spectroscopic redshift
PHOTO_Z = "photo_z"
SEMI_MAJOR = "semi_major_arcsec"
MAG = "mag"
OBJECT_TYPE = "object_type"
DISTANCE = "distance_mpc"  # redshift-independent distance
REACH = "_nj_reach_arcsec"  # the farthest an alert may lie and still match this row (rules at import)

STANDARD_COLUMNS: tuple[str, ...] = (
    SPATIAL_INDEX,
    RA,
    DEC,
    OBJECT_ID,
    Z,
    PHOTO_Z,
    SEMI_MAJOR,
    MAG,
    OBJECT_TYPE,
    DISTANCE,
    REACH,
)
# Columns a crossmatch needs besides the position (read from the partition files into worker caches).
ATTRIBUTE_COLUMNS: tuple[str, ...] = (OBJECT_ID, Z, PHOTO_Z, SEMI_MAJOR, MAG, OBJECT_TYPE, DISTANCE, REACH)

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid catalogue name (letters, digits, ``_`` and ``-``), else raise."""
    if not NAME_PATTERN.match(name):
        raise ValueError(
            f"invalid catalogue name {name!r}: use 1-64 letters, digits, '_' or '-', starting with a letter or digit"
        )
    return name


def root(home: CatalogsHome) -> PurePath:
    """The folder holding every catalogue, as a path on its file system (a ``Path`` when local)."""
    where = catalogs_root(home)
    return where.path if where.is_local else PurePosixPath(where.fs_root)


def collection_dir(home: CatalogsHome, name: str) -> PurePath:
    """The HATS collection folder of catalogue ``name``."""
    return root(home) / check_name(name)


def primary_dir(collection: PurePath) -> PurePath:
    """The primary catalogue inside a collection folder (named like the collection)."""
    return collection / collection.name


def margin_name(name: str, threshold_arcsec: float) -> str:
    """The margin catalogue's folder name, as hats-import names them (``<name>_<T>arcs``)."""
    return f"{name}_{threshold_arcsec:g}arcs".replace(".", "p")


def margin_dir(collection: PurePath, threshold_arcsec: float) -> PurePath:
    """The folder of a collection's margin catalogue at ``threshold_arcsec``."""
    return collection / margin_name(collection.name, threshold_arcsec)


def partition_file(catalog_dir: PurePath, order: int, pixel: int) -> PurePath:
    """``dataset/Norder=<order>/Dir=<dir>/Npix=<pixel>.parquet`` of a HATS catalogue."""
    directory = (pixel // 10_000) * 10_000
    return catalog_dir / DATASET_DIR / f"Norder={order}" / f"Dir={directory}" / f"Npix={pixel}.parquet"

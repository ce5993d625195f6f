"""Lake datasets read through Arrow's native file system, never deltalake's Python one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.fs as pafs

import nightjar.lake
from nightjar.lake import read
from nightjar.lake.serving import LakeReader


def _native(dataset: ds.Dataset) -> bool:
    assert isinstance(dataset, ds.FileSystemDataset)
    return not isinstance(dataset.filesystem, pafs.PyFileSystem)


def test_every_reader_scans_through_arrows_own_file_system(lake_home: Path) -> None:
    """deltalake's default file system runs Python on Arrow's I/O threads; a scan abandoned after a LIMIT kept
    them reading at interpreter exit, where they crashed or hung ``nightjar query`` (see tests/core/test_cli.py)."""
    served = read.datasets(lake_home)
    assert "sources" in served and all(_native(d) for d in served.values())
    snapshot = LakeReader(lake_home).snapshot()
    assert all(_native(d) for d in snapshot.tables.values())
    lake = nightjar.lake.open(lake_home)
    assert _native(lake.dataset("sources", [("night", ">=", 0)]))
    assert lake.to_arrow("sources", ["diaSourceId"]).num_rows == read.datasets(lake_home)["sources"].count_rows()


def test_a_home_path_with_spaces_and_percent_signs(tmp_path: Path, lake_home: Path) -> None:
    odd = tmp_path / "my lake 100%"
    shutil.copytree(lake_home, odd)
    served = read.datasets(odd)
    assert served["sources"].count_rows() == read.datasets(lake_home)["sources"].count_rows()

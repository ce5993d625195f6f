"""Lake and catalogue locations: local folders and S3 URIs, checked where the settings are built."""

from __future__ import annotations

from pathlib import Path

import pytest

from nightjar.settings import Settings
from nightjar.storage import CatalogsRoot, LakeRoot, StorageError


def test_object_store_locations_are_checked() -> None:
    with pytest.raises(ValueError, match="NIGHTJAR_LAKE_URI"):
        Settings(home="s3://bucket/nightjar")
    with pytest.raises(ValueError, match=r"(?s)lake_uri.*unsupported storage location 'gs://bucket/lake'"):
        Settings(lake_uri="gs://bucket/lake")
    with pytest.raises(StorageError):
        LakeRoot("s3:///no-bucket")
    root = Settings(lake_uri="s3://bucket/lake/", storage_options={"AWS_SECRET_ACCESS_KEY": "hidden"}).lake
    assert root.uri == "s3://bucket/lake" and root.storage_options == {"AWS_SECRET_ACCESS_KEY": "hidden"}
    assert "hidden" not in repr(root)
    assert Settings().lake == LakeRoot(str(Settings().home / "lake"))  # the default: NIGHTJAR_HOME/lake


def test_catalogue_locations_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"(?s)catalogs_uri.*unsupported storage location 'gs://bucket/catalogs'"):
        Settings(catalogs_uri="gs://bucket/catalogs")
    with pytest.raises(ValueError, match="no bucket in 's3:///catalogs'"):
        Settings(catalogs_uri="s3:///catalogs")
    root = Settings(catalogs_uri="s3://ctx/catalogs/", storage_options={"AWS_SECRET_ACCESS_KEY": "hidden"}).catalogs
    assert isinstance(root, CatalogsRoot) and root.uri == "s3://ctx/catalogs" and root.fs_root == "ctx/catalogs"
    assert root.options == {"AWS_SECRET_ACCESS_KEY": "hidden"} and "hidden" not in repr(root)
    # The default: NIGHTJAR_HOME/catalogs; a local folder of its own.
    assert Settings(home=tmp_path).catalogs == CatalogsRoot(str(tmp_path / "catalogs"))
    assert Settings(home=tmp_path, catalogs_uri=str(tmp_path / "ctx")).catalogs.path == tmp_path / "ctx"


def test_an_s3_home_is_a_clear_error_not_a_local_folder_named_s3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nightjar.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NIGHTJAR_HOME", "s3://bucket/nightjar")
    assert main(["lake", "tables"]) == 2
    said = capsys.readouterr()
    assert "NIGHTJAR_LAKE_URI" in said.out + said.err
    assert not (tmp_path / "s3:").exists()

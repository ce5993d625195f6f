"""Reading skymaps: bad input (not FITS, not HEALPix, a MOC, an unknown ordering, probabilities not summing to 1,
negative) is refused with a clear message and nothing is stored; list, deactivate and remove behave."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from nightjar import paths
from nightjar.catalogs.skymap import SkymapError, read_skymap
from nightjar.catalogs.skymap_store import active_specs, add_skymap, list_skymaps, remove_skymap, set_active
from nightjar.cli import main

from ..skymap_reference import BAYESTAR


def _edited(data_dir: Path, tmp_path: Path, edit: str) -> Path:
    out = tmp_path / f"{edit}.fits"
    with fits.open(data_dir / BAYESTAR) as hdus:
        if edit == "double":
            hdus[1].data["PROBDENSITY"] *= 2
        elif edit == "negative":
            hdus[1].data["PROBDENSITY"][0] = -1.0
        elif edit == "ordering":
            hdus[1].header["ORDERING"] = "ZORDER"
        elif edit == "pixtype":
            del hdus[1].header["PIXTYPE"]
            del hdus[1].header["ORDERING"]
        hdus.writeto(out)
    return out


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("double", "sum to 2"),
        ("negative", "non-negative"),
        ("ordering", "unknown HEALPix ordering 'ZORDER'"),
        ("pixtype", "not a HEALPix map"),
    ],
)
def test_bad_maps_are_refused_and_nothing_is_stored(
    home: Path, data_dir: Path, tmp_path: Path, edit: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _edited(data_dir, tmp_path, edit)
    with pytest.raises(SkymapError, match=message):
        read_skymap(path)
    monkeypatch.setenv("NIGHTJAR_HOME", str(home))
    assert main(["skymap", "add", str(path)]) == 2
    assert list_skymaps(home) == []
    stored = paths.catalogs_dir(home) / paths.SKYMAPS_DIR
    assert not stored.exists() or not any(stored.iterdir())


def test_not_fits_and_a_moc_are_refused(data_dir: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.fits"
    text.write_text("not a skymap\n")
    with pytest.raises(SkymapError, match="not a FITS file"):
        read_skymap(text)
    with pytest.raises(SkymapError, match="unknown HEALPix ordering 'RANGE'"):
        read_skymap(data_dir / "mocs" / "polygon_moc.fits")
    with pytest.raises(SkymapError, match="no such file"):
        read_skymap(tmp_path / "missing.fits")


def test_add_list_deactivate_remove(home: Path, data_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "map.fits"
    shutil.copy(data_dir / BAYESTAR, copy)
    first = add_skymap(home, read_skymap(copy))
    second = add_skymap(home, read_skymap(copy), event_id="other", window_days=3)
    assert (first.id, second.id) == (1, 2)
    assert [s.id for s in list_skymaps(home)] == [2, 1]  # same event time: newest id first
    set_active(home, 1, False)
    assert [s.id for s in active_specs(home)] == [2]
    remove_skymap(home, 2)
    assert [s.id for s in list_skymaps(home)] == [1] and active_specs(home) == ()
    with pytest.raises(SkymapError, match="no skymap 2"):
        remove_skymap(home, 2)
    with pytest.raises(SkymapError, match="positive number of days"):
        add_skymap(home, read_skymap(copy), window_days=-1)
    with pytest.raises(SkymapError, match="must be in"):
        add_skymap(home, read_skymap(copy), classification={"BNS": 1.5})
    assert [p.name for p in (paths.catalogs_dir(home) / paths.SKYMAPS_DIR).iterdir()] == ["1"]


def test_flat_map_without_healpix_size_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "odd.fits"
    cols = fits.ColDefs([fits.Column(name="PROB", format="D", array=np.full(100, 0.01))])
    hdu = fits.BinTableHDU.from_columns(cols)
    hdu.header["PIXTYPE"] = "HEALPIX"
    hdu.header["ORDERING"] = "NESTED"
    hdu.header["NSIDE"] = 3
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    with pytest.raises(SkymapError):
        read_skymap(path)

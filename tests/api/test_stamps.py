"""Broken cutouts are a StampError (the cutout endpoint's 422), never an exception that makes a 500."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pytest
from astropy.io import fits

from nightjar.api.stamps import StampError, render_png


def _header(nx: int, ny: int) -> bytes:
    header = fits.Header()
    header["SIMPLE"], header["BITPIX"], header["NAXIS"] = True, -32, 2
    header["NAXIS1"], header["NAXIS2"] = nx, ny
    return header.tostring().encode()


def _good() -> bytes:
    buf = io.BytesIO()
    fits.PrimaryHDU(np.arange(400, dtype=np.float32).reshape(20, 20)).writeto(buf)
    return buf.getvalue()


BROKEN = {
    "huge header, short data": _header(50000, 50000) + b"\0" * 2880,
    "truncated data": _header(100, 100) + b"\0" * 2880,
    "header only": _header(100, 100),
    "truncated header": _header(100, 100)[:100],
    "not FITS": b"hello",
    "empty": b"",
    "truncated gzip": gzip.compress(_good())[:60],
    "gzip of garbage": gzip.compress(b"x" * 5000),
    "gzip bomb": gzip.compress(b"\0" * (200 * 2**20)),
    "cut good file": _good()[:3000],
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_stamp_is_a_stamp_error(name: str) -> None:
    with pytest.raises(StampError):
        render_png(BROKEN[name])


def test_a_good_stamp_renders() -> None:
    assert render_png(_good())[:8] == b"\x89PNG\r\n\x1a\n"
    assert render_png(gzip.compress(_good()))[:8] == b"\x89PNG\r\n\x1a\n"

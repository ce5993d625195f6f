"""Cutouts as pictures: a FITS stamp rendered to PNG with a zscale interval and an asinh stretch."""

from __future__ import annotations

import gzip
import io

import numpy as np
from astropy.io import fits
from astropy.visualization import AsinhStretch, ZScaleInterval
from PIL import Image

GZIP_MAGIC = b"\x1f\x8b"


class StampError(ValueError):
    """Bytes that hold no 2-D image."""


def fits_image(data: bytes) -> np.ndarray:
    """The first 2-D image in FITS bytes (gzip-compressed or not; primary HDU or an extension)."""
    if data[:2] == GZIP_MAGIC:
        data = gzip.decompress(data)
    try:
        with fits.open(io.BytesIO(data)) as hdus:
            for hdu in hdus:
                if hdu.data is not None and np.ndim(hdu.data) == 2:
                    return np.asarray(hdu.data, dtype=np.float64)
    except OSError as exc:
        raise StampError(f"not a FITS file: {exc}") from None
    raise StampError("the FITS file holds no 2-D image")


def render_png(data: bytes, scale: int = 1) -> bytes:
    """A greyscale PNG of the stamp: zscale limits, asinh stretch, north up (FITS row 0 at the bottom)."""
    image = fits_image(data)
    finite = np.isfinite(image)
    if not finite.any():
        pixels = np.zeros(image.shape, dtype=np.uint8)
    else:
        filled = np.where(finite, image, np.nanmedian(image[finite]))
        low, high = ZScaleInterval().get_limits(filled)
        spread = high - low if high > low else 1.0
        unit = np.clip((filled - low) / spread, 0.0, 1.0)
        scaled = np.clip(np.nan_to_num(np.asarray(AsinhStretch()(unit), dtype=np.float64)), 0.0, 1.0)
        pixels = (scaled * 255).round().astype(np.uint8)
    picture = Image.fromarray(np.ascontiguousarray(pixels[::-1]), mode="L")
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()

"""Cutouts as pictures: a FITS stamp rendered to PNG with a zscale interval and an asinh stretch."""

from __future__ import annotations

import io
import warnings
import zlib

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning
from astropy.visualization import AsinhStretch, ZScaleInterval
from PIL import Image

from nightjar.errors import UserError

GZIP_MAGIC = b"\x1f\x8b"
MAX_PIXELS = 4096 * 4096  # a cutout is a few hundred pixels a side; a header may claim anything
MAX_FITS_BYTES = 8 * MAX_PIXELS + 2**20


class StampError(UserError):
    """Bytes that hold no 2-D image."""


def fits_image(data: bytes) -> np.ndarray:
    """The first 2-D image in FITS bytes (gzip-compressed or not; primary HDU or an extension); StampError for
    bytes that are not FITS, are truncated, or claim an image larger than a cutout can be."""
    if data[:2] == GZIP_MAGIC:
        try:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            data = inflater.decompress(data, MAX_FITS_BYTES)
        except zlib.error as exc:
            raise StampError(f"not a gzip stream: {exc}") from None
        if inflater.unconsumed_tail:
            raise StampError("the compressed stamp is larger than a cutout can be")
    try:
        # The bytes are the alert producer's: astropy's complaints about them (ZTF's non-standard SIMPLE card, a
        # truncated header) end in an image or in StampError here, not in a warning per web request.
        with (
            warnings.catch_warnings(action="ignore", category=AstropyUserWarning),
            fits.open(io.BytesIO(data), lazy_load_hdus=True) as hdus,
        ):
            for hdu in hdus:
                shape = _declared_shape(hdu.header)
                if len(shape) != 2:
                    continue
                if shape[0] * shape[1] > MAX_PIXELS:
                    raise StampError(f"the header claims a {shape[1]}x{shape[0]} image, larger than a cutout can be")
                if hdu.data is not None and np.ndim(hdu.data) == 2:
                    return np.asarray(hdu.data, dtype=np.float64)
    except StampError:
        raise
    except (OSError, ValueError, TypeError, IndexError, EOFError, MemoryError) as exc:
        raise StampError(f"not a complete FITS image: {type(exc).__name__}: {exc}") from None
    raise StampError("the FITS file holds no 2-D image")


def _declared_shape(header: fits.Header) -> tuple[int, ...]:
    axes = int(header.get("NAXIS", 0) or 0)
    return tuple(int(header.get(f"NAXIS{i}", 0) or 0) for i in range(axes, 0, -1))


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

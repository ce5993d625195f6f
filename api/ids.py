"""64-bit ids in requests: integers or strings of digits, never floats.

JSON numbers above 2**53 lose precision as floats: ``1.700000000010001e+17`` names another object than the one
meant, so a float (or ``true``, or ``"1e17"``) is a 422, not a rounded id.
"""

from __future__ import annotations

from typing import Annotated, Any

import pyarrow as pa
from pydantic import BeforeValidator

from nightjar.streams import ztf_model

INT64_MAX = 2**63 - 1


def strict_id(value: Any) -> int:
    """``value`` as an id: an int (not a bool) or a string of ASCII digits (at most 19, a
    leading minus allowed); ValueError otherwise.

    Examples
    --------
    >>> strict_id(170000000001000096), strict_id("170000000001000096")
    (170000000001000096, 170000000001000096)
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip()
        digits = text.removeprefix("-")
        if digits.isascii() and digits.isdigit() and len(digits) <= 19:
            return int(text)  # the range is the field's to check (a negative id gets its own message)
    raise ValueError(
        f"a 64-bit id is an integer or a string of digits, not {type(value).__name__} {value!r} "
        "(a JSON float cannot hold it exactly)"
    )


StrictId = Annotated[int, BeforeValidator(strict_id)]


def object_id(value: Any) -> int:
    """An object named as clients name it: a diaObjectId (an int or a string of digits, as ``strict_id``) or a
    ZTF object name (``ZTF18abcdefg``), which is the id of the stored ZTF object (``ztf_model.object_ids``);
    ValueError otherwise.

    Examples
    --------
    >>> object_id("170000000001000096") == 170000000001000096, object_id("ZTF18abcdefg") > 2**62
    (True, True)
    """
    if isinstance(value, str) and value.strip().startswith("ZTF"):
        ids, good = ztf_model.object_ids(pa.array([value.strip()], pa.string()))
        if good[0]:
            return int(ids[0])
        raise ValueError(f"{value!r} is not a ZTF object name (ZTF, two digits and seven letters a-z)")
    return strict_id(value)

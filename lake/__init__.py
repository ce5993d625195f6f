"""The lake: Delta tables under ``NIGHTJAR_HOME/lake`` or ``NIGHTJAR_LAKE_URI`` (``s3://``), committed once per
micro-batch.

``nightjar.lake.open(home)`` is the notebook entry point (see :mod:`nightjar.lake.access`); it is imported on
first use so that the command line does not pay for pyarrow and deltalake when it does not need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nightjar.lake.access import Lake, LakeError, open

__all__ = ["Lake", "LakeError", "open"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from nightjar.lake import access

        return getattr(access, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

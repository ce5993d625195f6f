"""The serving lake snapshot as a route dependency: ``snap: Lake`` in a route's parameters."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from nightjar.lake.serving import LakeReader, Snapshot


def current(request: Request) -> Snapshot:
    """The lake snapshot for this request (the reader checks for a newer one at most once a second)."""
    reader: LakeReader = request.app.state.lake
    return reader.snapshot()


def wrote(request: Request) -> None:
    """This request wrote to the lake: the next read of this process sees the write (not a snapshot a second old)."""
    reader: LakeReader = request.app.state.lake
    reader.invalidate()


Lake = Annotated[Snapshot, Depends(current)]

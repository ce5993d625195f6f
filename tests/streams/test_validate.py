"""Checks on decoded alerts beyond their schema: fluxes must be numbers (a re-serialised schema could say else)."""

from __future__ import annotations

import pyarrow as pa

from nightjar.streams import validate


def test_fluxes_that_are_not_numbers_are_named() -> None:
    good = {"sources": pa.table({"psfFlux": pa.array([1.0]), "psfFluxErr": pa.array([None], pa.float32())})}
    assert validate.bad_flux_types(good) is None
    text = {"sources": pa.table({"psfFlux": pa.array(["12.5"])})}
    assert validate.bad_flux_types(text) == "sources.psfFlux is string, not a number"
    nested = {"forced_sources": pa.table({"psfFluxErr": pa.array([[1.0]])})}
    assert "forced_sources.psfFluxErr is list<item: double>" in str(validate.bad_flux_types(nested))


def test_times_must_be_numbers() -> None:
    table = pa.table({"midpointMjdTai": pa.array(["60000"]), "_row": pa.array([4])})
    assert validate.invalid_times(table, "_row") == {4: "midpointMjdTai is not a number"}

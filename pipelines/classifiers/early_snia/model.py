"""Early SN Ia vs other: a logistic regression over an object's light-curve features (``objects`` columns).

The features are those the pipeline stores for every object (``pipelines.features``); missing values (too few
points for a feature) count as the training set's mean, with an indicator. The model file (``model.json``, made by
``train.py`` from simulator output) holds the feature names, their means and spreads, the weights and the
held-out accuracy it was made with.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

NAME = "early_snia"
MODEL_FILE = "model.json"
FEATURES = (
    "lc_amplitude",
    "lc_beyond_1_std",
    "lc_kurtosis",
    "lc_linear_fit_slope",
    "lc_linear_fit_reduced_chi2",
    "lc_skew",
    "lc_stetson_K",
    "lc_reduced_chi2",
    "BBBRiseRate",
    "BBBFallRate",
    "nPosDiaSources",
    "nSources",
    "latestPairColourMag",
    "lightCurveDays",
)
MIN_DETECTIONS = 3  # an opinion needs a few points


def design(objects: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """The raw feature matrix (NaN where missing) and which rows may be classified."""
    n = objects.num_rows
    columns = []
    for name in FEATURES:
        if name == "lightCurveDays":
            values = pc.subtract(objects["lastDiaSourceMjd"], objects["firstDiaSourceMjd"])
        elif name in objects.column_names:
            values = objects[name]
        else:
            values = pa.nulls(n, pa.float64())
        columns.append(np.asarray(pc.fill_null(pc.cast(values, pa.float64()), np.nan).to_numpy(zero_copy_only=False)))
    x = np.column_stack(columns) if columns else np.empty((n, 0))
    # signed log of the wide-ranged features (fluxes, rates, chi2): one scale for faint and bright objects
    x = np.sign(x) * np.log1p(np.abs(x))
    count = objects["nSources"] if "nSources" in objects.column_names else pa.nulls(n, pa.int64())
    ok = np.asarray(pc.fill_null(pc.greater_equal(count, MIN_DETECTIONS), False).to_numpy(zero_copy_only=False))
    return x, ok


def standardised(x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Standardised features and missing-value indicators, with a bias column."""
    missing = np.isnan(x)
    z = np.where(missing, 0.0, (x - mean) / scale)
    return np.column_stack([np.ones(len(x)), z, missing.astype(np.float64)])


@functools.cache
def load() -> dict[str, Any]:
    """The model file shipped beside this module."""
    data: dict[str, Any] = json.loads(resources.files(__package__).joinpath(MODEL_FILE).read_text())
    return data


def scores(objects: pa.Table, model: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """P(SN Ia) of each object, and which objects have enough detections for one."""
    model = model or load()
    if list(model["features"]) != list(FEATURES):
        raise ValueError("the model file was trained on other features: run train.py again")
    x, ok = design(objects)
    z = standardised(x, np.asarray(model["mean"]), np.asarray(model["scale"]))
    with np.errstate(over="ignore"):
        p = 1.0 / (1.0 + np.exp(-(z @ np.asarray(model["weights"]))))
    return p, ok


def classify(objects: pa.Table) -> pa.Table:
    """``diaObjectId, classification, score`` of the objects with enough detections: "SN Ia" when P(SN Ia) is
    above the model's threshold, else "other"."""
    model = load()
    p, ok = scores(objects, model)
    ids = objects["diaObjectId"].cast(pa.int64()).filter(pa.array(ok))
    p = p[ok]
    label = np.where(p >= model["threshold"], "SN Ia", "other")
    return pa.table({"diaObjectId": ids, "classification": pa.array(label, pa.string()), "score": pa.array(p)})

"""Train the early SN Ia classifier on simulator output and write ``model.json`` beside this file.

Two simulated surveys of different seeds: one to train on, one held out to measure accuracy. Each is decoded
and featured by the pipeline's own code (``streams.decode``, ``pipelines.features``); an object's label is its
true class (SN Ia or not; the simulator's SSOs are left out). The object's features are those of its alerts so far
(the simulated alerts of an object span its first days: an early classification). Logistic regression with a
little L2, fitted by Newton's method.

Run: ``python -m nightjar.pipelines.classifiers.early_snia.train [--alerts N] [--out PATH]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nightjar.lake.history import DETECTION_COLUMNS
from nightjar.pipelines.classifiers.early_snia.model import FEATURES, MODEL_FILE, design, standardised
from nightjar.pipelines.features import object_features
from nightjar.streams.decode import RawBatch, decode_batch
from nightjar.streams.simulate import SimConfig, Simulation

TRAIN_SEED, TEST_SEED = 1601, 1602
L2 = 1e-2


def simulated_objects(n_alerts: int, seed: int) -> tuple[pa.Table, np.ndarray]:
    """Features of the objects of a simulated survey (one row each) and whether each is an SN Ia."""
    sim = Simulation(n_alerts, seed=seed, config=SimConfig(cutout_size=4, hosts=False))
    payloads = [a.payload for a in sim.alerts()]
    detections = []
    sources = None
    for first in range(0, len(payloads), 2000):
        batch = decode_batch(RawBatch.from_payloads(payloads[first : first + 2000]))
        for table in (batch.sources, batch.prv_sources):
            if table.num_rows:
                detections.append(table.select(DETECTION_COLUMNS))
        sources = batch.sources if sources is None else pa.concat_tables([sources, batch.sources])
    every = pa.concat_tables(detections, promote_options="permissive")
    every = every.filter(pc.is_valid(every["diaObjectId"]))
    # each detection once (packet history repeats them)
    every = every.group_by(["diaObjectId", "midpointMjdTai", "band"], use_threads=False).aggregate(
        [("psfFlux", "first"), ("psfFluxErr", "first"), ("reliability", "first")]
    )
    every = every.rename_columns([c.removesuffix("_first") for c in every.column_names])
    features = object_features(every)
    truth = sim.truth().filter(pc.is_valid(sim.truth()["diaObjectId"]))
    features = features.join(truth.select(["diaObjectId", "class"]), keys="diaObjectId", join_type="inner")
    label = np.asarray(pc.equal(features["class"], "SNIa").to_numpy(zero_copy_only=False))
    return features, label


def fit(z: np.ndarray, y: np.ndarray, iterations: int = 50) -> np.ndarray:
    """Logistic regression weights by Newton's method (L2 on all but the bias)."""
    w = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], L2)
    penalty[0] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(z @ w)))
        grad = z.T @ (p - y) / len(y) + penalty * w
        hess = (z.T * (p * (1 - p))) @ z / len(y) + np.diag(penalty) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return w


def main(argv: list[str] | None = None) -> None:
    """Train the classifier on one simulated survey, measure it on the other, and write the model with its held-out
    figures to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=20_000, help="simulated alerts in each of the two surveys")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name(MODEL_FILE))
    args = parser.parse_args(argv)

    train, y_train = simulated_objects(args.alerts, TRAIN_SEED)
    test, y_test = simulated_objects(args.alerts, TEST_SEED)
    x_train, ok_train = design(train)
    x_test, ok_test = design(test)
    x_train, y_train = x_train[ok_train], y_train[ok_train]
    x_test, y_test = x_test[ok_test], y_test[ok_test]
    mean = np.nanmean(x_train, axis=0)
    scale = np.nanstd(x_train, axis=0)
    mean, scale = np.nan_to_num(mean), np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    w = fit(standardised(x_train, mean, scale), y_train.astype(float))
    threshold = 0.5
    p_test = 1.0 / (1.0 + np.exp(-(standardised(x_test, mean, scale) @ w)))
    predicted = p_test >= threshold
    accuracy = float(np.mean(predicted == y_test))
    baseline = float(max(y_test.mean(), 1 - y_test.mean()))
    tp = int(np.sum(predicted & y_test))
    model = {
        "version": "1",
        "features": list(FEATURES),
        "mean": mean.tolist(),
        "scale": scale.tolist(),
        "weights": w.tolist(),
        "threshold": threshold,
        "trained_on": {"alerts": args.alerts, "seed": TRAIN_SEED, "objects": len(y_train)},
        "held_out": {
            "alerts": args.alerts,
            "seed": TEST_SEED,
            "objects": len(y_test),
            "snia_fraction": round(float(y_test.mean()), 4),
            "accuracy": round(accuracy, 4),
            "majority_class_accuracy": round(baseline, 4),
            "snia_precision": round(tp / max(int(predicted.sum()), 1), 4),
            "snia_recall": round(tp / max(int(y_test.sum()), 1), 4),
        },
    }
    args.out.write_text(json.dumps(model, indent=1) + "\n")
    print(json.dumps(model["held_out"]))


if __name__ == "__main__":
    main()

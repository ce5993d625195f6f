"""Early SN Ia classifier plug-in: P(SN Ia) from an object's light-curve features (``model.py``), trained on the
simulator's classes by ``train.py`` (``python -m nightjar.pipelines.classifiers.early_snia.train``)."""

from __future__ import annotations

from nightjar.pipelines.classifiers import Classifier
from nightjar.pipelines.classifiers.early_snia.model import NAME, classify, load

CLASSIFIER = Classifier(
    name=NAME,
    version=str(load()["version"]),
    classify=classify,
    explanation="P(SN Ia) from light-curve features; logistic regression trained on simulated alerts",
)

"""The early SN Ia classifier plug-in: its model file, its held-out accuracy on a fresh simulated survey, its
annotations, and a filter that selects on its score in the batch that made it."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pyarrow.compute as pc
import pytest
from distributed import Client

from nightjar.pipelines.classifiers import annotations_of, chosen, registered
from nightjar.pipelines.classifiers.early_snia import model
from nightjar.pipelines.classifiers.early_snia.train import simulated_objects
from nightjar.pipelines.run import run
from nightjar.settings import Settings
from nightjar.sql import registry
from nightjar.sql.engine import query_lake
from nightjar.streams import kafka, simulate


def test_classifiers_are_chosen_by_name() -> None:
    assert [c.name for c in chosen(["early_snia"])] == ["early_snia"] and chosen([]) == ()
    with pytest.raises(ValueError, match="unknown classifier"):
        chosen(["no_such_classifier"])


def test_the_plug_in_is_registered_with_its_model() -> None:
    (clf,) = [c for c in registered() if c.name == "early_snia"]
    shipped = model.load()
    assert clf.version == shipped["version"] and shipped["features"] == list(model.FEATURES)
    held_out = shipped["held_out"]
    # the model beats always answering the majority class on the held-out survey it was measured on
    assert held_out["accuracy"] > held_out["majority_class_accuracy"] and held_out["objects"] >= 1000


def test_accuracy_on_a_fresh_simulated_survey_and_its_annotations() -> None:
    objects, is_snia = simulated_objects(4000, seed=777)  # neither the training nor the held-out seed
    p, ok = model.scores(objects)
    # the probability is the logistic of the standardised features, recomputed here with NumPy
    shipped = model.load()
    x, _ = model.design(objects)
    z = np.where(np.isnan(x), 0.0, (x - np.array(shipped["mean"])) / np.array(shipped["scale"]))
    logit = shipped["weights"][0] + z @ np.array(shipped["weights"][1 : 1 + x.shape[1]])
    logit += np.isnan(x).astype(float) @ np.array(shipped["weights"][1 + x.shape[1] :])
    assert p == pytest.approx(1 / (1 + np.exp(-logit)), rel=1e-9)
    accuracy = float(np.mean((p[ok] >= shipped["threshold"]) == is_snia[ok]))
    majority = max(is_snia[ok].mean(), 1 - is_snia[ok].mean())
    assert accuracy > majority + 0.05, (accuracy, majority)

    notes = annotations_of(objects, registered())
    mine = notes.filter(pc.equal(notes["topic"], "early_snia"))
    assert mine.num_rows == int(ok.sum())
    by_id = dict(zip(objects["diaObjectId"].to_pylist(), p, strict=True))
    for row in mine.to_pylist()[:200]:
        score = json.loads(row["classdict"])["score"]
        assert score == pytest.approx(by_id[row["diaObjectId"]], abs=1e-4)
        assert row["classification"] == ("SN Ia" if by_id[row["diaObjectId"]] >= shipped["threshold"] else "other")
    assert len(set(mine["annotationId"].to_pylist())) == mine.num_rows


@pytest.mark.slow
@pytest.mark.timeout(120)  # a pipeline run on Kafka and Dask: ~17 s on a quiet 2-core machine
def test_a_filter_selects_on_the_score_in_the_batch_that_made_it(kafka_settings: Settings, dask_client: Client) -> None:
    settings = kafka_settings.model_copy(update={"batch_size": 400, "classifiers": ["early_snia"]})
    topic = f"snia-{uuid.uuid4().hex[:8]}"
    n = simulate.produce(settings, topic, 800, seed=41, config=simulate.SimConfig(history_days=0))
    db = registry.engine(settings.metadata_url)
    sql = (
        "SELECT o.diaObjectId, a.classification FROM objects o JOIN annotations a USING (diaObjectId) "
        "WHERE a.topic = 'early_snia' AND a.classification = 'SN Ia'"
    )
    flt = registry.add_filter(db, "snia", sql)
    report = run(settings, dask_client, topic, max_alerts=n, idle_exit_s=30)
    assert report.accepted == n and not report.filter_errors
    stored = query_lake(settings, "SELECT * FROM annotations WHERE topic = 'early_snia'")
    assert stored.num_rows > 0
    static = query_lake(settings, "SELECT DISTINCT diaObjectId FROM (" + sql + ")")
    assert static.num_rows > 0, "the test needs SN Ia candidates"
    messages = kafka.read_messages(settings, flt.topic, report.matches["snia"] + 1, timeout_s=30)
    delivered = {json.loads(m.value)["diaObjectId"] for m in messages}
    assert {str(i) for i in static["diaObjectId"].to_pylist()} <= {str(d) for d in delivered}
    db.dispose()

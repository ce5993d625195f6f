"""Other brokers as annotators: Fink-shaped (JSON and Avro) and ALeRCE-shaped classification messages on a real
topic become annotations through the normal path, and a filter asking for objects "classified in contradiction"
by Fink and ALeRCE is triggered on the real broker for exactly those objects."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import fastavro
import pyarrow.compute as pc
import pytest
from confluent_kafka import Producer
from distributed import Client

from nightjar.api.broker_annotator import BrokerMessageError, annotation_of, records_of, run_broker_annotator
from nightjar.api.users import add_user_token
from nightjar.lake.annotations import read_annotations
from nightjar.pipelines.run import run
from nightjar.settings import Settings
from nightjar.sql import registry
from nightjar.sql.engine import query_lake
from nightjar.streams import kafka

CONTRADICTION = (
    "SELECT f.diaObjectId, f.classification AS fink, a.classification AS alerce FROM annotations f "
    "JOIN annotations a USING (diaObjectId) WHERE f.topic = 'fink' AND a.topic = 'alerce' "
    "AND f.classification = 'SN candidate' AND a.classification <> 'SNIa'"
)
FINK_AVRO_SCHEMA = {
    "type": "record",
    "name": "fink",
    "fields": [
        {
            "name": "diaObject",
            "type": {"type": "record", "name": "o", "fields": [{"name": "diaObjectId", "type": "long"}]},
        },
        {"name": "finkclass", "type": "string"},
        {"name": "rf_snia_vs_nonia", "type": "double"},
        {"name": "cdsxmatch", "type": "string"},
    ],
}


def _avro(record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.writer(out, FINK_AVRO_SCHEMA, [record])
    return out.getvalue()


def test_layouts() -> None:
    fink = annotation_of({"objectId": "12", "finkclass": "SN candidate", "rf_snia_vs_nonia": 0.8, "roid": 0})
    assert (fink.diaObjectId, fink.topic, fink.classification) == (12, "fink", "SN candidate")
    assert json.loads(fink.classdict) == {"rf_snia_vs_nonia": 0.8, "roid": "0"}
    alerce = annotation_of(
        {
            "oid": 7,
            "probabilities": [{"class_name": "SNIa", "probability": 0.2}, {"class_name": "AGN", "probability": 0.7}],
        }
    )
    assert (alerce.topic, alerce.classification, json.loads(alerce.classdict)) == (
        "alerce",
        "AGN",
        {"SNIa": 0.2, "AGN": 0.7},
    )
    ztf = annotation_of({"objectId": "ZTF18abcdefg", "finkclass": "Early SN Ia candidate"})
    assert ztf.diaObjectId > 2**62
    assert (
        records_of(
            _avro({"diaObject": {"diaObjectId": 5}, "finkclass": "x", "rf_snia_vs_nonia": 0.1, "cdsxmatch": "Unknown"})
        )[0]["finkclass"]
        == "x"
    )
    for bad in (b"not json", b"[1, 2]"):
        with pytest.raises(BrokerMessageError):
            records_of(bad)
    with pytest.raises(BrokerMessageError):
        annotation_of({"diaObjectId": 3})


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_fink_and_alerce_topics_become_annotations_that_trigger_a_filter(
    kafka_settings: Settings, dask_client: Client, lake_builder: Any
) -> None:
    settings = kafka_settings
    lake_builder(settings.home, alerts=120, batches=1)
    ids = query_lake(settings, "SELECT diaObjectId FROM objects ORDER BY diaObjectId LIMIT 4")[
        "diaObjectId"
    ].to_pylist()
    db = registry.engine(settings.metadata_url)
    flt = registry.add_filter(db, "brokers disagree", CONTRADICTION)
    add_user_token(settings, "brokers-bot", role="annotator", topics=("fink", "alerce"))

    topic = f"brokers-{uuid.uuid4().hex[:8]}"
    kafka.ensure_topics(settings, [topic])
    producer = Producer(kafka.producer_config(settings))
    messages = [
        # Fink says SN for objects 0, 1, 2 (object 1 as Avro); ALeRCE agrees on 0 and disagrees on 1 and 2.
        json.dumps({"diaObjectId": str(ids[0]), "finkclass": "SN candidate", "rf_snia_vs_nonia": 0.9}).encode(),
        _avro(
            {
                "diaObject": {"diaObjectId": ids[1]},
                "finkclass": "SN candidate",
                "rf_snia_vs_nonia": 0.7,
                "cdsxmatch": "Unknown",
            }
        ),
        json.dumps({"diaObjectId": ids[2], "finkclass": "SN candidate"}).encode(),
        json.dumps(
            {"oid": str(ids[0]), "classifier_name": "lc_classifier", "probabilities": {"SNIa": 0.8, "AGN": 0.2}}
        ).encode(),
        json.dumps(
            {
                "oid": str(ids[1]),
                "probabilities": [
                    {"class_name": "AGN", "probability": 0.6},
                    {"class_name": "SNIa", "probability": 0.4},
                ],
            }
        ).encode(),
        json.dumps({"oid": str(ids[2]), "probabilities": {"SNII": 0.55, "SNIa": 0.45}}).encode(),
        # Object 3: only ALeRCE; then an object the lake does not hold, and a message of neither layout.
        json.dumps({"oid": str(ids[3]), "probabilities": {"QSO": 1.0}}).encode(),
        json.dumps({"diaObjectId": "999", "finkclass": "SN candidate"}).encode(),
        b'{"hello": "world"}',
    ]
    for value in messages:
        producer.produce(topic, value=value)
    assert producer.flush(30) == 0
    producer.close()

    report = run_broker_annotator(settings, topic, "brokers-bot", max_messages=len(messages), idle_exit_s=20)
    assert (report.messages, report.annotations, report.unknown_objects, report.bad) == (9, 7, 1, 1)
    notes = read_annotations(settings.home, ids[1])
    assert sorted(notes["topic"].to_pylist()) == ["alerce", "fink"]
    assert set(notes["annotator"].to_pylist()) == {"brokers-bot"}
    fink_row = notes.filter(pc.equal(notes["topic"], "fink")).to_pylist()[0]
    assert json.loads(fink_row["classdict"]) == {"rf_snia_vs_nonia": 0.7, "cdsxmatch": "Unknown"}

    alerts_topic = f"none-{uuid.uuid4().hex[:8]}"
    kafka.ensure_topics(settings, [alerts_topic])
    ran = run(settings, dask_client, alerts_topic, idle_exit_s=8)
    assert ran.annotations == 7 and ran.matches["brokers disagree"] == 2
    got = kafka.read_messages(settings, flt.topic, 3, timeout_s=20)
    assert sorted(json.loads(m.value)["diaObjectId"] for m in got) == sorted([str(ids[1]), str(ids[2])])
    assert {json.loads(m.value)["alerce"] for m in got} == {"AGN", "SNII"}
    db.dispose()

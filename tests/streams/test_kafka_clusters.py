"""Production Kafka settings: input and output clusters really are two brokers, librdkafka properties (SASL, SSL)
reach the clients and fail clearly against the wrong listener, secrets stay out of messages, topics are created
as configured."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from distributed import Client

from nightjar import paths
from nightjar.cli import main
from nightjar.pipelines.run import run
from nightjar.settings import Settings
from nightjar.sql import registry
from nightjar.streams import broker, kafka, simulate

SECRET = "hunter2-not-for-logs"
SCRAM = {
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "SCRAM-SHA-512",
    "sasl.username": "nightjar",
    "sasl.password": SECRET,
}


@pytest.fixture(scope="module")
def output_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second real broker: the output cluster."""
    home = tmp_path_factory.mktemp("output-broker")
    state = broker.start(home, broker.free_port(), timeout_s=30)
    try:
        yield state.bootstrap
    finally:
        broker.stop(home)


def topics_of(settings: Settings, cluster: kafka.Cluster) -> set[str]:
    return set(AdminClient(kafka.client_config(settings, cluster)).list_topics(timeout=10).topics)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_alerts_are_read_from_the_input_cluster_and_everything_else_goes_to_the_output_cluster(
    kafka_settings: Settings, output_bootstrap: str, dask_client: Client
) -> None:
    settings = kafka_settings.model_copy(update={"kafka_output": output_bootstrap, "batch_size": 300})
    assert kafka.bootstrap_servers(settings, kafka.INPUT) != kafka.bootstrap_servers(settings, kafka.OUTPUT)
    topic = f"alerts-{uuid.uuid4().hex[:8]}"
    n = simulate.produce(settings, topic, 300, seed=5, config=simulate.SimConfig(history_days=0))
    with_garbage = Producer(kafka.producer_config(settings, kafka.INPUT))
    with_garbage.produce(topic, b"not an alert")
    # A message on the annotations topic of the output cluster: the run must read it there (and dead-letter it).
    kafka.ensure_topics(settings, [settings.annotations_topic], cluster=kafka.OUTPUT)
    note = Producer(kafka.producer_config(settings, kafka.OUTPUT))
    note.produce(settings.annotations_topic, b"not an annotation")
    assert with_garbage.flush(10) == 0 and note.flush(10) == 0
    db = registry.engine(settings.metadata_url)
    flt = registry.add_filter(db, "bright", "SELECT diaObjectId, diaSourceId FROM sources WHERE psfFlux > 8000")
    db.dispose()

    report = run(settings, dask_client, topic, idle_exit_s=10)

    assert report.accepted == n and report.dead_lettered == 1
    matches = report.matches["bright"]
    assert matches > 0
    assert len(kafka.read_messages(settings, flt.topic, matches + 1, timeout_s=20)) == matches
    dead = kafka.read_messages(settings, paths.dead_letter_topic(topic), 2, timeout_s=15)
    assert [m.value for m in dead] == [b"not an alert"]
    bad_notes = kafka.read_messages(settings, paths.dead_letter_topic(settings.annotations_topic), 2, timeout_s=15)
    assert [m.value for m in bad_notes] == [b"not an annotation"]
    made_on_input = topics_of(settings, kafka.INPUT)
    made_on_output = topics_of(settings, kafka.OUTPUT)
    assert topic in made_on_input and topic not in made_on_output
    for out in (flt.topic, paths.dead_letter_topic(topic), paths.dead_letter_topic(settings.annotations_topic)):
        assert out in made_on_output and out not in made_on_input, out
    # The annotation's offset is committed on the output cluster, the alerts' on the input cluster.
    for cluster, where, end in ((kafka.OUTPUT, settings.annotations_topic, 1), (kafka.INPUT, topic, None)):
        group = Consumer(kafka.consumer_config(settings, settings.consumer_group, cluster))
        try:
            parts = group.list_topics(where, timeout=10).topics[where].partitions
            committed = group.committed([TopicPartition(where, p) for p in parts], timeout=10)
        finally:
            group.close()
        total = sum(max(tp.offset, 0) for tp in committed)
        assert total == (end if end is not None else n + 1), (cluster, committed)


def test_a_sasl_client_against_a_plaintext_broker_fails_clearly_and_soon(kafka_settings: Settings) -> None:
    settings = kafka_settings.model_copy(update={"kafka_config": SCRAM})
    assert kafka.producer_config(settings)["sasl.password"] == SECRET  # the client gets the secret...
    started = time.monotonic()
    with pytest.raises(kafka.KafkaUnreachable) as caught:
        kafka.check_reachable(settings, timeout_s=4)
    assert time.monotonic() - started < 30
    message = str(caught.value)
    assert "SCRAM-SHA-512" in message and "'sasl.password': '***'" in message
    assert SECRET not in message  # ...and no message shows it
    assert "NIGHTJAR_KAFKA_CONFIG" in message


def test_ssl_against_a_plaintext_listener_stops_the_run_before_dask(
    kafka_settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NIGHTJAR_HOME", str(kafka_settings.home))
    monkeypatch.setenv("NIGHTJAR_KAFKA", str(kafka_settings.kafka))
    monkeypatch.setenv("NIGHTJAR_KAFKA_CONFIG", json.dumps({"security.protocol": "SSL", "ssl.key.password": SECRET}))
    monkeypatch.setenv("NIGHTJAR_SCHEDULER", "tcp://127.0.0.1:1")  # would fail differently if Dask were reached
    assert main(["run", "--topic", "t", "--idle-exit", "1"]) == 2
    err = capsys.readouterr().err
    assert "input cluster" in err and "security.protocol" in err and SECRET not in err


def test_properties_are_passed_through_to_librdkafka(kafka_settings: Settings) -> None:
    """librdkafka itself judges the properties: a misspelt mechanism is refused by name at once."""
    settings = kafka_settings.model_copy(update={"kafka_config": {**SCRAM, "sasl.mechanism": "SCRAM-SHA-1024"}})
    with pytest.raises(KafkaException, match="SCRAM-SHA-1024"):
        Producer(kafka.producer_config(settings))


def test_settings_read_the_properties_from_the_environment_and_never_show_secrets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NIGHTJAR_KAFKA", "kafka.example.org:9094")
    monkeypatch.setenv("NIGHTJAR_KAFKA_CONFIG", json.dumps({"security.protocol": "SASL_SSL", "sasl.password": SECRET}))
    monkeypatch.setenv("NIGHTJAR_KAFKA_OUTPUT", "out.example.org:9092")
    monkeypatch.setenv("NIGHTJAR_TOPIC_REPLICATION_FACTOR", "3")
    settings = Settings(home=tmp_path)
    assert kafka.client_config(settings, kafka.INPUT) == {
        "bootstrap.servers": "kafka.example.org:9094",
        "security.protocol": "SASL_SSL",
        "sasl.password": SECRET,
    }
    # Another output cluster does not inherit the input cluster's credentials.
    assert kafka.client_config(settings, kafka.OUTPUT) == {"bootstrap.servers": "out.example.org:9092"}
    assert settings.topic_replication_factor == 3
    assert SECRET not in repr(settings) and SECRET not in settings.model_dump_json()
    same = Settings(home=tmp_path, kafka_output=None)
    assert kafka.client_config(same, kafka.OUTPUT) == kafka.client_config(same, kafka.INPUT)


def test_created_topics_get_the_configured_partitions(kafka_settings: Settings) -> None:
    settings = kafka_settings.model_copy(update={"topic_partitions": 3})
    topic = f"made-{uuid.uuid4().hex[:8]}"
    kafka.ensure_topics(settings, [topic], cluster=kafka.OUTPUT)
    meta = AdminClient(kafka.client_config(settings)).list_topics(topic, timeout=10).topics[topic]
    assert len(meta.partitions) == 3

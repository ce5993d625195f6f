"""``nightjar annotator --topic T --user NAME``: the built-in annotator for other brokers' classifications.

It consumes a topic of Fink or ALeRCE classification messages and writes each as an annotation by the annotator
user ``NAME`` (topics ``fink`` and/or ``alerce``), through the same checks and path as the annotations API.
"""

from __future__ import annotations

import argparse

from rich.console import Console

from nightjar.cli_help import add_command
from nightjar.settings import Settings

console = Console(stderr=True)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``annotator`` to the ``nightjar`` sub-commands."""
    p = add_command(
        sub,
        "annotator",
        "Run the built-in annotator that writes Fink and ALeRCE classifications (from a Kafka topic) as "
        "annotations, so filters can compare brokers.",
        "nightjar user add fink-bot --role annotator --topic fink --topic alerce",
        "nightjar annotator --topic fink.classifications --user fink-bot",
        "nightjar annotator --topic alerce.lc_classifier --user fink-bot --idle-exit 60",
    )
    p.set_defaults(handler=run)
    p.add_argument("--topic", required=True, help="the Kafka topic of classification messages")
    p.add_argument("--user", required=True, help="the annotator user the annotations are written as")
    p.add_argument("--idle-exit", type=float, help="stop after this many seconds without a message")
    p.add_argument("--max-messages", type=int, help="stop after this many messages")


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Run the broker annotator over a topic of Fink or ALeRCE classifications and print what it wrote."""
    from nightjar.api.broker_annotator import run_broker_annotator

    report = run_broker_annotator(settings, args.topic, args.user, args.max_messages, args.idle_exit)
    console.print(
        f"{report.messages} messages: {report.annotations} annotations written, "
        f"{report.unknown_objects} of objects not in the lake, {report.bad} not classifications"
    )
    return 0

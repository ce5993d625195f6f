"""The exceptions that are the user's to fix: the CLI prints their message instead of a traceback."""

from __future__ import annotations

from pydantic import ValidationError

from nightjar.pipelines.email_digest import EmailError
from nightjar.sql.metadata_db import MetadataSchemaError
from nightjar.sql.parse import QueryError
from nightjar.sql.registry import RegistryError
from nightjar.streams.broker import BrokerError
from nightjar.streams.files import AlertFileError
from nightjar.streams.kafka import KafkaNotConfigured

USER_ERRORS: tuple[type[Exception], ...] = (
    QueryError,
    RegistryError,
    MetadataSchemaError,
    EmailError,
    BrokerError,
    KafkaNotConfigured,
    AlertFileError,
    ValidationError,
    FileNotFoundError,
    ValueError,
)

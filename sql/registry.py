"""The filter registry: add, edit, copy, delete and list filters in the metadata database.

A filter belongs to an owner (a plain string until accounts exist; ``local`` for the command line), has a name
unique to its owner, SQL with a version history, a visibility (``private``, ``public`` or ``group``), an active
flag, a delivery mode (``all`` matching alerts, or ``new`` objects only) and output channels: its Kafka topic
``nightjar.filter.<id>`` (stable across renames and edits), e-mail addresses and webhook URLs. Public filters can
be copied by anyone and modified.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlparse

import httpx
from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, selectinload

from nightjar import paths
from nightjar.errors import UserError
from nightjar.safe_text import address_ok, unsafe_character
from nightjar.sql import avro_results, metadata_db
from nightjar.sql.compile import FilterSpec
from nightjar.sql.filter_check import FilterShape, check_filter_sql
from nightjar.sql.registry_models import (
    EMAIL,
    FORMATS,
    KAFKA,
    MODES,
    VISIBILITIES,
    WEBHOOK,
    AvroSchemaRow,
    DeliveryStateRow,
    FilterRow,
    OutputRow,
    VersionRow,
)
from nightjar.storage import Home

LOCAL_OWNER = "local"
_Row = TypeVar("_Row")


class RegistryError(UserError):
    """A filter that does not exist, a name already taken, or a change the requester may not make."""


@dataclass(frozen=True)
class Filter:
    """A registered filter, detached from the database session (small and picklable, it travels to workers)."""

    id: int
    name: str
    sql: str
    version: int
    active: bool = True
    owner: str = LOCAL_OWNER
    visibility: str = "private"
    group: str | None = None
    mode: str = "all"
    kafka: bool = True
    format: str = "json"
    emails: tuple[str, ...] = ()
    webhooks: tuple[str, ...] = ()
    failures: int = 0
    last_error: str | None = None
    copied_from: int | None = None

    @property
    def topic(self) -> str:
        """The Kafka topic of the filter's matches."""
        return paths.filter_topic(self.id)

    @property
    def spec(self) -> FilterSpec:
        """What the filter compiler needs of this filter: id, version, SQL."""
        return FilterSpec(self.id, self.version, self.sql)

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels this filter delivers to: ``kafka``, ``email``, ``webhook``."""
        out = [KAFKA] if self.kafka else []
        out += [EMAIL] if self.emails else []
        out += [WEBHOOK] if self.webhooks else []
        return tuple(out)


@dataclass(frozen=True)
class Version:
    """One version of a filter: its name, SQL and mode, and when it was made."""

    version: int
    name: str
    sql: str
    mode: str
    created: datetime


def engine(url: str) -> Engine:
    """An engine on the metadata database, its schema current (see ``nightjar.sql.metadata_db.engine``)."""
    return metadata_db.engine(url)


def _detach(row: FilterRow) -> Filter:
    return Filter(
        id=row.id,
        name=row.name,
        sql=row.sql,
        version=row.version,
        active=row.active,
        owner=row.owner,
        visibility=row.visibility,
        group=row.group_name,
        mode=row.mode,
        kafka=row.kafka,
        format=row.format,
        emails=tuple(o.target for o in row.outputs if o.kind == EMAIL),
        webhooks=tuple(o.target for o in row.outputs if o.kind == WEBHOOK),
        failures=row.failures,
        last_error=row.last_error,
        copied_from=row.copied_from,
    )


def _check_choice(value: str, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        raise RegistryError(f"unknown {what} {value!r}: choose one of {', '.join(allowed)}")
    return value


MAX_NAME = 200


def check_name(name: str) -> str:
    """``name`` if it can name a filter: not blank, not too long, and safe in an e-mail subject or Kafka header
    (no control or separator character, no encoded word)."""
    if not name.strip():
        raise RegistryError("a filter needs a name")
    if len(name) > MAX_NAME:
        raise RegistryError(f"a filter name has at most {MAX_NAME} characters")
    bad = unsafe_character(name)
    if bad is not None:
        raise RegistryError(f"a filter name may not contain {bad} (control, separator or encoded-word text)")
    return name


def check_email(address: str) -> str:
    """``address`` if it is one plain address (``local@domain.tld``, ASCII): no lists, display names, comments,
    encoded words or separators that could add a header."""
    if not address_ok(address):
        raise RegistryError(f"not an e-mail address (one plain local@domain.tld): {address!r}")
    return address


def check_webhook(url: str) -> str:
    """``url`` if it is an http(s) URL with a host that can be encoded (IDNA) and sent (where it points is
    checked when posting)."""
    problem = f"a webhook must be an http:// or https:// URL with a valid host, not {url!r}"
    if unsafe_character(url.replace("=?", "")) is not None or any(c.isspace() for c in url):
        raise RegistryError(problem)
    try:
        parsed = urlparse(url)
        host = parsed.hostname
        parsed.port  # noqa: B018 - raises ValueError on a bad port
        if parsed.scheme not in ("http", "https") or not host:
            raise RegistryError(problem)
        if not host.startswith("[") and ":" not in host:
            host.encode("idna")
        httpx.URL(url)
    except (ValueError, UnicodeError, httpx.InvalidURL):
        raise RegistryError(problem) from None
    return url


def check_format(shape: FilterShape, format: str) -> None:
    """A filter delivered as Avro must return columns Avro can carry: named (aliased) and of Avro types."""
    if format != "avro":
        return
    try:
        avro_results.avro_schema(shape.schema, 0, 1)
    except avro_results.AvroSchemaError as exc:
        raise RegistryError(f"this filter cannot be delivered as Avro: {exc}") from None


def _set_outputs(row: FilterRow, emails: Iterable[str] | None, webhooks: Iterable[str] | None) -> None:
    keep = [o for o in row.outputs if (o.kind == EMAIL and emails is None) or (o.kind == WEBHOOK and webhooks is None)]
    new = [OutputRow(kind=EMAIL, target=check_email(e)) for e in emails or ()]
    new += [OutputRow(kind=WEBHOOK, target=check_webhook(u)) for u in webhooks or ()]
    row.outputs = keep + new


def _bump_version(row: FilterRow) -> None:
    """A new version of the filter: failures forgotten, the new SQL kept in the history."""
    row.version += 1
    row.failures, row.last_error = 0, None
    _record_version(row)


def _record_version(row: FilterRow) -> None:
    row.versions.append(VersionRow(version=row.version, name=row.name, sql=row.sql, mode=row.mode))


def fetch(session: Session, cls: type[_Row], row_id: int, what: str, options: Sequence[Any] = ()) -> _Row:
    """The row ``row_id`` of a filter, watchlist or watchmap (``what``), or an error saying there is none."""
    row = session.get(cls, row_id, options=options)
    if row is None:
        raise RegistryError(f"no {what} {row_id}")
    return row


def check_owner(what: str, owner: str, requester: str) -> None:
    """Only the owner of ``what`` (``filter 3``, ``watchlist 7``) may change it."""
    if owner != requester:
        raise RegistryError(f"{what} belongs to {owner}, not {requester}")


def _load(session: Session, filter_id: int) -> FilterRow:
    return fetch(session, FilterRow, filter_id, "filter", options=[selectinload(FilterRow.outputs)])


def _owned(row: FilterRow, requester: str) -> FilterRow:
    check_owner(f"filter {row.id}", row.owner, requester)
    return row


def add_filter(
    eng: Engine,
    name: str,
    sql: str,
    *,
    owner: str = LOCAL_OWNER,
    visibility: str = "private",
    group: str | None = None,
    mode: str = "all",
    emails: Sequence[str] = (),
    webhooks: Sequence[str] = (),
    kafka: bool = True,
    format: str = "json",
    copied_from: int | None = None,
    home: Home | None = None,
) -> Filter:
    """Register a filter; the owner's filter of the same name gets the new SQL as its next version.

    The SQL is checked first (it must parse, read only the views and bind, with the columns of the lake in
    ``home`` when given), so a broken filter never reaches the pipeline.
    """
    check_name(name)
    _check_choice(visibility, VISIBILITIES, "visibility")
    _check_choice(mode, MODES, "mode")
    _check_choice(format, FORMATS, "format")
    check_format(check_filter_sql(sql, home), format)
    sql = sql.strip().rstrip(";").strip()
    with Session(eng) as session, session.begin():
        row = session.scalar(select(FilterRow).where(FilterRow.owner == owner, FilterRow.name == name))
        if row is None:
            row = FilterRow(
                owner=owner,
                name=name,
                sql=sql,
                version=1,
                active=True,
                visibility=visibility,
                group_name=group,
                mode=mode,
                kafka=kafka,
                format=format,
                copied_from=copied_from,
                failures=0,
            )
            session.add(row)
            _set_outputs(row, emails, webhooks)
            _record_version(row)
        else:
            changed = row.sql != sql or row.mode != mode
            row.sql, row.mode, row.visibility, row.group_name = sql, mode, visibility, group
            row.kafka, row.format = kafka, format
            _set_outputs(row, emails, webhooks)
            if changed:
                _bump_version(row)
        session.flush()
        return _detach(row)


def edit_filter(
    eng: Engine,
    filter_id: int,
    *,
    requester: str = LOCAL_OWNER,
    sql: str | None = None,
    name: str | None = None,
    active: bool | None = None,
    visibility: str | None = None,
    group: str | None = None,
    mode: str | None = None,
    emails: Sequence[str] | None = None,
    webhooks: Sequence[str] | None = None,
    kafka: bool | None = None,
    format: str | None = None,
    home: Home | None = None,
) -> Filter:
    """Change a filter. New SQL or a new mode make a new version; a rename keeps the version and the topic.
    ``home``: check new SQL with the columns of that lake (as ``add_filter``)."""
    shape = None
    if sql is not None:
        shape = check_filter_sql(sql, home)
        sql = sql.strip().rstrip(";").strip()
    if name is not None:
        check_name(name)
    with Session(eng) as session, session.begin():
        row = _owned(_load(session, filter_id), requester)
        if (format or row.format) == "avro" and (format is not None or sql is not None):
            check_format(shape or check_filter_sql(row.sql, home), "avro")
        new_version = (sql is not None and sql != row.sql) or (mode is not None and mode != row.mode)
        if sql is not None:
            row.sql = sql
        if name is not None:
            clash = session.scalar(
                select(FilterRow).where(FilterRow.owner == row.owner, FilterRow.name == name, FilterRow.id != row.id)
            )
            if clash is not None:
                raise RegistryError(f"{row.owner} already has a filter named {name!r} (id {clash.id})")
            row.name = name
        if active is not None:
            row.active = active
            if active:
                row.failures = 0
        if visibility is not None:
            row.visibility = _check_choice(visibility, VISIBILITIES, "visibility")
        if group is not None:
            row.group_name = group
        if mode is not None:
            row.mode = _check_choice(mode, MODES, "mode")
        if kafka is not None:
            row.kafka = kafka
        if format is not None:
            row.format = _check_choice(format, FORMATS, "format")
        _set_outputs(row, emails, webhooks)
        if new_version:
            _bump_version(row)
        session.flush()
        return _detach(row)


def copy_filter(
    eng: Engine, filter_id: int, *, owner: str = LOCAL_OWNER, name: str | None = None, home: Home | None = None
) -> Filter:
    """A new filter of ``owner`` with the SQL and mode of a public filter (or one of the owner's own)."""
    with Session(eng) as session:
        source = _load(session, filter_id)
        if source.visibility != "public" and source.owner != owner:
            raise RegistryError(f"filter {filter_id} is not public: only its owner can copy it")
        sql, mode, fmt, source_name = source.sql, source.mode, source.format, source.name
    return add_filter(
        eng,
        name or f"{source_name} (copy)",
        sql,
        owner=owner,
        mode=mode,
        format=fmt,
        copied_from=filter_id,
        home=home,
    )


def delete_filter(eng: Engine, filter_id: int, *, requester: str = LOCAL_OWNER) -> Filter:
    """Remove a filter with its history and outputs; its id (and topic) is never given to another filter."""
    with Session(eng) as session, session.begin():
        row = _owned(_load(session, filter_id), requester)
        gone = _detach(row)
        session.delete(row)
        session.execute(delete(DeliveryStateRow).where(DeliveryStateRow.filter_id == filter_id))
    return gone


def get_filter(eng: Engine, filter_id: int) -> Filter:
    """One filter by id; RegistryError if there is none."""
    with Session(eng) as session:
        return _detach(_load(session, filter_id))


def versions(eng: Engine, filter_id: int) -> list[Version]:
    """A filter's version history, oldest first."""
    with Session(eng) as session:
        row = _load(session, filter_id)
        return [Version(v.version, v.name, v.sql, v.mode, v.created) for v in row.versions]


def list_filters(
    eng: Engine, active_only: bool = False, owner: str | None = None, visible_to: str | None = None
) -> list[Filter]:
    """Filters by id; ``visible_to`` keeps the requester's own filters and public ones."""
    with Session(eng) as session:
        query = select(FilterRow).options(selectinload(FilterRow.outputs)).order_by(FilterRow.id)
        if active_only:
            query = query.where(FilterRow.active.is_(True))
        if owner is not None:
            query = query.where(FilterRow.owner == owner)
        if visible_to is not None:
            query = query.where((FilterRow.owner == visible_to) | (FilterRow.visibility == "public"))
        return [_detach(r) for r in session.scalars(query)]


def record_health(eng: Engine, errors: dict[int, str | None], max_failures: int) -> list[Filter]:
    """Note each filter's batch: an error counts a failure, success clears them; ``max_failures`` in a row
    deactivate the filter. Returns the filters deactivated now."""
    stopped: list[Filter] = []
    if not errors:
        return stopped
    with Session(eng) as session, session.begin():
        rows = session.scalars(
            select(FilterRow).options(selectinload(FilterRow.outputs)).where(FilterRow.id.in_(list(errors)))
        )
        for row in rows:
            message = errors[row.id]
            if message is None:
                if row.failures:
                    row.failures = 0
                continue
            row.failures += 1
            row.last_error = message
            row.last_error_at = datetime.now(UTC)
            if row.failures >= max_failures and row.active:
                row.active = False
                stopped.append(_detach(row))
    return stopped


def publish_avro_schema(eng: Engine, filter_id: int, version: int, schema_json: str, fingerprint: str) -> int:
    """The id of an Avro schema in the metadata database (published on first use; the same schema, the same id)."""
    with Session(eng) as session, session.begin():
        row = session.scalar(select(AvroSchemaRow).where(AvroSchemaRow.fingerprint == fingerprint))
        if row is None:
            row = AvroSchemaRow(fingerprint=fingerprint, filter_id=filter_id, version=version, schema=schema_json)
            session.add(row)
            session.flush()
        return row.id


def avro_schema(eng: Engine, schema_id: int) -> str:
    """The JSON text of a published Avro schema."""
    with Session(eng) as session:
        row = session.get(AvroSchemaRow, schema_id)
        if row is None:
            raise RegistryError(f"no Avro schema {schema_id}")
        return row.schema

"""The metadata database's tables, on one declarative base: users, filters (their version history, outputs,
Avro schemas and delivery state), watchlists and watchmaps.

SQLite under ``NIGHTJAR_HOME`` by default, PostgreSQL (or any SQLAlchemy database) by URL. The schema is made and
changed by the Alembic migrations of ``nightjar.sql.migrations`` (see ``nightjar.sql.metadata_db``): a table or
column added here needs a migration too (tests/sql/test_migrations.py fails until it has one). Filter ids are never
reused (``AUTOINCREMENT`` on SQLite, a sequence elsewhere), so a deleted filter's topic is never recycled.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

VISIBILITIES = ("private", "public", "group")
MODES = ("all", "new")  # every matching alert, or an object's first match only
FORMATS = ("json", "avro")
# A filter's delivery channels, as it lists them (``Filter.channels``) and the ledger records them: its Kafka topic
# (a flag on the filter), and e-mail and webhook outputs (its ``outputs`` rows, of these kinds).
KAFKA, EMAIL, WEBHOOK = "kafka", "email", "webhook"
OUTPUT_KINDS = (EMAIL, WEBHOOK)


def _now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """The declarative base of the metadata database's tables."""

    pass


class FilterRow(Base):
    """A registered filter: its current name, SQL and version, owner, sharing, delivery settings and health."""

    __tablename__ = "filters"
    __table_args__ = (UniqueConstraint("owner", "name", name="uq_filters_owner_name"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(200), default="local", index=True)
    name: Mapped[str] = mapped_column(String(200))
    sql: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    visibility: Mapped[str] = mapped_column(String(16), default="private")
    group_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    mode: Mapped[str] = mapped_column(String(8), default="all")
    kafka: Mapped[bool] = mapped_column(Boolean, default=True)
    format: Mapped[str] = mapped_column(String(8), default="json")
    copied_from: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, onupdate=_now)
    # Health, reported to the owner: consecutive failing batches and the last error.
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_error_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    outputs: Mapped[list[OutputRow]] = relationship(
        back_populates="filter", cascade="all, delete-orphan", order_by="OutputRow.id"
    )
    versions: Mapped[list[VersionRow]] = relationship(
        back_populates="filter", cascade="all, delete-orphan", order_by="VersionRow.version"
    )


class VersionRow(Base):
    """Every version a filter had: its SQL and name then, and when."""

    __tablename__ = "filter_versions"

    filter_id: Mapped[int] = mapped_column(ForeignKey("filters.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    sql: Mapped[str] = mapped_column(Text)
    mode: Mapped[str] = mapped_column(String(8), default="all")
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)

    filter: Mapped[FilterRow] = relationship(back_populates="versions")


class OutputRow(Base):
    """An output channel besides the filter's Kafka topic: an e-mail address or a webhook URL."""

    __tablename__ = "filter_outputs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    filter_id: Mapped[int] = mapped_column(ForeignKey("filters.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(2000))

    filter: Mapped[FilterRow] = relationship(back_populates="outputs")


class AvroSchemaRow(Base):
    """A published Avro schema of a filter version's payloads; its id is in every Avro message's header."""

    __tablename__ = "avro_schemas"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    filter_id: Mapped[int] = mapped_column(Integer, index=True)
    version: Mapped[int] = mapped_column(Integer)
    schema: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class DeliveryStateRow(Base):
    """The latest delivery status of one filter match on one channel (``nightjar.sql.delivery_state``): the keyed
    copy of the lake's filter ledger that delivery consults, so a batch looks up its own keys only."""

    __tablename__ = "delivery_state"

    filter_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)  # the delivery key (``sql.matches``)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # pending, delivered or failed (``lake.ledger``)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class _OwnedWatch:
    """What watchlists and watchmaps share: an owner and a name, shared like a filter, switched on or off, a
    version per change of their contents, and the job that matches them against the lake's history."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(200), default="local", index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    visibility: Mapped[str] = mapped_column(String(16), default="private")
    group_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    history_job: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, onupdate=_now)


class WatchlistRow(_OwnedWatch, Base):
    """A watchlist: a named set of cones, owned and shared like a filter. Its cones are a Parquet file per
    version (``paths.watchlist_key``, under the catalogues' root); ``version`` changes with every change of the
    cones. Ids are never reused."""

    __tablename__ = "watchlists"
    __table_args__ = (
        UniqueConstraint("owner", "name", name="uq_watchlists_owner_name"),
        {"sqlite_autoincrement": True},
    )

    radius_arcsec: Mapped[float] = mapped_column(Float, default=2.0)
    cones: Mapped[int] = mapped_column(Integer, default=0)


class WatchmapRow(_OwnedWatch, Base):
    """A watchmap: a named sky area (a MOC), owned and shared like a filter; its MOC is a FITS file per version
    (``paths.watchmap_key``, under the catalogues' root). Ids are never reused."""

    __tablename__ = "watchmaps"
    __table_args__ = (
        UniqueConstraint("owner", "name", name="uq_watchmaps_owner_name"),
        {"sqlite_autoincrement": True},
    )

    kind: Mapped[str] = mapped_column(String(16), default="moc")  # how it was made: moc, polygon, circle, skymap
    max_order: Mapped[int] = mapped_column(Integer, default=0)
    sky_fraction: Mapped[float] = mapped_column(Float, default=0.0)


class UserRow(Base):
    """An API user: a unique name, a role, the SHA-256 digest of its token (see ``nightjar.api.users``)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    # Annotators: the topics they may annotate, comma-separated.
    topics: Mapped[str] = mapped_column(Text, default="")
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)

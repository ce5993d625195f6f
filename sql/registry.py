"""The filter registry in the metadata database (SQLite under NIGHTJAR_HOME by default, PostgreSQL by URL)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Boolean, DateTime, Integer, String, Text, create_engine, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from nightjar import paths


class Base(DeclarativeBase):
    pass


class FilterRow(Base):
    __tablename__ = "filters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    sql: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class Filter:
    """A registered streaming filter, detached from the database session."""

    id: int
    name: str
    sql: str
    version: int
    active: bool

    @property
    def topic(self) -> str:
        return paths.filter_topic(self.id)


def engine(url: str) -> Engine:
    """An engine on the metadata database, with its tables created."""
    eng = create_engine(url)
    Base.metadata.create_all(eng)
    return eng


def _detach(row: FilterRow) -> Filter:
    return Filter(id=row.id, name=row.name, sql=row.sql, version=row.version, active=row.active)


def add_filter(eng: Engine, name: str, sql: str) -> Filter:
    """Register a filter; a filter of the same name gets the new SQL as its next version."""
    with Session(eng) as session, session.begin():
        row = session.scalar(select(FilterRow).where(FilterRow.name == name))
        if row is None:
            row = FilterRow(name=name, sql=sql, version=1, active=True)
            session.add(row)
        elif row.sql != sql:
            row.sql = sql
            row.version += 1
        session.flush()
        return _detach(row)


def list_filters(eng: Engine, active_only: bool = False) -> list[Filter]:
    with Session(eng) as session:
        query = select(FilterRow).order_by(FilterRow.id)
        if active_only:
            query = query.where(FilterRow.active.is_(True))
        return [_detach(r) for r in session.scalars(query)]

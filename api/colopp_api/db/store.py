"""The store: every read and write of the API's tables, as short synchronous transactions.

Runs on the event loop: each call is one small transaction (SQLite in WAL mode or a local
PostgreSQL), far below the supervisor's 50 ms heartbeat period.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from colopp.errors import ConfigError
from colopp_api.db.models import Event, MetricSample, Protection


def alembic_config(url: str) -> Config:
    """An Alembic config for the packaged migrations, aimed at ``url``."""
    cfg = Config()
    cfg.set_main_option("script_location", "colopp_api:migrations")
    cfg.attributes["url"] = url
    return cfg


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout.

    Raises:
        ConfigError: the URL is malformed or names a driver that is not installed.
    """
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        return create_engine(url, pool_pre_ping=True)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise ConfigError(f"database URL {url!r}: {exc}") from exc


def migrate(engine: Engine, url: str) -> None:
    """Bring the schema to the newest revision (``alembic upgrade head``)."""
    cfg = alembic_config(url)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


def row_dict(row: Protection) -> dict[str, Any]:
    """A protection row as plain data."""
    return {c.name: getattr(row, c.name) for c in Protection.__table__.columns}


class Store:
    """Protections, events and samples."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._session = sessionmaker(engine, expire_on_commit=False)

    def session(self) -> Session:
        return self._session()

    # -- protections -------------------------------------------------------------------
    def add_protection(self, **fields: Any) -> dict[str, Any]:
        now = time.time()
        row = Protection(created_at=now, updated_at=now, stopped=False, checkpoints=0, **fields)
        with self.session() as s, s.begin():
            s.add(row)
        return row_dict(row)

    def update_protection(self, protection_id: str, **fields: Any) -> None:
        fields["updated_at"] = time.time()
        with self.session() as s, s.begin():
            s.execute(update(Protection).where(Protection.id == protection_id).values(**fields))

    def protection(self, protection_id: str) -> dict[str, Any] | None:
        with self.session() as s:
            row = s.get(Protection, protection_id)
            return row_dict(row) if row is not None else None

    def protections(self) -> list[dict[str, Any]]:
        with self.session() as s:
            rows = s.scalars(select(Protection).order_by(Protection.created_at))
            return [row_dict(r) for r in rows]

    # -- events ------------------------------------------------------------------------
    def add_events(
        self, protection_id: str, events: Iterable[tuple[float, str, dict[str, Any]]]
    ) -> None:
        rows = [Event(protection_id=protection_id, t=t, type=k, data=d) for t, k, d in events]
        if not rows:
            return
        with self.session() as s, s.begin():
            s.add_all(rows)

    def events(
        self, protection_id: str, after: int, limit: int, kind: str | None
    ) -> list[dict[str, Any]]:
        query = select(Event).where(Event.protection_id == protection_id, Event.id > after)
        if kind is not None:
            query = query.where(Event.type == kind)
        with self.session() as s:
            rows = s.scalars(query.order_by(Event.id).limit(limit))
            return [{"id": r.id, "t": r.t, "type": r.type, "data": r.data} for r in rows]

    # -- samples -----------------------------------------------------------------------
    def add_sample(self, protection_id: str, t: float, data: dict[str, Any]) -> None:
        with self.session() as s, s.begin():
            s.add(MetricSample(protection_id=protection_id, t=t, data=data))

    def samples(self, protection_id: str, since: float, limit: int) -> list[dict[str, Any]]:
        query = (
            select(MetricSample)
            .where(MetricSample.protection_id == protection_id, MetricSample.t > since)
            .order_by(MetricSample.t)
            .limit(limit)
        )
        with self.session() as s:
            return [{"t": r.t, **r.data} for r in s.scalars(query)]

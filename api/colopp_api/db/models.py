"""Tables: protections (options, state, the pair record), their events and metric samples."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of the API's tables."""


class Protection(Base):
    """One protected VM: what was asked, where it stands, and how to re-attach to it."""

    __tablename__ = "protections"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(32), index=True)
    placement: Mapped[str] = mapped_column(String(16))
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    primary_host: Mapped[str | None] = mapped_column(String(64), nullable=True)
    secondary_host: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # colopp.controller.store.pair_record(): enough to re-attach after a restart.
    record: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Placement-specific facts: the lab's prefix, state dir, lock holder; the service.
    runtime: Mapped[dict[str, Any]] = mapped_column(JSON)
    stopped: Mapped[bool] = mapped_column(Boolean, default=False)
    checkpoints: Mapped[int] = mapped_column(Integer, default=0)
    last_checkpoint_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class Event(Base):
    """Something that happened to a protection: checkpoint, divergence, failover, state..."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_protection_id_id", "protection_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    protection_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("protections.id", ondelete="CASCADE")
    )
    t: Mapped[float] = mapped_column(Float)
    type: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class MetricSample(Base):
    """One sample of a protection's counters (about one a second)."""

    __tablename__ = "metric_samples"
    __table_args__ = (Index("ix_metric_samples_protection_id_t", "protection_id", "t"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    protection_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("protections.id", ondelete="CASCADE")
    )
    t: Mapped[float] = mapped_column(Float)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)

"""The compliance package's own tables: sampling reviews (案卷评查) and their verdicts.

On the catalog's declarative base, so one Alembic history (catalog/migrations) creates
them; every change is also a signed custody event (compliance.review).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from catalog.models import Base, Recording, utcnow

# Coverage reads a few officers' recordings in a time window: by device (the assignment at
# capture) or by officer (no assignment), each with the capture start. Declared here, on
# the catalog's recordings table, because the compliance migration (0007) creates them.
# The device index also holds officer_id (and id, which SQLite's indexes hold anyway), so
# an officer's search tests a carried recording's officer in the index, not its row
# (access.policy._own_recordings; migration 0011).
Index(
    "ix_recordings_device_captured",
    Recording.device_id,
    Recording.captured_at,
    Recording.officer_id,
    postgresql_include=["id"],
)
Index("ix_recordings_officer_captured", Recording.officer_id, Recording.captured_at)


class ReviewSample(Base):
    """One reproducible draw of actions of a unit and period for review."""

    __tablename__ = "review_samples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    unit: Mapped[str] = mapped_column(String(200), index=True)
    period: Mapped[str] = mapped_column(String(16))  # 2026, 2026-11 or 2026-11-03 (CST)
    seed: Mapped[str] = mapped_column(String(200))
    count: Mapped[int] = mapped_column(Integer)
    # SHA-256 of the population's canonical JSON (compliance.review.population_hash).
    population_hash: Mapped[str] = mapped_column(String(64))
    population: Mapped[list[Any]] = mapped_column(JSON, default=list)  # action keys, sorted
    sample: Mapped[list[Any]] = mapped_column(JSON, default=list)  # drawn keys, in draw order
    actor: Mapped[str] = mapped_column(String(200))
    # A redraw under the same seed after the population changed names the earlier draw.
    supersedes: Mapped[int | None] = mapped_column(ForeignKey("review_samples.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReviewVerdict(Base):
    """A reviewer's verdict on one sampled action; a later verdict on it supersedes."""

    __tablename__ = "review_verdicts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sample_id: Mapped[int] = mapped_column(ForeignKey("review_samples.id"), index=True)
    action_id: Mapped[int] = mapped_column(ForeignKey("enforcement_actions.id"), index=True)
    verdict: Mapped[str] = mapped_column(String(8))  # 完整 | 不完整 | 不规范
    checklist: Mapped[dict[str, Any]] = mapped_column(default=dict)  # item -> true/false
    notes: Mapped[str] = mapped_column(Text, default="")
    reviewer: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    rectified_at: Mapped[datetime | None] = mapped_column(default=None)
    rectified_by: Mapped[str | None] = mapped_column(String(200), default=None)
    rectification: Mapped[str | None] = mapped_column(Text, default=None)

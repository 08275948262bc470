"""The ORM model: a note with a title, a body and a done flag."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

TITLE_MAX_LENGTH = 200
BODY_MAX_LENGTH = 10_000


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(TITLE_MAX_LENGTH))
    body: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )
    done: Mapped[bool] = mapped_column(Boolean, default=False)

    @property
    def created_at_utc(self) -> datetime:
        # SQLite has no time zone type and hands back naive datetimes: they were
        # written in UTC, so say so.
        value = self.created_at
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "body": self.body,
            "done": self.done,
            "created_at": self.created_at_utc.isoformat().replace("+00:00", "Z"),
        }

    def __repr__(self) -> str:
        return f"Note(id={self.id!r}, title={self.title!r}, done={self.done!r})"

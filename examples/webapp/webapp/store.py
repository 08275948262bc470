"""Data access for notes. Blocking (SQLAlchemy sessions): call it from a thread.

The routes call these methods through ``run_in_threadpool`` so the event loop never
waits on the database. Returned ``Note`` objects are detached from their session but
keep their loaded values (``expire_on_commit=False``), so templates can read them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from .db import Database
from .models import Note


class NoteStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def list(self, *, limit: int = 100, offset: int = 0) -> list[Note]:
        query = (
            select(Note)
            .order_by(Note.created_at.desc(), Note.id.desc())
            .limit(limit)
            .offset(offset)
        )
        with self.db.transaction() as session:
            return list(session.scalars(query))

    def count(self) -> int:
        with self.db.transaction() as session:
            return session.scalar(select(func.count()).select_from(Note)) or 0

    def get(self, note_id: int) -> Note | None:
        with self.db.transaction() as session:
            return session.get(Note, note_id)

    def create(self, fields: dict[str, Any]) -> Note:
        note = Note(**fields)
        with self.db.transaction() as session:
            session.add(note)
            session.flush()  # assigns id and defaults
            session.refresh(note)
        return note

    def update(self, note_id: int, changes: dict[str, Any]) -> Note | None:
        with self.db.transaction() as session:
            note = session.get(Note, note_id)
            if note is None:
                return None
            for field, value in changes.items():
                setattr(note, field, value)
            session.flush()
            session.refresh(note)
            return note

    def toggle(self, note_id: int) -> Note | None:
        with self.db.transaction() as session:
            note = session.get(Note, note_id)
            if note is not None:
                note.done = not note.done
            return note

    def delete(self, note_id: int) -> bool:
        with self.db.transaction() as session:
            note = session.get(Note, note_id)
            if note is None:
                return False
            session.delete(note)
            return True

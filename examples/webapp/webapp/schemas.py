"""Validation of note input, shared by the JSON API and the HTML form."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .models import BODY_MAX_LENGTH, TITLE_MAX_LENGTH

FIELDS = ("title", "body", "done")


class ValidationError(Exception):
    """Invalid input; ``errors`` maps each bad field to what is wrong with it."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(", ".join(f"{field}: {msg}" for field, msg in errors.items()))
        self.errors = errors


def validate_note(data: Mapping[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """Check a note's fields and return them cleaned (titles are stripped).

    ``partial=False`` (create): title is required, body and done are optional.
    ``partial=True`` (update): every field is optional, only those given are returned.
    """
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}

    for field in data:
        if field not in FIELDS:
            errors[field] = "unknown field"

    if "title" in data:
        title = data["title"]
        if not isinstance(title, str):
            errors["title"] = "must be a string"
        elif not title.strip():
            errors["title"] = "must not be blank"
        elif len(title.strip()) > TITLE_MAX_LENGTH:
            errors["title"] = f"must be at most {TITLE_MAX_LENGTH} characters"
        else:
            clean["title"] = title.strip()
    elif not partial:
        errors["title"] = "is required"

    if "body" in data:
        body = data["body"]
        if body is None:
            body = ""
        if not isinstance(body, str):
            errors["body"] = "must be a string"
        elif len(body) > BODY_MAX_LENGTH:
            errors["body"] = f"must be at most {BODY_MAX_LENGTH} characters"
        else:
            clean["body"] = body

    if "done" in data:
        if not isinstance(data["done"], bool):
            errors["done"] = "must be true or false"
        else:
            clean["done"] = data["done"]

    if errors:
        raise ValidationError(errors)
    return clean

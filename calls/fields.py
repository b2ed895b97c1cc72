"""Model fields."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.fields.json import KeyTransform
from django.utils.translation import gettext_lazy as _

from retellhub import fastjson


class JSONField(models.JSONField):
    """Django's JSONField, encoded and decoded with orjson (retellhub/fastjson.py).

    The call objects stored here are big and every webhook writes and reads several of
    them; with the standard library their JSON was a quarter of a delivery's CPU. Custom
    ``encoder``/``decoder`` arguments still work: they take Django's own path.
    """

    def deconstruct(self) -> Any:
        # Stored exactly as Django's JSONField (same column, same text), so migrations see
        # Django's field: no migration, and no table rebuild on SQLite, for a codec.
        name, _path, args, kwargs = super().deconstruct()
        return name, "django.db.models.JSONField", args, kwargs

    def get_placeholder(self, value: Any, compiler: Any, connection: BaseDatabaseWrapper) -> str:
        # Its presence keeps Django's PostgreSQL bulk insert off UNNEST, which sends each
        # column as one array literal: psycopg's client-side binding escapes every element
        # in Python (a regex substitution per quote), and for our 10-20 KB JSON and raw
        # bodies that cost more CPU than the rest of a webhook. One row of plain
        # placeholders per object instead.
        return "%s"

    def get_db_prep_value(
        self, value: Any, connection: BaseDatabaseWrapper, prepared: bool = False
    ) -> Any:
        if self.encoder is not None:
            return super().get_db_prep_value(value, connection, prepared)
        if not prepared:
            value = self.get_prep_value(value)
        if connection.vendor == "postgresql":
            from psycopg.types.json import Jsonb

            return Jsonb(value, dumps=fastjson.dumps_str)
        return fastjson.dumps_str(value)

    def from_db_value(self, value: Any, expression: Any, connection: BaseDatabaseWrapper) -> Any:
        if self.decoder is not None or not isinstance(value, str):
            return super().from_db_value(value, expression, connection)
        if isinstance(expression, KeyTransform):
            # A key extracted in SQL may be a bare scalar: Django's rules apply.
            return super().from_db_value(value, expression, connection)
        try:
            return fastjson.loads(value)
        except ValueError:
            return value


class JSONTextField(models.TextField):
    """A JSON document the database keeps as plain text.

    For documents written often and never searched inside: the call's transcripts and its
    merge bookkeeping. A JSONField is ``jsonb`` on PostgreSQL, which parses every value on
    write (each word timing of a transcript becomes a ``numeric``), and carries a
    ``JSON_VALID`` check on SQLite, which parses it too. Measured on the 2-core benchmark
    machine, that parsing was about a sixth of PostgreSQL's CPU per webhook delivery. The
    values are written by our own encoder, so they are valid JSON without the check.

    In Python it behaves as a JSONField (lists and dicts in, lists and dicts out); in SQL
    only ``isnull`` and whole-value comparisons make sense, and no key lookups exist.
    """

    description = "A JSON document stored as text"
    # For django-stubs: the values are documents, not strings.
    _pyi_private_set_type: Any
    _pyi_private_get_type: Any

    def get_prep_value(self, value: Any) -> Any:
        return None if value is None else fastjson.dumps_str(value)

    def from_db_value(self, value: Any, expression: Any, connection: BaseDatabaseWrapper) -> Any:
        return None if value is None else fastjson.loads(value)

    def to_python(self, value: Any) -> Any:
        # A document in text form (a fixture, a form) becomes the document it holds.
        if isinstance(value, str):
            try:
                return fastjson.loads(value)
            except ValueError:
                raise ValidationError(_("Enter valid JSON."), code="invalid") from None
        return value

    def value_to_string(self, obj: models.Model) -> Any:
        # Serialised (dumpdata) as the document, as a JSONField is: loaddata reads it back.
        return self.value_from_object(obj)

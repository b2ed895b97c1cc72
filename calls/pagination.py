"""Keyset ("cursor") pagination for the API's lists.

DRF's CursorPagination keys on the first ordering column only and breaks on NULLs (a
call without a duration or cost would turn the cursor into the string "None"). Here the
cursor is the last row's (sort value, primary key), so pages stay stable while calls
arrive, NULLs have a place in either direction, and no OFFSET grows with the page number.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import F, Model, Q, QuerySet
from django.utils import timezone
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param


@dataclass(frozen=True, slots=True)
class Ordering:
    key: str  # as the client writes it, e.g. "-duration"
    field: str  # the model field behind it
    descending: bool

    def order_by(self) -> list[Any]:
        # NULL sorts as the largest value, as PostgreSQL does by itself: first when
        # descending, last when ascending. Then a plain index on the column serves both
        # directions (a backward scan for the default newest-first list); SQLite is told.
        column = F(self.field)
        if self.descending:
            return [column.desc(nulls_first=True), "-pk"]
        return [column.asc(nulls_last=True), "pk"]

    def after(self, value: Any, pk: int) -> Q:
        """Rows that come after the row (value, pk) in this ordering."""
        field, tie = self.field, ("pk__lt" if self.descending else "pk__gt")
        is_null = Q(**{f"{field}__isnull": True})
        if value is None:
            among_nulls = is_null & Q(**{tie: pk})
            # Descending, the NULLs came first and every value is still to come.
            return among_nulls | ~is_null if self.descending else among_nulls
        beyond = Q(**{f"{field}__{'lt' if self.descending else 'gt'}": value})
        rest = beyond | Q(**{field: value, tie: pk})
        if self.descending:
            # The redundant bound lets PostgreSQL turn the OR into an index range.
            return Q(**{f"{field}__lte": value}) & rest
        return rest | is_null


def orderings(fields: Mapping[str, str]) -> dict[str, Ordering]:
    """``{"duration": "duration_ms"}`` -> the ascending and descending orderings by key."""
    result = {}
    for key, field in fields.items():
        result[key] = Ordering(key=key, field=field, descending=False)
        result[f"-{key}"] = Ordering(key=f"-{key}", field=field, descending=True)
    return result


class KeysetPagination(BasePagination):
    """The view declares ``cursor_orderings`` ({key: field}) and ``default_ordering``."""

    cursor_param = "cursor"
    page_size_param = "page_size"
    ordering_param = "ordering"

    def paginate_queryset(
        self, queryset: QuerySet[Any], request: Request, view: Any = None
    ) -> list[Any]:
        self.request = request
        self.ordering = self._ordering(request, view)
        size = self._page_size(request)
        rows = queryset.order_by(*self.ordering.order_by())
        position = self._position(request, queryset.model)
        if position is not None:
            rows = rows.filter(self.ordering.after(*position))
        page = list(rows[: size + 1])
        self.next_row = page[size - 1] if len(page) > size else None
        return page[:size]

    def get_paginated_response(self, data: Any) -> Response:
        return Response({"next": self._next_link(), "results": data})

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["next", "results"],
            "properties": {
                "next": {
                    "type": "string",
                    "format": "uri",
                    "nullable": True,
                    "description": "The next page, or null on the last one.",
                },
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        keys = list(orderings(view.cursor_orderings))
        return [
            _query_param(self.cursor_param, {"type": "string"}, "Opaque; from `next`."),
            _query_param(
                self.page_size_param,
                {"type": "integer", "minimum": 1, "maximum": settings.API_MAX_PAGE_SIZE},
                f"Rows per page (default {settings.API_PAGE_SIZE}).",
            ),
            _query_param(
                self.ordering_param,
                {"type": "string", "enum": keys},
                f"Sort key; a leading '-' sorts descending. Default {view.default_ordering}.",
            ),
        ]

    def _ordering(self, request: Request, view: Any) -> Ordering:
        choices = orderings(view.cursor_orderings)
        key = request.query_params.get(self.ordering_param) or view.default_ordering
        if key not in choices:
            raise ValidationError({self.ordering_param: [f"Choose one of {', '.join(choices)}."]})
        return choices[key]

    def _page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_param)
        if raw is None or raw == "":
            return int(settings.API_PAGE_SIZE)
        limit = int(settings.API_MAX_PAGE_SIZE)
        if not raw.isdigit() or not 1 <= int(raw) <= limit:
            raise ValidationError({self.page_size_param: [f"An integer from 1 to {limit}."]})
        return int(raw)

    def _position(self, request: Request, model: type[Model]) -> tuple[Any, int] | None:
        raw = request.query_params.get(self.cursor_param)
        if not raw:
            return None
        try:
            key, value, pk = json.loads(base64.urlsafe_b64decode(raw.encode("ascii")))
            if key != self.ordering.key or not isinstance(pk, int) or not 0 < pk < 2**63:
                raise ValueError
            return _field_value(model, self.ordering.field, value), pk
        except (
            ValueError,
            TypeError,
            OverflowError,
            UnicodeError,
            binascii.Error,
            DjangoValidationError,
        ):
            raise ValidationError(
                {self.cursor_param: ["Invalid cursor; use the `next` link as given."]}
            ) from None

    def _next_link(self) -> str | None:
        if self.next_row is None:
            return None
        value = getattr(self.next_row, self.ordering.field)
        encoded = None if value is None else _json_scalar(value)
        token = base64.urlsafe_b64encode(
            json.dumps([self.ordering.key, encoded, self.next_row.pk]).encode()
        ).decode("ascii")
        return replace_query_param(self.request.build_absolute_uri(), self.cursor_param, token)


def _field_value(model: type[Model], name: str, raw: Any) -> Any:
    """A cursor's sort value, checked like a form would (range, digits, time zone)."""
    if raw is None:
        return None
    field = model._meta.get_field(name)
    value = field.to_python(raw)  # type: ignore[union-attr]
    field.run_validators(value)  # type: ignore[union-attr]
    if isinstance(value, datetime):
        if timezone.is_naive(value):
            raise ValueError("naive datetime")
        return value.astimezone(UTC)  # see filters.UtcIsoDateTimeField: PostgreSQL's offsets
    return value


def _json_scalar(value: Any) -> Any:
    if isinstance(value, int | float | str):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)  # Decimal: exact as text


def _query_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }

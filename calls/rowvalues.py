"""The values a row write sends for its fields, as ``Model.save`` prepares them, faster.

For each field the ORM sends ``field.get_db_prep_save(field.pre_save(obj, add))``: five to
eight method calls per column (``get_db_prep_value``, ``get_prep_value``, ``to_python``,
the backend's adapter), for a value that is nearly always passed through as it is. A
webhook batch prepares 30 to 40 values per delivery, and on the 2-core benchmark machine
this was the writer's largest share of CPU after the database driver.

``values`` takes a short cut only where Django's own chain is known to return the
value unchanged, or only through the backend's adapter: for fields of exactly these
classes (a subclass may override any step) and values of exactly these types (``bool`` is
an ``int``; a lazy string is not a ``str``). Everything else goes through
``get_db_prep_save`` as before. tests/test_rowvalues.py checks both give the same values
for every field the webhook writes, on each database the suite runs against.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any

from django.db import models
from django.db.models import Field, Model

# Fields whose get_db_prep_save returns a value of these types, or None, unchanged.
_PASSED_AS_IS: dict[type[Field[Any, Any]], tuple[type, ...]] = {
    models.CharField: (str,),
    models.TextField: (str,),
    models.URLField: (str,),
    models.BooleanField: (bool,),
    models.FloatField: (float,),
}
# Fields whose get_db_prep_save only hands an int to the backend's adapter.
_INTEGERS = frozenset(
    {
        models.IntegerField,
        models.BigIntegerField,
        models.SmallIntegerField,
        models.PositiveIntegerField,
        models.PositiveBigIntegerField,
        models.PositiveSmallIntegerField,
    }
)

# Primary keys a ForeignKey may point at, whose preparation of an int is only the backend's
# check of it (AutoFieldMixin.get_db_prep_value).
_AUTO_KEYS = frozenset({models.AutoField, models.BigAutoField, models.SmallAutoField})
# Distinct addresses remembered per field; webhooks come from a few (Retell's, a proxy's).
_ADDRESSES_KEPT = 1024

Pre = Callable[[Model, bool], Any]
Prep = Callable[[Any, Any], Any]
Savers = tuple[tuple[Pre, Prep], ...]


def values(obj: Model, savers: Savers, connection: Any, *, add: bool = False) -> list[Any]:
    """``[field.get_db_prep_save(field.pre_save(obj, add), connection) ...]`` for the fields
    of ``savers(fields)``, which the caller looks up once: hashing a field is a Python method
    call, too slow to repeat for every row."""
    return [prep(pre(obj, add), connection) for pre, prep in savers]


@cache
def savers(fields: tuple[Field[Any, Any], ...]) -> Savers:
    return tuple((_pre(field), _prep(field)) for field in fields)


def _pre(field: Field[Any, Any]) -> Pre:
    if type(field).pre_save is not Field.pre_save:  # auto_now and the like
        return field.pre_save
    attname = field.attname
    return lambda obj, add: getattr(obj, attname)


def _prep(field: Field[Any, Any]) -> Prep:
    kind = type(field)
    full = field.get_db_prep_save
    if kind in _PASSED_AS_IS:
        return _passed_as_is(_PASSED_AS_IS[kind], full)
    if kind in _INTEGERS:
        return _integer(field.get_internal_type(), full)
    if kind is models.DateTimeField:
        return _datetime(full)
    if kind is models.ForeignKey and type(getattr(field, "target_field", None)) in _AUTO_KEYS:
        return _auto_key(full)
    if kind is models.GenericIPAddressField:
        return _ip_address(full)
    return full


def _passed_as_is(types: tuple[type, ...], full: Prep) -> Prep:
    def prep(value: Any, connection: Any) -> Any:
        if value is None or type(value) in types:
            return value
        return full(value, connection)

    return prep


def _integer(internal_type: str, full: Prep) -> Prep:
    def prep(value: Any, connection: Any) -> Any:
        if value is None:
            return None
        if type(value) is int:
            return connection.ops.adapt_integerfield_value(value, internal_type)
        return full(value, connection)

    return prep


def _datetime(full: Prep) -> Prep:
    def prep(value: Any, connection: Any) -> Any:
        # An aware datetime passes DateTimeField.get_prep_value unchanged (a naive one is
        # made aware, with a warning: the full path does that).
        if type(value) is datetime and value.utcoffset() is not None:
            return connection.ops.adapt_datetimefield_value(value)
        return full(value, connection)

    return prep


def _auto_key(full: Prep) -> Prep:
    def prep(value: Any, connection: Any) -> Any:
        # ForeignKey passes a non-empty value to its target, an auto field: for an int that
        # is get_prep_value's int() (unchanged) and the backend's check.
        if type(value) is int:
            return connection.ops.validate_autopk_value(value)
        return full(value, connection)

    return prep


def _ip_address(full: Prep) -> Prep:
    """The full preparation, remembered per address and database kind: on PostgreSQL it
    parses the address into an ``ipaddress`` object (immutable, so shared safely), a tenth
    of the event row's preparation for the same few addresses over and over."""
    known: dict[tuple[str, str], Any] = {}

    def prep(value: Any, connection: Any) -> Any:
        if type(value) is not str:
            return full(value, connection)
        key = (value, connection.vendor)
        if key in known:
            return known[key]
        prepared = full(value, connection)  # a refused address raises: nothing kept
        if len(known) < _ADDRESSES_KEPT:
            known[key] = prepared
        return prepared

    return prep

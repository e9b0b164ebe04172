"""Strict requests on every route: an unknown query parameter, or a single-valued one given twice, is a 422.

FastAPI keeps the last of repeated values and ignores names no parameter declares, unless a route's query
model forbids extras; one app-wide dependency applies the rule to every route, from what each declares.
"""

from __future__ import annotations

import types
import typing
from collections import Counter
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel


@dataclass(frozen=True)
class Declared:
    """A route's query parameter and form field names, and which of them take several values."""

    query: frozenset[str]
    form: frozenset[str]
    many: frozenset[str]


async def strict_request(request: Request) -> None:
    """Refuse unknown query parameters and repeated single-valued parameters or form fields (422)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    # Routes are fixed once the app is built, but unhashable (Route defines __eq__): keep each one's on it.
    declared = route.__dict__.get("_facefit_declared")
    if declared is None:
        declared = route.__dict__["_facefit_declared"] = _declared_by(route)
    errors = _check("query", request.query_params.multi_items(), declared.query, declared.many, unknown=True)
    if declared.form:
        # FastAPI has parsed the form before dependencies run; this is the same, cached, FormData.
        form = await request.form()
        # Unknown form fields are the form models' own error (extra="forbid"); only repeats are left.
        errors += _check("body", form.multi_items(), declared.form, declared.many, unknown=False)
    if errors:
        raise RequestValidationError(errors)


def _check(where: str, items: list[tuple[str, Any]], names: frozenset[str], many: frozenset[str], *,
           unknown: bool) -> list[dict[str, Any]]:
    counts = Counter(key for key, _ in items)
    errors = []
    for key, n in counts.items():
        if key not in names:
            if unknown:
                errors.append({"type": "extra_forbidden", "loc": (where, key), "msg": "unknown parameter"})
        elif n > 1 and key not in many:
            errors.append({"type": "repeated", "loc": (where, key), "msg": f"given {n} times; takes one value"})
    return errors


def _declared_by(route: APIRoute) -> Declared:
    query: set[str] = set()
    form: set[str] = set()
    many: set[str] = set()
    pending = [route.dependant]
    while pending:  # the endpoint and its dependencies, which may declare parameters too
        dependant = pending.pop()
        pending.extend(dependant.dependencies)
        for names, fields in ((query, dependant.query_params), (form, dependant.body_params)):
            for field in fields:
                for name, annotation in _flat(field.alias, field.field_info.annotation):
                    names.add(name)
                    if _takes_many(annotation):
                        many.add(name)
    return Declared(frozenset(query), frozenset(form), frozenset(many))


def _flat(alias: str, annotation: Any) -> list[tuple[str, Any]]:
    """A parameter model (``Annotated[Model, Query()]`` or ``Form()``) stands for its fields."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(info.alias or name, info.annotation) for name, info in annotation.model_fields.items()]
    return [(alias, annotation)]


def _takes_many(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_takes_many(a) for a in typing.get_args(annotation))
    return origin in (list, tuple, set, frozenset) or annotation in (list, tuple, set, frozenset)

"""Planner hints that read the same on both engines: where SQLite, which keeps no
statistics on values, must be told what PostgreSQL knows from its own."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Boolean, ColumnElement
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

T = TypeVar("T")


class _Selective(FunctionElement[bool]):
    type = Boolean()
    inherit_cache = True
    name = "selective"
    _is_implicitly_boolean = True  # a comparison inside: no "= 1" where booleans are ints


@compiles(_Selective)
def _plain_condition(element: _Selective, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({compiler.process(element.clauses, **kw)})"


@compiles(_Selective, "sqlite")
def _likely_rare(element: _Selective, compiler: SQLCompiler, **kw: Any) -> str:
    return f"likelihood({compiler.process(element.clauses, **kw)}, 0.01)"


def selective(condition: ColumnElement[bool]) -> ColumnElement[bool]:
    """`condition`, marked as one few rows meet (a recent `updated_at >= since`).

    PostgreSQL knows from its statistics; SQLite keeps none on values, so it is told
    with `likelihood()`, which leaves the index on the column usable."""
    return _Selective(condition)


class _Unindexed(FunctionElement[Any]):
    inherit_cache = True
    name = "unindexed"

    def __init__(self, column: ColumnElement[Any]) -> None:
        super().__init__(column)
        self.type = column.type


@compiles(_Unindexed)
def _plain_column(element: _Unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(_Unindexed, "sqlite")
def _no_index(element: _Unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return f"+{compiler.process(element.clauses, **kw)}"


def unindexed(column: ColumnElement[T]) -> ColumnElement[T]:
    """`column`, as a filter only: on SQLite (unary `+`) its indexes may not drive the
    query. SQLite takes any equality on an index for a rare value (it keeps no
    statistics), so `channel = 'generic'` would beat a range that is truly selective;
    PostgreSQL, which knows, sees the plain column."""
    return _Unindexed(column)

"""The sandbox operator-written dispute scripts render in, with a budget.

Script files are edited by operators, not developers, so a template must never reach
Python internals, nor hang or exhaust the server: jinja2's
`ImmutableSandboxedEnvironment` blocks unsafe attributes, and on top of it

- no attribute of any value is readable (the variables are plain strings; only
  `loop.index` and friends), so no method call, no `__class__` walk;
- only a short list of filters, each metered and refusing huge numeric arguments;
- every `for` loop, call, filter, `~` join and `{{ … }}` output counts against a step
  budget and a deadline (the parsed template is rewritten so each goes through the
  environment), `*`, `+`, `**` and `%` are checked before they build anything large,
  and the output is cut off at a size limit; recursion ends in RecursionError.

Any breach raises `RenderError`: the chat member gets a polite answer, the server
carries on.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import wraps
from typing import Any, cast

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

MAX_OUTPUT = 8000  # characters: a chat reply, not a document
MAX_STEPS = 20000  # loop iterations + calls + outputs per render
MAX_SECONDS = 0.5
MAX_NUMBER = 10000  # the largest number a filter or call may be given
MAX_RANGE = 1000
SAFE_FILTERS = (
    "abs", "capitalize", "count", "d", "default", "first", "float", "int", "join", "last",
    "length", "list", "lower", "max", "min", "reverse", "round", "sort", "string", "sum",
    "title", "trim", "truncate", "unique", "upper", "wordcount",
)  # fmt: skip
LOOP_ATTRIBUTES = frozenset({"index", "index0", "revindex", "revindex0", "first", "last"})
LOOP_ATTRIBUTES |= {"length", "previtem", "nextitem", "depth", "depth0"}


class RenderError(Exception):
    """A template broke the rules or the budget; the message is for operators."""


class BudgetExceeded(RenderError):
    pass


@dataclass
class _Budget:
    deadline: float
    steps: int = 0


_budget: ContextVar[_Budget | None] = ContextVar("script_budget", default=None)


def _tick() -> None:
    budget = _budget.get()
    if budget is None:
        return
    budget.steps += 1
    if budget.steps > MAX_STEPS:
        raise BudgetExceeded(f"模板运算步数超过 {MAX_STEPS}（是否有死循环？）")
    if budget.steps % 64 == 0 and time.monotonic() > budget.deadline:
        raise BudgetExceeded(f"模板渲染超过 {MAX_SECONDS} 秒")


def _limit(size: int) -> None:
    if size > MAX_OUTPUT:
        raise BudgetExceeded(f"模板生成的内容超过 {MAX_OUTPUT} 字")


def _sized(value: Any) -> Any:
    if isinstance(value, str | list | tuple | dict):
        _limit(len(value))
    return value


def _small_numbers(values: Iterable[Any]) -> None:
    for value in values:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and abs(value) > MAX_NUMBER:
            raise BudgetExceeded(f"数值 {value} 过大（上限 {MAX_NUMBER}）")


def _metered_filter(func: Any) -> Any:
    @wraps(func)  # keeps jinja's pass_context / pass_environment markers
    def run(*args: Any, **kwargs: Any) -> Any:
        _tick()
        _small_numbers([*args[1:], *kwargs.values()])
        return _sized(func(*args, **kwargs))

    return run


def _range(*args: int) -> range:
    _small_numbers(args)
    found = range(*args)
    if len(found) > MAX_RANGE:
        raise BudgetExceeded(f"range 最多 {MAX_RANGE} 项")
    return found


class _Metered(NodeTransformer):
    """Route every loop, `~` and output through the environment's meters."""

    @staticmethod
    def _via(name: str, args: list[nodes.Expr], lineno: int) -> nodes.Call:
        return nodes.Call(nodes.EnvironmentAttribute(name), args, [], None, None, lineno=lineno)

    def visit_For(self, node: nodes.For) -> nodes.For:
        self.generic_visit(node)
        node.iter = self._via("metered", [cast(nodes.Expr, node.iter)], node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Call:
        self.generic_visit(node)
        return self._via("joined", list(node.nodes), node.lineno)

    def visit_Output(self, node: nodes.Output) -> nodes.Output:
        self.generic_visit(node)
        node.nodes = [
            n if isinstance(n, nodes.TemplateData) else self._via("emitted", [n], node.lineno)
            for n in node.nodes
        ]
        return node


class ScriptEnvironment(ImmutableSandboxedEnvironment):
    """Where scripts compile and render; see the module docstring for the rules."""

    intercepted_binops = frozenset({"*", "+", "**", "%"})

    def __init__(self) -> None:
        super().__init__(
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # noqa: S701 - plain chat text, never HTML
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.globals.clear()
        self.globals["range"] = _range
        self.filters = {name: _metered_filter(self.filters[name]) for name in SAFE_FILTERS}
        self.concat = self._concat  # type: ignore[method-assign]  # block captures, macros

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        metered: nodes.Template = _Metered().visit(tree)
        return metered

    def wrap_str_format(self, value: Any) -> None:
        return None  # str.format pads to any width: "{:>999999999}" is a memory bomb

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        return isinstance(obj, LoopContext) and attr in LOOP_ATTRIBUTES

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _tick()
        if __obj not in _METERS:  # an output may be any number; an argument may not
            _small_numbers([*args, *kwargs.values()])
        return _sized(super().call(__context, __obj, *args, **kwargs))

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _tick()
        texts = str | list | tuple
        if operator == "%" and isinstance(left, str):
            raise SecurityError("模板中不能用 % 格式化字符串")
        if operator == "**" and not (
            isinstance(left, int | float) and abs(left) <= MAX_NUMBER ** 2
            and isinstance(right, int | float) and abs(right) <= 64
        ):  # fmt: skip
            raise BudgetExceeded("乘方的底数或指数过大")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, texts) and isinstance(times, int):
                    _limit(len(seq) * times)
        if operator == "+" and isinstance(left, texts) and isinstance(right, texts):
            _limit(len(left) + len(right))
        return super().call_binop(context, operator, left, right)

    @staticmethod
    def metered(iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            _tick()
            yield item

    @staticmethod
    def joined(*parts: Any) -> str:
        _tick()
        return str(_sized("".join(str(p) for p in parts)))

    @staticmethod
    def emitted(value: Any) -> Any:
        _tick()
        return _sized(value if isinstance(value, str) else str(value))

    @staticmethod
    def _concat(parts: Iterable[str]) -> str:
        return str(_sized("".join(parts)))


_METERS = (ScriptEnvironment.metered, ScriptEnvironment.joined, ScriptEnvironment.emitted)


def render(template: jinja2.Template, variables: Mapping[str, str]) -> str:
    """Render within the budget; raises RenderError (UndefinedError passes through, so
    the caller can ask for the missing variable)."""
    token = _budget.set(_Budget(deadline=time.monotonic() + MAX_SECONDS))
    size, out = 0, []
    try:
        for chunk in template.generate(dict(variables)):
            size += len(chunk)
            _limit(size)
            out.append(chunk)
    except (RenderError, jinja2.UndefinedError):
        raise
    except RecursionError:
        raise BudgetExceeded("模板递归过深") from None
    except SecurityError as exc:
        raise RenderError(f"模板使用了不允许的操作：{exc}") from None
    except Exception as exc:  # a filter given a wrong type, a division by zero, …
        raise RenderError(f"模板出错：{type(exc).__name__}: {exc}") from None
    finally:
        _budget.reset(token)
    return "".join(out).strip()

"""Operator-written templates cannot reach Python internals, loop forever or flood the
server: each attempt fails as a RenderError, quickly, and the environment still works."""

from __future__ import annotations

import time

import jinja2
import pytest

from handlers.script_sandbox import MAX_OUTPUT, RenderError, ScriptEnvironment, render

ENV = ScriptEnvironment()


def run(source: str, **variables: str) -> str:
    return render(ENV.from_string(source), variables)


ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ 商品.__class__ }}",
    "{{ 商品.upper() }}",
    "{{ 商品.format(1) }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{{ self.__init__.__globals__ }}",
    "{{ range.__self__ }}",
    "{{ (1).__class__.__base__ }}",
    "{{ '%s' % 商品 }}",
    "{% for x in range(3) %}{{ loop.__class__ }}{% endfor %}",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_python_internals_are_out_of_reach(source: str) -> None:
    with pytest.raises((RenderError, jinja2.UndefinedError)):
        run(source, 商品="喂食器")


@pytest.mark.parametrize(
    "source",
    [
        "{{ cycler }}",
        "{{ lipsum(5) }}",
        "{{ namespace() }}",
        "{{ dict(a=1) }}",
        "{{ joiner() }}",
    ],
)
def test_jinja_globals_beyond_range_are_gone(source: str) -> None:
    with pytest.raises(jinja2.UndefinedError):
        run(source)


@pytest.mark.parametrize("name", ["attr", "center", "format", "indent", "map", "wordwrap"])
def test_unlisted_filters_do_not_compile(name: str) -> None:
    with pytest.raises(jinja2.TemplateAssertionError):
        ENV.from_string(f"{{{{ 商品|{name} }}}}")


LOOPS = [
    "{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}"
    "{% endfor %}{% endfor %}{% endfor %}",
    "{% set s = 'x' * 5000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}",
    "{% macro m() %}{{ m() }}{{ m() }}{% endmacro %}{{ m() }}",
    "{% macro m(n) %}{{ m(n) }}{% endmacro %}{{ m(1) }}",
    "{% for a in range(999) %}{% for b in range(999) recursive %}{% endfor %}{% endfor %}",
]


@pytest.mark.parametrize("source", LOOPS)
def test_endless_work_stops_at_the_budget(source: str) -> None:
    started = time.monotonic()
    with pytest.raises(RenderError):
        run(source)
    assert time.monotonic() - started < 5  # the budget is 0.5 s or 20 000 steps


BOMBS = [
    "{{ 'x' * 100000000 }}",
    "{{ (range(1000)|list) * 1000 }}",
    "{% set s %}{% for i in range(1000) %}xxxxxxxxxxxxxxxxxx{% endfor %}{% endset %}{{ s }}",
    "{% for i in range(1000) %}{{ 商品 }}{{ 商品 }}{{ 商品 }}{% endfor %}",
    "{{ 商品|truncate(1000000000) }}",
    "{{ range(1000000) }}",
    "{{ 9 ** 9 ** 9 }}",
    "{{ (10 ** 9) ** 64 }}",
    "{% set a = 'xxxxxxxxxx' %}{% set b = a ~ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a %}"
    "{% set c = b ~ b ~ b ~ b ~ b ~ b ~ b ~ b ~ b ~ b %}{% set d = c ~ c ~ c ~ c ~ c ~ c ~ c ~ "
    "c ~ c ~ c %}{{ d|length }}",
]


@pytest.mark.parametrize("source", BOMBS)
def test_huge_output_and_numbers_are_refused_before_they_are_built(source: str) -> None:
    with pytest.raises(RenderError):
        run(source, 商品="自动喂食器" * 100)


def test_ordinary_templates_still_work_after_failures() -> None:
    with pytest.raises(RenderError):
        run(LOOPS[0])
    text = run(
        "{% for i in range(3) %}{{ loop.index }}{% endfor %} {{ 扣款|float * 2 }} "
        "{{ 商品|upper }} {% if 配件 is defined %}有{% else %}无{% endif %}",
        扣款="35",
        商品="abc",
    )
    assert text == "123 70.0 ABC 无"
    assert len(run("{{ 'x' * n }}".replace("n", str(MAX_OUTPUT - 10)))) == MAX_OUTPUT - 10


def test_a_missing_variable_is_an_error_never_a_blank() -> None:
    with pytest.raises(jinja2.UndefinedError, match="配件"):
        run("缺少{{ 配件 }}")


def test_includes_and_imports_have_nothing_to_load() -> None:
    with pytest.raises(RenderError):
        run("{% include '/etc/passwd' %}")

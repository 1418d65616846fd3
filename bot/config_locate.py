"""Config plumbing shared by settings, routing and SLA parsing: positions, errors, types.

tomllib gives values but no positions, and an operator fixing a config needs
`file:line: message`, all of them at once. So a small line locator scans the TOML
text for table headers and `key =` lines, a `Report` collects errors against a key
path, and `build` turns a table into a frozen dataclass, rejecting unknown keys
and wrong types by the dataclass's own annotations. Values that came from
`RETURNHUB__*` environment variables are strings and get coerced; the same
string in a TOML file is a type error (the file has real types, use them).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import importlib.util
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

Key = tuple[str | int, ...]
T = TypeVar("T")

_BARE_OR_QUOTED = r'[A-Za-z0-9_-]+|"[^"]*"|\'[^\']*\''
_HEADER = re.compile(r"^\s*(\[\[?)([^\]]+)\]\]?\s*(?:#.*)?$")
_KEY = re.compile(rf"^\s*((?:{_BARE_OR_QUOTED})(?:\s*\.\s*(?:{_BARE_OR_QUOTED}))*)\s*=")
_PART = re.compile(_BARE_OR_QUOTED)
_TOML_POS = re.compile(r"\s*\(at line (\d+), column \d+\)$")
_SECRET_WORDS = ("secret", "token", "key", "session", "password")


class ConfigError(Exception):
    """Every problem found in a config set, each as `file:line: message`."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def _parts(dotted: str) -> list[str]:
    return [p.strip("\"'") for p in _PART.findall(dotted)]


class Locator:
    """Maps key paths (`("tier", 2, "steps")`) to the line that defines them."""

    def __init__(self, text: str) -> None:
        self.lines: dict[Key, int] = {}
        self.last_line = max(1, text.count("\n") + 1)
        arrays: dict[Key, int] = {}
        table: Key = ()
        in_multiline: str | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            if in_multiline is not None:
                if line.count(in_multiline) % 2 == 1:
                    in_multiline = None
                continue
            header = _HEADER.match(line)
            if header:
                table = self._header(_parts(header.group(2)), header.group(1) == "[[", arrays)
                for k in range(1, len(table) + 1):
                    self.lines.setdefault(table[:k], number)
                continue
            key = _KEY.match(line)
            if key:
                self.lines.setdefault(table + tuple(_parts(key.group(1))), number)
                rest = line[key.end() :]
                for quote in ('"""', "'''"):
                    if rest.count(quote) % 2 == 1:
                        in_multiline = quote

    @staticmethod
    def _header(parts: list[str], is_array: bool, arrays: dict[Key, int]) -> Key:
        path: Key = ()
        for i, part in enumerate(parts):
            path += (part,)
            if i == len(parts) - 1 and is_array:
                arrays[path] = arrays.get(path, -1) + 1
                path += (arrays[path],)
            elif path in arrays:
                path += (arrays[path],)
        return path

    def find(self, path: Key) -> int | None:
        return self.lines.get(path)

    def line(self, path: Key) -> int:
        """The line of `path`, else of its nearest located parent, else 1."""
        for k in range(len(path), 0, -1):
            if path[:k] in self.lines:
                return self.lines[path[:k]]
        return 1


def dotted(path: Key) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


@dataclass
class Report:
    """Collects errors for one file; values set from the environment are blamed on their var."""

    file: str
    locator: Locator | None = None
    env: dict[Key, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def at(self, path: Key, message: str) -> None:
        var = self.env.get(path)
        if var is None and (self.locator is None or self.locator.find(path) is None):
            var = next((v for p, v in self.env.items() if p[: len(path)] == path), None)
        if var is not None:
            self.errors.append(f"env {var}: {message}")
            return
        line = self.locator.line(path) if self.locator else 1
        self.errors.append(f"{self.file}:{line}: {message}")


def read_toml(
    path: Path, display: str, errors: list[str]
) -> tuple[dict[str, Any], Locator] | None:
    """Parse one TOML file; on failure add `file:line: message` and return None."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        errors.append(f"{display}: 文件不存在 / file not found")
        return None
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(f"{display}: 无法读取 / cannot read: {exc}")
        return None
    locator = Locator(text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        pos = _TOML_POS.search(message)
        line = int(pos.group(1)) if pos else locator.last_line
        detail = _TOML_POS.sub("", message)
        errors.append(f"{display}:{line}: TOML 语法错误 / TOML syntax error: {detail}")
        return None
    return data, locator


def _show(path: Key, value: Any) -> str:
    """A value for an error message; secrets are described, never echoed."""
    name = str(path[-1]) if path else ""
    if any(word in name for word in _SECRET_WORDS):
        return type(value).__name__
    return f"{type(value).__name__} {value!r}"[:80]


_BOOLS = {"true": True, "1": True, "yes": True, "on": True}
_BOOLS.update({"false": False, "0": False, "no": False, "off": False})


def coerce(hint: Any, value: Any, from_env: bool) -> tuple[bool, Any]:
    """Check (and for env strings, convert) one value against a dataclass annotation."""
    if hint is Any:
        return True, value
    if isinstance(hint, types.UnionType):  # `str | None`: TOML has no null, so the str part
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is dict:  # a [section.name] table of plain values
        item = typing.get_args(hint)[1]
        if not isinstance(value, dict):
            return False, None
        pairs = {str(k): coerce(item, v, from_env) for k, v in value.items()}
        return all(ok for ok, _ in pairs.values()), {k: v for k, (_, v) in pairs.items()}
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        if from_env and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            return False, None
        converted = [coerce(item, v, from_env) for v in value]
        return all(ok for ok, _ in converted), tuple(v for _, v in converted)
    if from_env and isinstance(value, str) and hint is not str:
        try:
            if hint is bool:
                return value.strip().lower() in _BOOLS, _BOOLS.get(value.strip().lower())
            return True, hint(value.strip())
        except ValueError:
            return False, None
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return True, float(value)
    if hint is int and isinstance(value, bool):
        return False, None
    return isinstance(value, hint), value


def type_name(hint: Any) -> str:
    if typing.get_origin(hint) is tuple:
        return f"a list of {type_name(typing.get_args(hint)[0])}"
    if typing.get_origin(hint) is dict:
        value = type_name(typing.get_args(hint)[1]).removeprefix("an ").removeprefix("a ")
        return f"a table of names to {value}s"
    if isinstance(hint, types.UnionType):
        return type_name(typing.get_args(hint)[0])
    names: dict[Any, str] = {
        Any: "tables",
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
    }
    return names.get(hint, str(hint))


def type_name_zh(hint: Any) -> str:
    """`type_name` for the Chinese half of a message."""
    if typing.get_origin(hint) is tuple:
        return f"{type_name_zh(typing.get_args(hint)[0])}列表"
    if typing.get_origin(hint) is dict:
        return f"名称到{type_name_zh(typing.get_args(hint)[1])}的表"
    if isinstance(hint, types.UnionType):
        return type_name_zh(typing.get_args(hint)[0])
    names: dict[Any, str] = {Any: "表", str: "字符串", int: "整数", float: "数字"}
    names[bool] = "布尔值（true 或 false）"
    return names.get(hint, str(hint))


def build(cls: type[T], table: Any, path: Key, report: Report, **given: Any) -> T | None:
    """Make `cls` from a TOML table: unknown keys, wrong types and missing keys are errors.

    Returns None only when a required field is missing; otherwise bad values are
    reported and replaced by the field's default so later checks still run.
    """
    if not isinstance(table, dict):
        shown = _show(path, table)
        report.at(path, f"{dotted(path)}: 应为表，实际是 {shown} / expected a table, got {shown}")
        table = {}
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = dict(given)
    seen: set[str] = set()
    for key, value in table.items():
        here = (*path, key)
        if key not in fields or key in given:
            report.at(here, f"未知配置项 / unknown key {dotted(here)}")
            continue
        seen.add(key)
        ok, converted = coerce(hints[key], value, here in report.env)
        if ok:
            kwargs[key] = converted
        else:
            want, shown = type_name(hints[key]), _show(here, value)
            zh = type_name_zh(hints[key])
            report.at(
                here, f"{dotted(here)}: 应为{zh}，实际是 {shown} / expected {want}, got {shown}"
            )
    required = [
        name
        for name, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    for name in required:
        if name not in kwargs and name not in seen:
            report.at(path, f"{dotted(path)}: 缺少配置项 / missing key {name!r}")
    if any(name not in kwargs for name in required):
        return None
    return cls(**kwargs)


def apply_env(
    data: dict[str, Any], env: Mapping[str, str], prefix: str
) -> tuple[dict[Key, str], list[str]]:
    """Overlay `PREFIX_SECTION__KEY=value` variables onto parsed TOML data.

    Double underscores nest, so `RETURNHUB__CHANNELS__GENERIC__SECRET` sets
    `channels.generic.secret`. Values stay strings here; `build` coerces them.
    Returns which paths came from which variable, and misuse errors.
    """
    paths: dict[Key, str] = {}
    errors: list[str] = []
    for var in sorted(env):
        if not var.startswith(prefix):
            continue
        parts = var[len(prefix) :].lower().split("__")
        if len(parts) < 2 or not all(parts):
            errors.append(f"env {var}: 格式应为 / expected {prefix}SECTION__KEY")
            continue
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = dotted(tuple(parts[: i + 1]))
                errors.append(
                    f"env {var}: {where} 不能用环境变量设置 / cannot be set from the environment"
                )
                break
            node = child
        else:
            node[parts[-1]] = env[var]
            paths[tuple(parts)] = var
    return paths, errors


def aes_key_problem(key: str) -> str | None:
    """WeCom/DingTalk EncodingAESKey: 43 chars of base64 that decode (with "=") to 32 bytes."""
    if len(key) != 43:
        return f"必须是 43 个字符，实际 {len(key)} 个 / must be 43 characters, got {len(key)}"
    try:
        raw = base64.b64decode(key + "=", validate=True)
    except binascii.Error:
        return "不是合法的 base64 / is not valid base64"
    return None if len(raw) == 32 else "解码后不是 32 字节 / does not decode to 32 bytes"


def url_problem(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"必须是 http(s) 地址，实际是 {url!r} / must be an http(s) URL"
    return None


def zone_problem(name: str) -> str | None:
    try:
        ZoneInfo(name)
    except (ValueError, LookupError, OSError):
        return f'未知时区 {name!r}（例如 "Asia/Shanghai"） / unknown time zone {name!r}'
    return None


def _source_root() -> Path | None:
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() else None


def data_dir(name: str) -> Path:
    """`<repo>/<name>` in a source checkout, else the installed `returnhub_data/<name>`."""
    root = _source_root()
    if root is not None and (root / name).is_dir():
        return root / name
    try:
        spec = importlib.util.find_spec(f"returnhub_data.{name}")
    except ModuleNotFoundError:
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parent.parent / name

"""The scenario files: the shipped set is valid and complete, every mistake an operator
can make is reported as `file:line: message` by check-config, and docs/scripts.md lists
every variable."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.cli import main
from bot.settings import config_dir
from handlers.script_library import CASE_VARIABLES, FINDINGS, ScriptShelf, check_dir, load_dir
from handlers.warehouse import ANOMALIES

SHIPPED = ("缺配件", "人为损坏", "已使用影响二次销售", "错发调包", "空包", "超过七天无理由",
           "物流破损", "恶意退货嫌疑")  # fmt: skip
DOCS = Path(__file__).resolve().parents[2] / "docs" / "scripts.md"
GOOD = 'title = "补发"\napplies = "少了赠品"\nreply = "亲，{{ 商品 }}的赠品今天补发。"\n'


def test_the_shipped_scenarios_are_all_there_and_valid() -> None:
    catalog = load_dir(config_dir() / "scripts")
    assert catalog.errors == ()
    assert {s.name for s in catalog.scenarios} >= set(SHIPPED)
    for scenario in catalog.scenarios:
        assert scenario.title and scenario.applies and scenario.sop, scenario.name
    assert check_dir(config_dir() / "scripts") == []
    assert FINDINGS == ANOMALIES  # every anomaly the warehouse records can suggest one


def test_each_finding_suggests_a_scenario() -> None:
    catalog = load_dir(config_dir() / "scripts")
    found = {f: getattr(catalog.for_finding(f, "quality.defect"), "name", None) for f in FINDINGS}
    assert found == {
        "damaged": "人为损坏",
        "missing_parts": "缺配件",
        "wrong_item": "错发调包",
        "empty": "空包",
    }
    shipped = catalog.for_finding("damaged", "logistics.damaged")
    assert shipped is not None and shipped.name == "物流破损"


def test_the_docs_list_every_case_variable_and_scenario() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for name in (*CASE_VARIABLES, *SHIPPED):
        assert f"`{name}`" in text, name


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('title = "x"\napplies = "y"\nreply = "{{ 商品 "\n', 3, "模板语法错误"),
        ('title = "x"\napplies = "y"\nreply = """\n第一行\n{% for %}\n"""\n', 5, "模板语法错误"),
        (
            'title = "x"\napplies = "y"\nreply = """\n好的\n缺少{{ 零件 }}\n"""\n',
            5,
            "未知变量「零件」",
        ),
        ('title = "x"\napplies = "y"\nreply = "{{ 商品|center(9) }}"\n', 3, "模板语法错误"),
        ('title = "x"\napplies = "y"\nreply = "z"\ncolour = "red"\n', 4, "未知字段"),
        ('title = "x"\napplies = "y"\n', 1, "reply: 必填"),
        ('title = "x"\napplies = "y"\nreply = "z"\nfindings = ["lost"]\n', 4, "未知验货结果 lost"),
        ('title = "x"\napplies = "y"\nreply = "z"\naliases = "a"\n', 4, "须为非空字符串的列表"),
        (
            'title = "x"\napplies = "y"\nreply = "z"\n[defaults.A1]\n"零件" = "n"\n',
            5,
            "未知变量「零件」",
        ),
        ('title = "x"\napplies = "y"\nreply = "z"\nvariables = ["1a"]\n', 4, "不是合法的变量名"),
        ('title = "x"\napplies = \n', 2, "TOML 语法错误"),
    ],
)
def test_every_mistake_names_its_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = write(tmp_path / "s", "坏.toml", text)
    errors = check_dir(tmp_path / "s")
    assert len(errors) >= 1
    assert errors[0].startswith(f"{path}:{line}: ") and message in errors[0], errors


def test_declared_variables_may_be_used(tmp_path: Path) -> None:
    write(tmp_path / "s", "a.toml", GOOD.replace("{{ 商品 }}", "{{ 商品 }}{{ 赠品 }}") +
          'variables = ["赠品"]\n')  # fmt: skip
    assert check_dir(tmp_path / "s") == []


def test_duplicate_aliases_are_reported_and_the_first_file_keeps_them(tmp_path: Path) -> None:
    write(tmp_path / "s", "a.toml", GOOD + 'aliases = ["赠品", "Gift"]\n')
    b = write(
        tmp_path / "s", "b.toml", GOOD.replace('"补发"', '"补寄"') + 'aliases = ["ＧＩＦＴ"]\n'
    )
    catalog = load_dir(tmp_path / "s")
    assert [s.name for s in catalog.scenarios] == ["a"]
    assert catalog.errors == (f"{b}:4: 名称或别名「gift」与 a.toml 重复",)


def test_an_empty_or_missing_directory_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert "没有任何" in check_dir(tmp_path / "empty")[0]
    assert "不存在" in check_dir(tmp_path / "nope")[0]


def test_the_shelf_rereads_only_when_a_file_changes(tmp_path: Path) -> None:
    directory = tmp_path / "s"
    write(directory, "a.toml", GOOD)
    shelf = ScriptShelf()
    first = shelf.catalog(directory)
    assert shelf.catalog(directory) is first  # unchanged: the same catalog, no re-read
    write(directory, "b.toml", GOOD.replace('"补发"', '"补寄"'))
    second = shelf.catalog(directory)
    assert [s.name for s in second.scenarios] == ["a", "b"]
    (directory / "a.toml").unlink()
    assert [s.name for s in shelf.catalog(directory).scenarios] == ["b"]


def test_check_config_fails_on_a_broken_script(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main_file = tmp_path / "returnhub.toml"
    main_file.write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path}/c.db"\n', encoding="utf-8"
    )
    shutil.copytree(config_dir() / "scripts", tmp_path / "scripts")
    assert main(["check-config", "--config", str(main_file)]) == 0
    capsys.readouterr()
    bad = write(
        tmp_path / "scripts", "坏.toml", 'title = "x"\napplies = "y"\nreply = "{{ 零件 }}"\n'
    )
    assert main(["check-config", "--config", str(main_file)]) == 2
    printed = capsys.readouterr()
    assert printed.out.startswith(f"{bad}:3: 未知变量「零件」")
    assert "配置有 1 处错误" in printed.err

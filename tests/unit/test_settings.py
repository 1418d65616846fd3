"""Settings: the shipped example loads; every kind of mistake is reported with file:line."""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from textwrap import dedent

import pytest

from bot.settings import ConfigError, Settings, check, config_dir, load, templates_dir

GOOD_AES = base64.b64encode(bytes(range(32))).decode().rstrip("=")

# The [wecom] keys a test does not set itself: a half-set platform is an error of its own.
WECOM_REST = {
    "RETURNHUB__WECOM__CORP_ID": "ww",
    "RETURNHUB__WECOM__AGENT_ID": "1",
    "RETURNHUB__WECOM__SECRET": "s",
    "RETURNHUB__WECOM__TOKEN": "t",
}


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def errors_of(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(path, env={} if env is None else env)
    assert check(path, env={} if env is None else env) == caught.value.errors
    return caught.value.errors


def test_example_config_loads_without_errors() -> None:
    example = config_dir() / "returnhub.example.toml"
    assert check(example, env={}) == []
    settings = load(example, env={})
    assert settings.source == str(example)
    roles = {role for member in settings.members for role in member.roles}
    assert roles == {
        "cs_agent",
        "cs_lead",
        "ops_director",
        "finance_director",
        "warehouse",
        "risk",
        "admin",
    }
    assert [t.name for t in settings.routing.tiers][:2] == ["flagged_small", "auto"]
    assert set(settings.sla) == {
        *("first_review", "director_review", "inspection"),
        *("awaiting_parcel", "refund", "hold"),
    }
    assert settings.sla["first_review"].escalate_to == "ops_director"
    assert settings.channels.taobao["poll_seconds"] == 30
    assert settings.server.secret == ""  # none configured: the database keeps one
    assert not settings.wecom.enabled


def test_packaged_dirs_exist() -> None:
    assert (config_dir() / "routing.toml").is_file()
    assert templates_dir().name == "templates"


def test_no_file_means_packaged_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load(env={})
    assert settings.source == "<defaults>"
    assert settings.server.port == 8080
    assert len(settings.routing.tiers) == 5
    assert settings.members == ()


def test_config_path_from_env_then_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "returnhub.toml", "[server]\nport = 9001\n")
    other = write(tmp_path, "other.toml", "[server]\nport = 9002\n")
    assert load(env={}).server.port == 9001
    assert load(env={"RETURNHUB_CONFIG": str(other)}).server.port == 9002


def test_env_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "returnhub.toml", "[wecom]\ncorp_id = 'ww1'\nagent_id = 1\n")
    env = {
        "RETURNHUB__CHANNELS__GENERIC__SECRET": "s3cret",
        "RETURNHUB__WECOM__AGENT_ID": "1000002",
        "RETURNHUB__WECOM__SECRET": "wsecret",
        "RETURNHUB__WECOM__TOKEN": "wtoken",
        "RETURNHUB__WECOM__ENCODING_AES_KEY": GOOD_AES,
        "RETURNHUB__SERVER__DEMO": "true",
        "RETURNHUB__CONSOLE__ENABLED": "1",
        "RETURNHUB__OUTBOX__BASE_DELAY_SECONDS": "0.5",
        "RETURNHUB__SERVER__SECRET": "card-key",
        "RETURNHUB__ROLES__WAREHOUSE__WECOM_CHAT_ID": "wrkchat",
        "RETURNHUB__CHANNELS__TAOBAO__POLL_SECONDS": "15",
        "RETURNHUB_CONFIG": "/ignored/when/path/given.toml",
    }
    settings = load(path, env=env)
    assert settings.channels.generic.secret == "s3cret"
    assert settings.wecom.agent_id == 1000002
    assert settings.wecom.enabled
    assert settings.server.demo is True
    assert settings.console.enabled is True
    assert settings.outbox.base_delay_seconds == 0.5
    assert settings.server.secret == "card-key"
    assert settings.roles["warehouse"].wecom_chat_id == "wrkchat"
    assert settings.channels.taobao["poll_seconds"] == 15
    assert load(path, env={**env, "RETURNHUB__SERVER__DEMO": "0"}).server.demo is False


def test_env_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "returnhub.toml", "[server]\nport = 8080\n")
    env = {
        "RETURNHUB__SERVER__PORT": "abc",
        "RETURNHUB__SERVER__HOTS": "localhost",
        "RETURNHUB__NOPE__X": "1",
        "RETURNHUB__SERVER__DEMO": "maybe",
        "RETURNHUB__MEMBERS__NAME": "x",
    }
    assert sorted(errors_of(path, env)) == [
        "env RETURNHUB__MEMBERS__NAME: members: 应为 [[members]] 表 / expected [[members]] tables",
        "env RETURNHUB__NOPE__X: 未知配置段 / unknown section [nope]",
        "env RETURNHUB__SERVER__DEMO: server.demo: 应为布尔值（true 或 false），"
        "实际是 str 'maybe' / expected true or false, got str 'maybe'",
        "env RETURNHUB__SERVER__HOTS: 未知配置项 / unknown key server.hots",
        "env RETURNHUB__SERVER__PORT: server.port: 应为整数，实际是 str 'abc' "
        "/ expected an integer, got str 'abc'",
    ]


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    assert errors_of(missing) == [f"{missing}: 文件不存在 / file not found"]
    assert check(env={"RETURNHUB_CONFIG": str(missing)}) == errors_of(missing)


def test_unknown_key_names_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "returnhub.toml",
        """
        # comment
        [server]
        port = 8080
        hots = "0.0.0.0"

        [[members]]
        name = "A"
        roles = ["cs_lead"]

        [[members]]
        name = "B"
        roles = ["warehouse"]
        wecom_user = "b"

        [routing]
        x = 1
        """,
    )
    assert errors_of(path) == [
        f"{path}:4: 未知配置项 / unknown key server.hots",
        f"{path}:13: 未知配置项 / unknown key members[1].wecom_user",
        f"{path}:15: 未知配置段 / unknown section [routing]",
    ]


def test_wrong_types(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "returnhub.toml",
        """
        [server]
        port = "abc"
        demo = "yes"
        [channels.generic]
        secret = 12345678
        """,
    )
    errors = errors_of(path)
    assert errors == [
        f"{path}:2: server.port: 应为整数，实际是 str 'abc' / expected an integer, got str 'abc'",
        f"{path}:3: server.demo: 应为布尔值（true 或 false），实际是 str 'yes' "
        "/ expected true or false, got str 'yes'",
        f"{path}:5: channels.generic.secret: 应为字符串，实际是 int / expected a string, got int",
    ]
    assert "12345678" not in "".join(errors)  # secrets are never echoed


def test_invalid_toml_reports_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "returnhub.toml", "[server]\nport = 80\nhost = 127.0.0.1\n")
    (error,) = errors_of(path)
    assert error.startswith(f"{path}:3: TOML 语法错误 / TOML syntax error: ")


def test_values_are_validated(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "returnhub.toml",
        f"""
        [server]
        timezone = "Mars/Olympus"
        public_url = "ftp://bot.example.com"
        port = 70000
        [database]
        url = "mysql://root@localhost/returns"
        [wecom]
        encoding_aes_key = "{GOOD_AES}"
        [dingtalk]
        mode = "websocket"
        """,
    )
    errors = errors_of(path, WECOM_REST)
    assert [e.split(": ", 1)[0] for e in errors] == [f"{path}:{n}" for n in (2, 3, 4, 6, 10)]
    assert "unknown time zone" in errors[0]
    assert "http(s)" in errors[1]


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("A" * 42, "must be 43 characters"),
        (GOOD_AES[:-1] + "!", "not valid base64"),
        (GOOD_AES + "B", "must be 43 characters"),
    ],
)
def test_bad_aes_key(tmp_path: Path, key: str, problem: str) -> None:
    path = write(
        tmp_path, "returnhub.toml", f'[wecom]\ncorp_id = "ww"\nencoding_aes_key = "{key}"\n'
    )
    (error,) = errors_of(path, WECOM_REST)
    assert error.startswith(f"{path}:3: wecom.encoding_aes_key: ")
    assert problem in error


def test_member_roles_must_be_known_or_declared(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "returnhub.toml",
        """
        [[members]]
        name = "老张"
        roles = ["packer"]

        [[members]]
        name = "老李"
        roles = ["qa"]
        wecom_userid = "laozhang"

        [roles.packer]
        dingtalk_conversation_id = "chat1"
        """,
    )
    assert errors_of(path) == [
        f"{path}:7: members[1] (老李): 未知角色 'qa'，请用 [roles.qa] 表声明 "
        "/ unknown role 'qa'; declare it with a [roles.qa] table"
    ]


ROUTING = """
fallback_steps = ["cs_lead"]

[[tier]]
name = "auto"
up_to = "50.00"
auto_approve = true

[[tier]]
name = "lead"
above = "50.00"
steps = ["cs_leed"]
sla = "first_review"

[[tier]]
name = "lead2"
above = "100.00"
up_to = "200.00"
steps = ["cs_lead"]
sla = "quick"
"""


def test_routing_errors_name_routing_file_and_line(tmp_path: Path) -> None:
    main = write(tmp_path, "returnhub.toml", "[server]\nport = 8080\n")
    routing = write(tmp_path, "routing.toml", ROUTING)
    assert errors_of(main) == [
        f"{routing}:11: tier 'lead': 未知角色 / unknown role 'cs_leed'",
        f"{routing}:14: tier 'lead2' 与 tier 'lead' 重叠（条件相同，金额区间相交） "
        "/ overlaps tier 'lead'",
        f"{routing}:19: tier 'lead2': 未知 SLA 策略 / unknown SLA policy 'quick'",
    ]


def test_custom_role_in_routing_when_declared(tmp_path: Path) -> None:
    main = write(tmp_path, "returnhub.toml", "[roles.cs_leed]\ndingtalk_conversation_id = 'c'\n")
    text = ROUTING.replace("quick", "first_review").replace(
        'name = "lead2"', 'name = "lead2"\nchannels = ["jd"]'
    )
    write(tmp_path, "routing.toml", text)
    settings = load(main, env={})  # sla.toml is absent here: the packaged one is used
    assert settings.routing.tiers[1].steps == ("cs_leed",)
    assert "first_review" in settings.sla


def test_sla_errors(tmp_path: Path) -> None:
    main = write(tmp_path, "returnhub.toml", '[files]\nsla = "my-sla.toml"\n')
    sla = write(
        tmp_path,
        "my-sla.toml",
        """
        [calendar]
        work_start = "9am"
        [policies.first_review]
        business_hours = 4
        escalate_to = "boss"
        [policies.director_review]
        business_hours = 0
        remind_at = [1.0, 0.5]
        """,
    )
    errors = errors_of(main)
    assert [e.split(": ", 1)[0] for e in errors] == [f"{sla}:{n}" for n in (2, 5, 7, 8)]


def test_many_errors_reported_together(tmp_path: Path) -> None:
    main = write(
        tmp_path,
        "returnhub.toml",
        '[server]\nport = "x"\nbogus = 1\n[wecom]\nencoding_aes_key = "short"\n',
    )
    write(tmp_path, "routing.toml", '[[tier]]\nname = "t"\nup_to = "1.234"\nsteps = ["nobody"]\n')
    errors = errors_of(main, {"RETURNHUB__API__NOPE": "1", **WECOM_REST})
    assert len(errors) == 6, errors
    assert any(e.startswith("env RETURNHUB__API__NOPE") for e in errors)
    assert sum(str(tmp_path / "routing.toml") in e for e in errors) == 2


def test_settings_defaults_for_tests() -> None:
    settings = Settings()
    assert settings.outbox.rate_per_minute == 20
    assert settings.channels.generic.shop == "main-store"
    assert "warehouse" in settings.known_roles


def test_syntax_error_in_main_still_checks_rule_files_beside_it(tmp_path: Path) -> None:
    main = write(tmp_path, "returnhub.toml", "[server\nport = 1\n")
    routing = write(
        tmp_path,
        "routing.toml",
        '[[tier]]\nname = "a"\nsteps = ["custom"]\n[[tier]]\nname = "b"\nkinds = ["exchange"]\n',
    )
    errors = errors_of(main)
    assert len(errors) == 2, errors
    assert errors[0].startswith(f"{main}:1: TOML 语法错误 / TOML syntax error: ")
    # "custom" may be declared in the unreadable main file: no unknown-role guess
    assert errors[1].startswith(f"{routing}:4: tier 'b': auto_approve = true 与 steps 必须二选一")


def test_locator_handles_dotted_quoted_and_multiline() -> None:
    from bot.config_locate import Locator

    text = dedent(
        '''
        a.b = 1
        "quoted key" = 2
        note = """
        fake = 3
        """
        [[t]]
        x = 1
        [[t]]
        x = 2
        [t.sub]
        y = 3
        '''
    ).lstrip("\n")
    locator = Locator(text)
    assert locator.find(("a", "b")) == 1
    assert locator.find(("quoted key",)) == 2
    assert locator.find(("fake",)) is None
    assert locator.find(("t", 1, "x")) == 9
    assert locator.find(("t", 1, "sub", "y")) == 11
    assert locator.line(("t", 0, "missing")) == 6
    assert locator.line(("nowhere",)) == 1


def test_installed_layout_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot import config_locate

    for name in ("config", "templates"):
        (tmp_path / "returnhub_data" / name).mkdir(parents=True)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(config_locate, "_source_root", lambda: None)
    for module in ("returnhub_data", "returnhub_data.config", "returnhub_data.templates"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    assert config_dir() == tmp_path / "returnhub_data" / "config"
    assert templates_dir() == tmp_path / "returnhub_data" / "templates"


def test_scripts_dir_beside_main_file_else_packaged(tmp_path: Path) -> None:
    main = write(tmp_path, "returnhub.toml", "")
    assert load(main, env={}).scripts_dir == config_dir() / "scripts"
    (tmp_path / "scripts").mkdir()
    assert load(main, env={}).scripts_dir == tmp_path / "scripts"


def test_a_half_configured_wecom_names_each_missing_key(tmp_path: Path) -> None:
    main = tmp_path / "returnhub.toml"
    main.write_text('[wecom]\ncorp_id = "ww123"\nagent_id = 1000002\n', encoding="utf-8")
    errors = check(main, env={})
    missing = sorted(e.split(": ")[1] for e in errors)
    assert missing == ["wecom.encoding_aes_key", "wecom.secret", "wecom.token"]
    assert all(e.startswith(f"{main}:1: ") for e in errors)
    env = {
        "RETURNHUB__WECOM__SECRET": "s",
        "RETURNHUB__WECOM__TOKEN": "t",
        "RETURNHUB__WECOM__ENCODING_AES_KEY": "a" * 43,
    }
    assert check(main, env=env) == []


def test_wecom_robots_and_replay_window(tmp_path: Path) -> None:
    main = tmp_path / "returnhub.toml"
    main.write_text(
        "[wecom]\nreplay_window_seconds = 120\n[wecom.robots]\nops = 'k1'\n", encoding="utf-8"
    )
    settings = load(main, env={"RETURNHUB__WECOM__ROBOTS__WAREHOUSE": "k2"})
    assert settings.wecom.replay_window_seconds == 120
    assert settings.wecom.robots == {"ops": "k1", "warehouse": "k2"}
    main.write_text(
        "[wecom]\nreplay_window_seconds = 0\n[wecom.robots]\nops = 7\n", encoding="utf-8"
    )
    errors = check(main, env={})
    assert any(e.startswith(f"{main}:2: wecom.replay_window_seconds") for e in errors)
    assert f"{main}:3: wecom.robots: 应为名称到字符串的表，实际是 dict" in "".join(errors)

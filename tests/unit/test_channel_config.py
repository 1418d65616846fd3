"""Shops per channel: the CONTRACT.md single-shop keys, `[[channels.<name>.shops]]` tables
inheriting the section's keys, and check-config's file:line errors for bad tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.channels.shops import douyin_shops, shopify_shops
from bot.settings import ConfigError, load

BASE = '[database]\nurl = "sqlite+aiosqlite:///x.db"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "returnhub.toml"
    path.write_text(BASE + text, encoding="utf-8")
    return path


def test_the_contract_single_shop_keys_still_work(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[channels.douyin]\napp_key = "k"\napp_secret = "s"\naccess_token = "t"\n'
        '[channels.shopify]\nshop_domain = "a.myshopify.com"\nsecret = "x"\naccess_token = "y"\n',
    )
    settings = load(path, env={})
    (shop,) = douyin_shops(settings.channels)
    assert (shop.shop_id, shop.app_key, shop.access_token, shop.configured) == ("", "k", "t", True)
    (store,) = shopify_shops(settings.channels)
    assert (store.shop_domain, store.secret) == ("a.myshopify.com", "x")


def test_the_secrets_of_one_shop_come_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, '[channels.douyin]\napp_key = "k"\nshop_id = "1"\n')
    env = {"RETURNHUB__CHANNELS__DOUYIN__APP_SECRET": "from-env"}
    (shop,) = douyin_shops(load(path, env=env).channels)
    assert shop.app_secret == "from-env" and shop.configured


def test_several_shops_inherit_the_app_from_the_section(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[channels.douyin]\napp_key = "k"\napp_secret = "s"\n'
        '[[channels.douyin.shops]]\nshop_id = "1"\nname = "旗舰店"\naccess_token = "t1"\n'
        '[[channels.douyin.shops]]\nshop_id = "2"\naccess_token = "t2"\napp_key = "k2"\n',
    )
    first, second = douyin_shops(load(path, env={}).channels)
    assert (first.shop_id, first.label, first.app_key, first.access_token) == (
        "1",
        "旗舰店",
        "k",
        "t1",
    )
    assert (second.app_key, second.app_secret, second.label) == ("k2", "s", "2")


@pytest.mark.parametrize(
    ("tables", "line", "message"),
    [
        ('[[channels.douyin.shops]]\nshop_id = "1"\nsecrte = "x"\n', 6, "unknown key"),
        ('[[channels.douyin.shops]]\nname = "无编号"\n', 4, "missing shop_id"),
        (
            '[[channels.douyin.shops]]\nshop_id = "1"\n[[channels.douyin.shops]]\nshop_id = "1"\n',
            6,
            "duplicate shop_id",
        ),
        ('[[channels.shopify.shops]]\nshop_domain = "a"\napi_base = "ftp://x"\n', 6, "http(s)"),
        ("[channels.douyin]\ntimeout_seconds = 0\n", 5, "must be positive"),
    ],
)
def test_bad_shop_tables_are_named_by_file_and_line(
    tmp_path: Path, tables: str, line: int, message: str
) -> None:
    path = write(tmp_path, "\n" + tables)
    with pytest.raises(ConfigError) as err:
        load(path, env={})
    assert any(e.startswith(f"{path}:{line}:") and message in e for e in err.value.errors), (
        err.value.errors
    )

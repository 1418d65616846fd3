"""`returnhub init` and `returnhub check-config`: writing and checking a config set."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot import settings as config
from bot.startup_report import render
from handlers.script_library import check_dir


def error_count(errors: list[str]) -> str:
    return f"配置有 {len(errors)} 处错误，请修改后重试 / {len(errors)} config error(s)"


def cmd_init(args: argparse.Namespace) -> int:
    target = Path(args.dir)
    target.mkdir(parents=True, exist_ok=True)
    source = config.config_dir()
    plan = {
        "returnhub.example.toml": "returnhub.toml",
        "routing.toml": "routing.toml",
        "sla.toml": "sla.toml",
        "warehouse.toml": "warehouse.toml",
    }
    for src, dst in plan.items():
        if (target / dst).exists():
            print(f"{target / dst}: 已存在，保持不变 / exists, left as is")
            continue
        shutil.copyfile(source / src, target / dst)
        print(f"已写入 / wrote {target / dst}")
    scripts = target / "scripts"
    if not scripts.exists():
        shutil.copytree(source / "scripts", scripts)
        print(f"已写入 / wrote {scripts}/")
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    """Every error as `file:line: message` (exit 2); else what the config switches on."""
    try:
        settings = config.load(args.config)
    except config.ConfigError as err:
        for line in err.errors:
            print(line)
        print(error_count(err.errors), file=sys.stderr)
        return 2
    # Dispute scripts are checked here, not in load(): the server re-reads them while
    # it runs and leaves a broken file out rather than refusing to start.
    if script_errors := check_dir(settings.scripts_dir):
        for line in script_errors:
            print(line)
        print(error_count(script_errors), file=sys.stderr)
        return 2
    for line in render(settings):
        print(line)
    print("配置无误 / config ok")
    return 0


def add_parser(sub: Any, config_option: Callable[[argparse.ArgumentParser], None]) -> None:
    """`returnhub init [DIR]`, `returnhub check-config [--config PATH]`."""
    init = sub.add_parser("init", help="写出一套可编辑的配置 / write an editable config set")
    init.add_argument(
        "dir", nargs="?", default=".", help="目标目录；默认当前目录 / target directory"
    )
    init.set_defaults(func=cmd_init)

    check = sub.add_parser(
        "check-config", help="检查配置，有错误时以 2 退出 / validate config; exit 2 on errors"
    )
    config_option(check)
    check.set_defaults(func=cmd_check_config)

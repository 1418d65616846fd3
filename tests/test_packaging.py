"""`pip install .` (not editable) must give a working `returnhub` with templates and
default config inside the installed package, run from anywhere but the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_non_editable_install_carries_templates_and_config(tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(ROOT),
        ],
        check=True,
        cwd=tmp_path,
        capture_output=True,
    )
    assert (target / "bin" / "returnhub").is_file()
    assert (target / "returnhub_data" / "templates" / "cards" / "console").is_dir()
    assert (target / "returnhub_data" / "config" / "routing.toml").is_file()
    assert (target / "storage" / "migrations" / "versions" / "0001_initial_schema.py").is_file()
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("RETURNHUB_CONFIG", None)

    def returnhub(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", "import sys, bot.cli; sys.exit(bot.cli.main())", *args],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import bot, bot.settings as s; print(bot.__file__); "
            "print(s.templates_dir()); print(s.config_dir())",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert all(line.startswith(str(target)) for line in where), where
    checked = returnhub("check-config")
    assert checked.returncode == 0, checked.stderr
    init = returnhub("init", "conf")
    assert init.returncode == 0, init.stderr
    assert {p.name for p in (work / "conf").iterdir()} >= {
        "returnhub.toml",
        "routing.toml",
        "sla.toml",
        "scripts",
    }
    (work / "conf" / "routing.toml").write_text('[[tier]]\nname = "x"\nbogus = 1\n')
    bad = returnhub("check-config", "--config", str(work / "conf" / "returnhub.toml"))
    assert bad.returncode == 2
    assert "routing.toml:3: " in bad.stdout and "bogus" in bad.stdout

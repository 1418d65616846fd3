"""`pip install .` (not editable) must give a working `returnhub` with templates and
default config inside the installed package, run from anywhere but the checkout.

The wheel is built once from a clean copy of the source tree: building in the
checkout would reuse a stale `build/lib`, which can carry files the configuration
no longer declares and hide exactly the loss these tests are for."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA_DIRS = {"templates": "returnhub_data/templates", "config": "returnhub_data/config"}


# What never belongs in a build: caches, earlier builds, the venv, local state.
_NOT_SOURCE = shutil.ignore_patterns(
    ".*", "build", "dist", "*.egg-info", "var", "__pycache__", "node_modules"
)


def _data_files() -> set[str]:
    """Every file under templates/ and config/, named as the wheel must hold it."""
    return {
        f"{target}/{path.relative_to(ROOT / name).as_posix()}"
        for name, target in DATA_DIRS.items()
        for path in (ROOT / name).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(the built wheel, the build's log)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=_NOT_SOURCE)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation"]
        + ["-w", str(base / "dist"), str(src)],
        cwd=base,
        capture_output=True,
        text=True,
        check=False,
    )
    log = built.stdout + built.stderr
    assert built.returncode == 0, log[-3000:]
    return next((base / "dist").glob("returnhub-*.whl")), log


def test_wheel_carries_every_template_and_config_file_without_warnings(
    wheel: tuple[Path, str],
) -> None:
    path, log = wheel
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
    expected = _data_files()
    assert len(expected) > 20
    assert expected - names == set()
    assert "absent from the `packages` configuration" not in log
    assert "Package would be ignored" not in log


def test_non_editable_install_carries_templates_and_config(
    tmp_path: Path, wheel: tuple[Path, str]
) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
        + ["--target", str(target), str(wheel[0])],
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

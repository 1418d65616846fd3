"""Dependency audit: pip-audit over the installed environment, against real advisory data.

pip-audit asks an advisory service about each installed release: PyPI's JSON API
(`/pypi/<name>/<version>/json`, its "vulnerabilities") or OSV (`api.osv.dev`). A
mirror that answers 404 for those URLs makes plain pip-audit skip every package and
report "No known vulnerabilities found": a pass that audited nothing. So this script
first probes each service with a release that exists (the installed pip), uses the
first that answers with advisory data, and runs pip-audit with `--strict` (a package
the service cannot answer for is an error, not a skip).

Exit codes:
  0  audited; nothing known with a fix available (advisories without a fix are listed)
  1  a known vulnerability with a fix available (or pip-audit itself failed)
  3  NOT AUDITED: no advisory service reachable (each probe's answer is printed)

`--from-json REPORT` judges a saved `pip-audit --format json` report instead (tests).
RETURNHUB_AUDIT_PYPI / RETURNHUB_AUDIT_OSV override the services' base URLs (tests).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from importlib.metadata import version
from typing import Any

PYPI = os.environ.get("RETURNHUB_AUDIT_PYPI", "https://pypi.org/pypi")
OSV = os.environ.get("RETURNHUB_AUDIT_OSV", "https://api.osv.dev/v1/query")
NOT_AUDITED = 3


def probe_pypi() -> str | None:
    """None when PyPI's per-release JSON answers with advisory data, else what it said."""
    url = f"{PYPI}/pip/{version('pip')}/json"
    try:
        with urllib.request.urlopen(url, timeout=15) as resp:  # noqa: S310 - fixed https URL
            body = json.loads(resp.read())
    except (OSError, ValueError) as err:
        return f"{url}: {err}"
    return None if "vulnerabilities" in body else f"{url}: no 'vulnerabilities' key"


def probe_osv() -> str | None:
    query = {"package": {"name": "pip", "ecosystem": "PyPI"}, "version": version("pip")}
    request = urllib.request.Request(  # noqa: S310 - fixed https URL
        OSV, data=json.dumps(query).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as resp:  # noqa: S310
            json.loads(resp.read())
    except (OSError, ValueError) as err:
        return f"{OSV}: {err}"
    return None


def run_pip_audit(service: str) -> dict[str, Any] | None:
    cmd = [
        sys.executable, "-m", "pip_audit", "--strict", "--vulnerability-service", service,
        "--format", "json", "--progress-spinner", "off", "--skip-editable",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        print(f"pip-audit failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        return None
    return report


def judge(report: dict[str, Any]) -> int:
    """1 when any vulnerability has a fix version, else 0; prints every finding."""
    packages = report.get("dependencies", [])
    fixable = unfixed = 0
    for dep in packages:
        for vuln in dep.get("vulns", []):
            fixes = vuln.get("fix_versions") or []
            ids = ", ".join([vuln["id"], *vuln.get("aliases", [])])
            if fixes:
                fixable += 1
                print(f"VULNERABLE {dep['name']} {dep['version']}: {ids}; fixed in {fixes}")
            else:
                unfixed += 1
                print(f"known, no fix yet: {dep['name']} {dep['version']}: {ids}")
    print(
        f"pip-audit: {len(packages)} packages audited; {fixable} vulnerabilities with a fix,"
        f" {unfixed} without"
    )
    return 1 if fixable else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from-json", metavar="REPORT")
    args = parser.parse_args()
    if args.from_json:
        with open(args.from_json, encoding="utf-8") as f:
            return judge(json.load(f))
    tried = []
    for service, probe in (("pypi", probe_pypi), ("osv", probe_osv)):
        problem = probe()
        if problem is None:
            print(f"pip-audit: advisory data from the {service} service")
            report = run_pip_audit(service)
            return 1 if report is None else judge(report)
        tried.append(f"  {service}: {problem}")
    print("=" * 72)
    print("DEPENDENCY AUDIT NOT RUN: no advisory service is reachable from here.")
    print("\n".join(tried))
    print("Nothing was audited; this is not a pass.")
    print("=" * 72)
    return NOT_AUDITED


if __name__ == "__main__":
    raise SystemExit(main())

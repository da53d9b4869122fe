"""Headless Chromium for the browser test (tests/test_browser.py): find it, or install Debian's packages.

`python -m dsda prepare-browser` (run by `make test` and `make book`'s set-up) installs `chromium` and
`chromium-driver` with apt when they are missing and we are root with apt-get; it never downloads a browser
build of its own and never fails: where it cannot install, it says why, and the browser test is skipped
with that reason. The side effects (`_run`, `_is_root`, `_which`) are module functions so tests can replace them.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

CHROMIUM_NAMES = ("chromium", "chromium-browser")       # Debian / Ubuntu names of the browser
DRIVER_NAMES = ("chromedriver",)
APT_PACKAGES = ("chromium", "chromium-driver")


@dataclass(frozen=True)
class Browser:
    chromium: str       # path of the browser binary
    driver: str         # path of the matching ChromeDriver


def _which(program: str) -> str | None:
    return shutil.which(program)


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _run(cmd: list[str]) -> int:
    print("$ " + " ".join(cmd), flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        return subprocess.run(cmd, check=False, env=env).returncode
    except OSError as e:
        print(f"dsda: {cmd[0]} failed: {e}", flush=True)
        return 127


def find_browser() -> tuple[Browser | None, str]:
    """(Browser, "") when Chromium, ChromeDriver and selenium are all here, else (None, what is missing)."""
    chromium = next(filter(None, map(_which, CHROMIUM_NAMES)), None)
    driver = next(filter(None, map(_which, DRIVER_NAMES)), None)
    missing = [what for what, path in (("chromium", chromium), ("chromedriver", driver)) if path is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the Python package selenium (pip install -e .[test])")
    if missing:
        return None, "not found: " + ", ".join(missing)
    return Browser(chromium, driver), ""


def prepare_browser(allow_apt: bool = True) -> tuple[Browser | None, str]:
    """Find the browser; if it is missing, install Debian's packages (as root, where apt-get exists)."""
    found, reason = find_browser()
    if found or "chromium" not in reason:     # nothing to install, or only selenium missing (pip's job)
        return found, reason
    if not allow_apt:
        return None, reason + "; apt not allowed (--no-apt)"
    if not (_is_root() and _which("apt-get")):
        return None, reason + "; installing it needs root and apt-get (apt-get install chromium chromium-driver)"
    ok = _run(["apt-get", "update"]) == 0 and _run(["apt-get", "install", "-y", *APT_PACKAGES]) == 0
    found, reason = find_browser()
    return found, reason if ok else reason + "; apt-get install chromium chromium-driver failed"

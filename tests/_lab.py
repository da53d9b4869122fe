"""The machinery of tests/test_browser.py: JupyterLab on a free localhost port with a token, a static server for
the built book, and Debian's headless Chromium through selenium. Each is a context manager that stops what it
started on the way out, whatever happened inside: the kernels (through the server's API, then the whole
process group the server leads, so a kernel whose shutdown hung goes too), the server, and the browser."""
from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(url: str, token: str, method: str = "GET"):
    req = urllib.request.Request(url, method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read()
    return json.loads(body) if body else None


def _wait_for_server(proc: subprocess.Popen, base: str, token: str, log: Path, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError):
            _api(f"{base}/api/status", token)
            return
        time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer within {timeout_s} s:\n{log.read_text()[-3000:]}")


def _descendants(pid: int) -> list[int]:
    """Every live process below `pid` (from /proc; the kernels run in sessions of their own, so a process
    group signal to the server would miss them)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def _stop_server(proc: subprocess.Popen, base: str, token: str, lab: "Lab") -> None:
    lab.started = [proc.pid, *_descendants(proc.pid)]
    with contextlib.suppress(Exception):      # the kernels first, through the API
        for k in _api(f"{base}/api/kernels", token):
            _api(f"{base}/api/kernels/{k['id']}", token, method="DELETE")
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):   # then the server's process group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait_s)
            break
    for pid in lab.started[1:]:               # and whatever it started that outlived it
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)


class Lab:
    """What jupyter_lab yields: the base URL and token; after the block, the pids it started (all stopped)."""

    def __init__(self, base: str, token: str, log: Path):
        self.base, self.token, self.log, self.started = base, token, log, []


@contextlib.contextmanager
def jupyter_lab(root: Path, home: Path, env: dict[str, str]):
    """JupyterLab serving `root` on a free port, with a random token and its own config and runtime folders
    under `home`; yields a Lab."""
    port, token = free_port(), secrets.token_hex(16)
    dirs = {k: home / k.lower() for k in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_SETTINGS_DIR",
                                          "JUPYTERLAB_WORKSPACES_DIR", "IPYTHONDIR")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.expose_app_in_browser=True", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = home / "jupyterlab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **env, **{k: str(v) for k, v in dirs.items()}},
                                start_new_session=True)   # its own process group: the kernels are stopped with it
    lab = Lab(f"http://127.0.0.1:{port}", token, log)
    try:
        _wait_for_server(proc, lab.base, token, log)
        yield lab
    finally:
        _stop_server(proc, lab.base, token, lab)


@contextlib.contextmanager
def static_server(folder: Path):
    """A local HTTP server for `folder` on a free port (a thread); yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def chromium(browser, width: int = 1400, height: int = 1800):
    """Debian's Chromium, headless, driven by selenium with Debian's ChromeDriver (no driver download)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser.chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=browser.driver))
    try:
        yield driver
    finally:
        driver.quit()

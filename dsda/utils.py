"""Small shared helpers: device resolution, atomic writes, provenance.

Everything that writes a file in this project goes through `atomic_write_*`, so a crash or a
full disk can leave a stale `*.tmp` file behind but never a half-written checkpoint or result.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import torch

from .checks import check_choice, check_positive  # noqa: F401  (re-exported: the checks live in dsda.checks)

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA, then MPS, then CPU; anything else must be a valid torch device string."""
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as {DEVICE_CHOICES}, got {type(device).__name__}")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"device={device!r} is not a valid device; use one of {DEVICE_CHOICES} "
                         f"(optionally with an index, e.g. 'cuda:1')") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available; use device='auto' or 'cpu'")
    return dev


def device_name(device: torch.device) -> str:
    """Human-readable name of the hardware behind `device` (for results and notebook headers)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu} ({torch.get_num_threads()} threads)"


# ----------------------------------------------------------------------------- atomic writes

def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` via a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def to_jsonable(obj: Any) -> Any:
    """Convert dataclasses, tensors, numpy scalars, tuples and paths into plain JSON types."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, (Path, torch.device)):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        return obj.item()
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return str(obj)  # JSON has no NaN/inf; keep them visible rather than crash
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    text = json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n"
    return atomic_write_bytes(path, text.encode())


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


# ----------------------------------------------------------------------------- provenance

def library_versions() -> dict[str, str]:
    import numpy
    out = {"python": platform.python_version(), "torch": str(torch.__version__), "numpy": str(numpy.__version__)}
    for name in ("torchvision", "sklearn", "scipy", "pandas", "matplotlib", "papermill", "nbval"):
        with contextlib.suppress(Exception):
            out[name] = str(__import__(name).__version__)
    with contextlib.suppress(Exception):
        from importlib.metadata import version
        out["dsda"] = version("dsda")
    return out


def git_commit(root: str | os.PathLike | None = None) -> str:
    """Commit of the checkout holding this package ('+dirty' when it has uncommitted changes)."""
    root = Path(root) if root else Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(device: torch.device | str | None = None) -> dict[str, Any]:
    """What every result file records next to its numbers."""
    dev = resolve_device(device or "auto")
    return {"versions": library_versions(), "git_commit": git_commit(), "device": str(dev),
            "device_name": device_name(dev), "platform": platform.platform(),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


@contextlib.contextmanager
def timer() -> Iterator[dict[str, float]]:
    """`with timer() as t: ...; t['s']` gives wall seconds (synchronising CUDA first)."""
    out: dict[str, float] = {}
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    try:
        yield out
    finally:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        out["s"] = time.perf_counter() - t0

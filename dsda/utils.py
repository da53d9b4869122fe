"""Small shared helpers: device resolution, atomic writes, provenance.

Everything that writes a file in this project goes through `atomic_write_*`, so a crash or a
full disk can leave a stale `.NAME.*.tmp` file behind but never a half-written checkpoint or result;
the next write of NAME removes such files once they are an hour old. Written files get the mode a
plain `open()` gives (0o666 minus the umask), not mkstemp's 0o600.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import secrets
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import torch

from .checks import check_choice, check_positive  # noqa: F401  (re-exported: the checks live in dsda.checks)

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict: names, dtypes, shapes and values in a layout-free order (a channels_last copy of
    a model has the digest of the model). Checkpoints store it; a SyntheticSet names the model it came from by it."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


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

STALE_TMP_S = 3600   # a `.NAME.*.tmp` sibling older than this is left over from a killed write
_TMP_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"


def _remove_stale_tmp(path: Path) -> None:
    """Delete `.NAME.*.tmp` files next to `path` that no live writer can still be using."""
    prefix, cutoff = f".{path.name}.", time.time() - STALE_TMP_S
    with contextlib.suppress(OSError):
        for entry in os.scandir(path.parent):
            if entry.name.startswith(prefix) and entry.name.endswith(".tmp") and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        os.unlink(entry.path)


def _create_tmp(path: Path) -> tuple[int, str]:
    """Like `tempfile.mkstemp`, but created with mode 0o666 so the umask applies, as for `open(path, "w")`.

    mkstemp forces 0o600, which made results and shared caches unreadable for other users; passing
    0o666 to the kernel (not chmod after reading the umask) is race-free and honours default ACLs.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(path)
    rng = secrets.SystemRandom()
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{''.join(rng.choices(_TMP_CHARS, k=8))}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), str(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file next to {path}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` via a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    fd, tmp = _create_tmp(path)
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


def check_writable(path: str | os.PathLike, name: str = "path") -> Path:
    """Fail now, before any work, if `path` could not be written later; creates and leaves nothing.

    `path` must name a file (not an existing directory, not ending in a separator); its nearest
    existing ancestor must be a directory in which a file can be created (probed with a temporary
    file that is removed at once). Missing parent folders are created only by the final write.
    """
    text = os.fspath(path)
    if not text or text.endswith(os.sep) or (os.altsep and text.endswith(os.altsep)) or Path(text).is_dir():
        raise ValueError(f"{name} {text!r} names a directory; give a file name such as "
                         f"{os.path.join(text or '.', 'result.json')!r}")
    target = Path(text).expanduser().absolute()
    folder = target.parent
    while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"{name} {text!r} cannot be written: {folder} exists and is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".dsda-write-probe.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise PermissionError(f"{name} {text!r} cannot be written: cannot create a file in {folder} "
                              f"({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)
    return target


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
    fd, tmp = _create_tmp(path)
    os.close(fd)
    try:
        torch.save(obj, tmp)   # by name, as before: torch names the archive's folder after the file
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
            "device_name": device_name(dev), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "platform": platform.platform(),
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

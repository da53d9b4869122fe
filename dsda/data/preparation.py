"""`prepare(name)` (behind `python -m dsda prepare-data`): the one place that installs or downloads data.

Nothing else downloads implicitly. The side effects (`_run_command`, `_is_root`, `_which`,
`_is_online`, `_download_fashion_mnist`) are module-level functions so that tests can replace them
here (CIFAR's download is `dsda.data.cifar._download_cifar`).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

from ..utils import check_choice
from .cifar import CIFAR_LAYOUTS, _cifar_folder, _cifar_missing_message, find_cifar
from .common import DATASET_NAMES, SPLITS, data_roots
from .dataset import DatasetError
from .fashion_mnist import _fashion_mnist_missing_message, find_fashion_mnist, read_fashion_mnist
from .guard import _check_access
from .pins import _pins_folder


def _run_command(cmd: list[str]) -> int:
    """Run a command, streaming its output; returns the exit status (tests replace this)."""
    print("$ " + " ".join(cmd), flush=True)
    try:
        return subprocess.run(cmd, check=False).returncode
    except OSError as e:
        print(f"dsda: {cmd[0]} failed: {e}", flush=True)
        return 127


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _which(program: str) -> str | None:
    return shutil.which(program)


def _is_online(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """Can we open a TCP connection to `host`? (DNS failure or a firewall both mean no.)"""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _download_fashion_mnist(root: Path) -> None:
    """torchvision stores the files under root/FashionMNIST/raw/, which the lookup also searches."""
    import torchvision
    root.mkdir(parents=True, exist_ok=True)
    print(f"dsda: downloading Fashion-MNIST with torchvision into {root / 'FashionMNIST' / 'raw'}", flush=True)
    torchvision.datasets.FashionMNIST(root=str(root), train=True, download=True)


def _verified_fashion_mnist(data_dir: str | None) -> Path | None:
    folder = find_fashion_mnist(data_dir)
    if folder is None:
        return None
    for split in SPLITS:   # full check: a truncated download should fail here, not during training
        read_fashion_mnist(folder, split)
    return folder


def prepare(name: str = "fashion_mnist", allow_apt: bool = True, allow_download: bool = True,
            data_dir: str | os.PathLike | None = None) -> Path:
    """Make sure a data set is on disk and return its folder (installs or downloads only if allowed).

    Fashion-MNIST: found -> done; else apt (as root, if apt-get exists and `allow_apt`); else a
    torchvision download (if `allow_download` and online); else DatasetError with the commands.
    CIFAR: found (or its archive extracted) -> done; else download if allowed and online.
    Pins: found -> done; otherwise DatasetError explaining where to put it. Digits ship with scikit-learn.
    """
    _check_access(f"prepare({name!r})")
    check_choice("name", name, DATASET_NAMES)
    for key, v in (("allow_apt", allow_apt), ("allow_download", allow_download)):
        if not isinstance(v, bool):
            raise TypeError(f"{key} must be True or False, got {v!r}")
    data_dir = None if data_dir is None else str(Path(data_dir).expanduser().resolve())
    if name == "digits":
        from importlib.resources import files
        return Path(str(files("sklearn.datasets") / "data"))
    if name == "pins":
        return _pins_folder(data_dir)
    if name in CIFAR_LAYOUTS:
        return _prepare_cifar(name, allow_download, data_dir)
    return _prepare_fashion_mnist(allow_apt, allow_download, data_dir)


def _prepare_fashion_mnist(allow_apt: bool, allow_download: bool, data_dir: str | None) -> Path:
    folder = _verified_fashion_mnist(data_dir)
    if folder is not None:
        print(f"dsda: Fashion-MNIST found in {folder}", flush=True)
        return folder
    tried: list[str] = []   # what was attempted and why it failed, for the error message
    if allow_apt and data_dir is None:   # apt installs into the system folder, not into a chosen data_dir
        folder = _install_with_apt(tried)
        if folder is not None:
            return folder
    if allow_download:
        folder = _download_with_torchvision(data_dir, tried)
        if folder is not None:
            return folder
    raise DatasetError(_fashion_mnist_missing_message(data_dir) + (f"\n(Tried: {'; '.join(tried)}.)" if tried else ""))


def _install_with_apt(tried: list[str]) -> Path | None:
    """The Debian package dataset-fashion-mnist (as root, where apt-get exists); None and a note in `tried` if not."""
    if not (_is_root() and _which("apt-get")):
        tried.append("apt skipped (needs root and apt-get)")
        return None
    print("dsda: Fashion-MNIST not found; installing the Debian package dataset-fashion-mnist", flush=True)
    ok = all(_run_command(cmd) == 0 for cmd in (["apt-get", "update"],
                                                 ["apt-get", "install", "-y", "dataset-fashion-mnist"]))
    folder = _verified_fashion_mnist(None) if ok else None
    if folder is None:
        tried.append("apt-get install dataset-fashion-mnist failed")
    return folder


def _download_with_torchvision(data_dir: str | None, tried: list[str]) -> Path | None:
    """torchvision's download into the first data folder, if online; None and a note in `tried` if not."""
    root = data_roots(data_dir)[0]
    host = "fashion-mnist.s3-website.eu-central-1.amazonaws.com"
    if not _is_online(host, port=80):
        tried.append(f"offline ({host} unreachable)")
        return None
    try:
        _download_fashion_mnist(root)
    except Exception as e:   # network errors, checksum errors: fall through to the instructions
        tried.append(f"torchvision download failed ({type(e).__name__}: {e})")
        return None
    folder = _verified_fashion_mnist(data_dir)
    if folder is None:
        tried.append("torchvision download produced no files")
    return folder


def _prepare_cifar(name: str, allow_download: bool, data_dir: str | None) -> Path:
    folder = find_cifar(name, data_dir)
    if folder is not None:
        print(f"dsda: {name} found in {folder}", flush=True)
        return folder
    layout = CIFAR_LAYOUTS[name]
    if allow_download and _is_online(layout.url_host):
        return _cifar_folder(name, data_dir, download=True)
    raise DatasetError(_cifar_missing_message(name, data_dir)
                       + ("" if not allow_download else f" ({layout.url_host} is unreachable: offline?)"))

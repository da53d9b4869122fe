"""Regression tests for issue 13 (files, checkpoints, data lookup, the command line).

- A bad cached checkpoint falls back to the verified shipped one; repeated bad files are all kept.
- No `torch.load` in the repository unpickles without an explicit opt-in; a `__reduce__` payload in a
  checkpoint never runs, and the error does not advise re-running with weights_only=False.
- `dsda run --out` is checked before any work; user errors never end in a traceback; `--debug`.
- Written files get the umask's mode; stale temporary files of killed writes are cleaned.
- A missing $DSDA_DATA_DIR is warned about; an altered full-size Fashion-MNIST file is refused.
"""
from __future__ import annotations

import argparse
import ast
import gzip
import hashlib
import importlib.util
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from dsda import cli
from dsda import data as D
from dsda import train as T
from dsda.profiles import get_profile
from dsda.utils import atomic_torch_save, atomic_write_bytes, atomic_write_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _data_fixtures as fx  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")
needs_debian_fmnist = pytest.mark.skipif(not (DEBIAN_FMNIST / "t10k-images-idx3-ubyte.gz").is_file(),
                                         reason="Debian package dataset-fashion-mnist is not installed")


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


class _Payload:
    """Unpickling this calls os.mkdir(marker): proof that a file's code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """Scratch cache and shipped-checkpoint folders; the smoke config and its file name."""
    monkeypatch.setenv("DSDA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DSDA_PRETRAINED_DIR", str(tmp_path / "pretrained"))
    monkeypatch.delenv("DSDA_NO_PRETRAINED", raising=False)
    cfg = T.model_config(get_profile("smoke"), 0)
    name = T.checkpoint_name(cfg)
    return {"cache": tmp_path / "cache" / "smoke" / name, "shipped": tmp_path / "pretrained" / "smoke" / name,
            "cfg": cfg}


def _seeded_model(seed: int = 123):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return T._new_model(get_profile("smoke"))


def _no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("must not train: a verified checkpoint exists")
    monkeypatch.setattr(T, "train_model", refuse)


def _instant_training(monkeypatch):
    """Training replaced by nothing (weights stay at their seeded init): for tests of the file handling."""
    monkeypatch.setattr(T, "train_model", lambda *a, **k: {"epoch_loss": [], "epoch_time_s": []})


# ----------------------------------------------------------------------------- item 2: cache -> shipped fallback

def test_bad_cache_file_falls_back_to_the_verified_shipped_checkpoint(dirs, monkeypatch):
    shipped_model = _seeded_model()
    T.save_checkpoint(dirs["shipped"], shipped_model, dirs["cfg"])
    shipped_bytes = dirs["shipped"].read_bytes()
    dirs["cache"].parent.mkdir(parents=True)
    dirs["cache"].write_bytes(b"truncated garbage")
    _no_training(monkeypatch)
    with pytest.warns(RuntimeWarning, match=r"(?s)cannot read checkpoint.*moved to.*-> trying .*pretrained"):
        model = T.original_model("smoke", progress=False)
    assert _same_weights(model, shipped_model)
    assert not dirs["cache"].exists()                        # moved aside, nothing retrained into the cache
    assert dirs["cache"].with_name(dirs["cache"].name + ".corrupt").read_bytes() == b"truncated garbage"
    assert dirs["shipped"].read_bytes() == shipped_bytes      # the shipped file is never touched


def test_retrains_only_when_no_candidate_verifies(dirs, monkeypatch):
    for path in (dirs["cache"], dirs["shipped"]):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"bad")
    _instant_training(monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        T.original_model("smoke", progress=False)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 2 and "-> trying" in messages[0] and "-> retraining" in messages[1]
    assert dirs["shipped"].read_bytes() == b"bad"
    T.load_checkpoint(dirs["cache"], expected_config=dirs["cfg"])   # the retrained model went to the cache


# ----------------------------------------------------------------------------- item 3: no unpickling of untrusted files

# (file, function) of the one documented opt-in: benchmarks/sampler.py --trust-pickle
UNPICKLE_OPT_IN = {("benchmarks/sampler.py", "load_pickled_model")}


def _torch_load_calls(path: Path):
    """(function name, call node) of every torch.load / torch.serialization.load call in a Python file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for fn in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))] + [tree]:
        body = fn.body if fn is not tree else [n for n in tree.body
                                               if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for node in (n for stmt in body for n in ast.walk(stmt)):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("torch.load", "torch.serialization.load"):
                yield getattr(fn, "name", "<module>"), node


def _python_files():
    skip = {".git", ".venv", "checkpoints", "runs", "__pycache__", "node_modules"}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if not any(part in skip or part.startswith(".") for part in rel.parts[:-1]):
            yield rel, path


def test_no_torch_load_without_weights_only_true_outside_the_opt_in():
    safe, opt_in, unsafe = [], [], []
    for rel, path in _python_files():
        for fn, call in _torch_load_calls(path):
            kw = {k.arg: k.value for k in call.keywords}
            ok = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
            where = f"{rel}:{call.lineno} in {fn}()"
            (safe if ok else opt_in if (rel.as_posix(), fn) in UNPICKLE_OPT_IN else unsafe).append(where)
    assert not unsafe, f"torch.load without weights_only=True: {unsafe}"
    assert any(w.startswith("dsda/train.py") for w in safe)   # the scan sees the real loader
    assert len(opt_in) == len(UNPICKLE_OPT_IN)                # ... and the opt-in, which is still there


def _load_sampler_benchmark():
    spec = importlib.util.spec_from_file_location("bench_sampler", ROOT / "benchmarks" / "sampler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reduce_payload_in_a_checkpoint_never_runs(tmp_path, dirs, monkeypatch, capsys):
    marker = tmp_path / "payload-ran"
    evil = tmp_path / "evil.pt"
    torch.save({"config": {}, "state_dict": _Payload(marker)}, evil)
    with pytest.raises(T.CheckpointError) as e:
        T.load_checkpoint(evil)
    msg = str(e.value)
    assert "cannot read checkpoint" in msg and "posix.mkdir" in msg and "nothing in it ran" in msg
    assert "weights_only" not in msg and "safe_globals" not in msg   # no advice that would run the file
    # in the cache: refused, moved aside, rebuilt
    dirs["cache"].parent.mkdir(parents=True)
    dirs["cache"].write_bytes(evil.read_bytes())
    _instant_training(monkeypatch)
    with pytest.warns(RuntimeWarning, match="posix.mkdir"):
        T.original_model("smoke", progress=False)
    # the sampler benchmark refuses it unless --trust-pickle is given
    bench = _load_sampler_benchmark()
    args = argparse.Namespace(checkpoint=str(evil), trust_pickle=False, profile="smoke")
    with pytest.raises(SystemExit, match=r"(?s)cannot read checkpoint.*--trust-pickle"):
        bench.load_model(args, torch.device("cpu"))
    assert not marker.exists()


def test_sampler_benchmark_trust_pickle_is_an_explicit_documented_opt_in(tmp_path, capsys):
    bench = _load_sampler_benchmark()
    with pytest.raises(SystemExit):
        bench.main(["--help"])
    assert "RUNS ANY CODE" in " ".join(capsys.readouterr().out.split())
    whole = tmp_path / "whole.pt"
    torch.save(_seeded_model(), whole)   # a whole pickled model, which only the opt-in loads
    args = argparse.Namespace(checkpoint=str(whole), trust_pickle=False, profile="smoke")
    with pytest.raises(SystemExit, match="--trust-pickle"):
        bench.load_model(args, torch.device("cpu"))
    args.trust_pickle = True
    model, source = bench.load_model(args, torch.device("cpu"))
    assert _same_weights(model, _seeded_model()) and str(whole) in source


# ----------------------------------------------------------------------------- item 4: --out checked before the run

@pytest.fixture
def no_run(monkeypatch):
    """Record whether `dsda run` started any work."""
    calls = []
    from dsda.baselines import runner
    monkeypatch.setattr(runner, "run_method", lambda *a, **k: calls.append(a) or {})
    return calls


def _bad_out(tmp_path: Path, kind: str) -> str:
    if kind in ("parent is a file", "ancestor is a file"):
        (tmp_path / "afile.txt").write_text("x")
        return str(tmp_path / "afile.txt" / ("r.json" if kind == "parent is a file" else "sub/r.json"))
    if kind == "trailing separator":
        return str(tmp_path / "newdir") + os.sep
    if kind == "existing directory":
        return str(tmp_path)
    return "/sys/r.json"   # a folder nobody can create files in, not even root


@pytest.mark.parametrize("kind, message", [
    ("parent is a file", "afile.txt exists and is not a directory"),
    ("ancestor is a file", "afile.txt exists and is not a directory"),
    ("trailing separator", "names a directory"),
    ("existing directory", "names a directory"),
    ("unwritable folder", "cannot create a file in /sys"),
])
def test_cli_run_checks_out_before_any_work(tmp_path, no_run, capsys, kind, message):
    if kind == "unwritable folder" and not Path("/sys/kernel").is_dir():
        pytest.skip("needs Linux sysfs")
    out = _bad_out(tmp_path, kind)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert cli.main(["run", "--method", "neggrad", "--profile", "smoke", "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and message in err and len(err.strip().splitlines()) == 1, err
    assert no_run == []                                          # nothing ran ...
    assert sorted(p.name for p in tmp_path.rglob("*")) == before   # ... and nothing was written


def test_cli_run_bad_out_exits_without_traceback(tmp_path):
    (tmp_path / "afile.txt").write_text("x")
    env = {**os.environ, "DSDA_CACHE_DIR": str(tmp_path / "cache"), "DSDA_NO_PRETRAINED": "1"}
    p = subprocess.run([sys.executable, "-m", "dsda", "run", "--method", "neggrad", "--profile", "smoke",
                        "--out", str(tmp_path / "afile.txt" / "r.json")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "--out" in p.stderr, p.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ["afile.txt"]


# ----------------------------------------------------------------------------- item 7: file modes follow the umask

@pytest.mark.parametrize("umask, mode", [(0o027, 0o640), (0o022, 0o644), (0o077, 0o600)])
def test_written_files_get_the_umask_mode(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        paths = [atomic_write_json(tmp_path / "r.json", {"a": 1}), atomic_write_bytes(tmp_path / "b.bin", b"x"),
                 atomic_torch_save(tmp_path / "t.pt", {"w": torch.zeros(2)}),
                 T.save_checkpoint(tmp_path / "m.pt", _seeded_model(), T.model_config(get_profile("smoke"), 0))]
        paths.append(atomic_write_json(tmp_path / "r.json", {"a": 2}))   # replacing a file, too
    finally:
        os.umask(old)
    for p in paths:
        assert p.stat().st_mode & 0o777 == mode, (p, oct(p.stat().st_mode))
    assert not list(tmp_path.glob(".*.tmp"))


# ----------------------------------------------------------------------------- item 8: data lookup

@pytest.fixture
def isolated_data(monkeypatch, tmp_path):
    D.clear_cache()
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv(D.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(D.fashion_mnist, "SYSTEM_FASHION_MNIST_DIR", tmp_path / "no-system-dir")
    yield
    D.clear_cache()


def test_missing_data_dir_variable_is_warned_about_once(isolated_data, tmp_path, monkeypatch):
    missing = tmp_path / "typo-data-dir"
    monkeypatch.setenv(D.DATA_DIR_ENV, str(missing))
    with pytest.warns(UserWarning, match=r"\$DSDA_DATA_DIR=.*is not an existing folder \(" + re.escape(str(missing))):
        assert D.find_fashion_mnist() is None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        D.find_fashion_mnist()
        D.data_roots()
        monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path))     # an existing folder: no warning
        D.data_roots()
    assert not [w for w in caught if D.DATA_DIR_ENV in str(w.message)]


def _inverted_copy(src: Path, dst: Path, header: int) -> None:
    """Same format, size and header; every pixel v becomes 255 - v."""
    data = np.frombuffer(gzip.decompress(src.read_bytes()), np.uint8).copy()
    data[header:] = 255 - data[header:]
    dst.write_bytes(gzip.compress(data.tobytes(), compresslevel=1))


@needs_debian_fmnist
def test_checksum_table_matches_the_genuine_files():
    for name, (length, md5, sha256) in D.FASHION_MNIST_CHECKSUMS.items():
        data = gzip.decompress((DEBIAN_FMNIST / name).read_bytes())
        assert (len(data), hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest()) == (length, md5, sha256)


@needs_debian_fmnist
def test_inverted_copy_of_the_real_test_images_is_refused(isolated_data, tmp_path):
    folder = tmp_path / "fm"
    folder.mkdir()
    _inverted_copy(DEBIAN_FMNIST / "t10k-images-idx3-ubyte.gz", folder / "t10k-images-idx3-ubyte.gz", header=16)
    fx.link_or_copy(DEBIAN_FMNIST / "t10k-labels-idx1-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz")
    for verify_sizes in (True, False):
        with pytest.raises(D.DatasetError, match=r"t10k-images-idx3-ubyte\.gz has the size of the official "
                                                 r"Fashion-MNIST file but not its contents.*prepare-data"):
            D.load_dataset("fashion_mnist", "test", data_dir=folder, verify_sizes=verify_sizes)
    (folder / "t10k-images-idx3-ubyte.gz").unlink()
    fx.link_or_copy(DEBIAN_FMNIST / "t10k-images-idx3-ubyte.gz", folder / "t10k-images-idx3-ubyte.gz")
    assert len(D.load_dataset("fashion_mnist", "test", data_dir=folder)) == 10_000   # the genuine file loads


def test_prepare_refuses_full_size_files_that_are_not_fashion_mnist(isolated_data, tmp_path, monkeypatch):
    stand_in = fx.write_full_size_fmnist(tmp_path / "stand-in")   # official sizes, other contents
    monkeypatch.setattr(D.fashion_mnist, "SYSTEM_FASHION_MNIST_DIR", stand_in)
    with pytest.raises(D.DatasetError, match="has the size of the official Fashion-MNIST file but not its contents"):
        D.prepare(allow_apt=False, allow_download=False)


# ----------------------------------------------------------------------------- item 9: stale files, .corrupt, --debug

def test_stale_temporary_files_of_killed_writes_are_removed(tmp_path):
    old_tmp, fresh_tmp = tmp_path / ".r.json.k1ll3d00.tmp", tmp_path / ".r.json.wr1t1ng0.tmp"
    other, lookalike = tmp_path / ".other.json.k1ll3d00.tmp", tmp_path / ".r.json.keep"
    for p in (old_tmp, fresh_tmp, other, lookalike):
        p.write_text("partial")
    hours_ago = time.time() - 2 * 3600
    for p in (old_tmp, other, lookalike):
        os.utime(p, (hours_ago, hours_ago))
    atomic_write_json(tmp_path / "r.json", {"a": 1})
    assert not old_tmp.exists()                                   # stale sibling of r.json: removed
    assert fresh_tmp.exists() and other.exists() and lookalike.exists()   # a live write, other names: kept
    atomic_torch_save(tmp_path / "other.json", {"w": torch.zeros(1)})
    assert not other.exists()


def test_every_corrupt_cache_file_is_kept(dirs, monkeypatch):
    monkeypatch.setenv("DSDA_NO_PRETRAINED", "1")
    _instant_training(monkeypatch)
    dirs["cache"].parent.mkdir(parents=True)
    for i in range(3):
        dirs["cache"].write_bytes(f"bad {i}".encode())
        with pytest.warns(RuntimeWarning, match="moved to"):
            T.original_model("smoke", progress=False)
    aside = sorted(dirs["cache"].parent.glob("*.corrupt*"))
    assert sorted(p.read_bytes() for p in aside) == [b"bad 0", b"bad 1", b"bad 2"]
    assert {p.name[len(dirs["cache"].name):] for p in aside} == {".corrupt", ".corrupt.2", ".corrupt.3"}


def test_internal_errors_are_one_line_unless_debug(monkeypatch, capsys):
    from dsda.baselines import runner

    def bug():
        return {}["missing"]

    monkeypatch.setattr(runner, "methods_table_text", bug)
    assert cli.main(["methods"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("internal error: KeyError: 'missing'") and "--debug" in err and "Traceback" not in err
    for argv in (["--debug", "methods"], ["methods", "--debug"]):
        with pytest.raises(KeyError):
            cli.main(argv)
    def user_error():
        raise ValueError("bad input")

    monkeypatch.setattr(runner, "methods_table_text", user_error)
    assert cli.main(["methods"]) == 2 and capsys.readouterr().err == "error: bad input\n"   # user errors: as before
    with pytest.raises(ValueError):
        cli.main(["methods", "--debug"])

"""Tests for dsda.data: loaders, normalisation, splits, the data-access guard and `prepare`.

Every loader runs on files written here in the real on-disk format (tests/_data_fixtures.py);
the real Fashion-MNIST from the Debian package is checked when it is installed.
"""
from __future__ import annotations

import gzip
import io
import pickle
import sys
import threading
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from dsda import data as D

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _data_fixtures as fx  # noqa: E402

DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")
needs_debian_fmnist = pytest.mark.skipif(not (DEBIAN_FMNIST / "t10k-images-idx3-ubyte.gz").is_file(),
                                         reason="Debian package dataset-fashion-mnist is not installed")


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """Fresh cache, no $DSDA_DATA_DIR, cwd in an empty folder, no system Fashion-MNIST unless a test asks."""
    D.clear_cache()
    monkeypatch.delenv(D.DATA_DIR_ENV, raising=False)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(D.fashion_mnist, "SYSTEM_FASHION_MNIST_DIR", tmp_path / "no-system-dir")
    yield
    D.clear_cache()


def unnormalise(x: torch.Tensor, info: D.DatasetInfo) -> torch.Tensor:
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    return x.double() * std.double() + mean.double()


# ----------------------------------------------------------------------------- API basics

def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match=r"name='mnist'.*'fashion_mnist'"):
        D.load_dataset("mnist", "train")
    with pytest.raises(ValueError, match=r"split='val'.*'train', 'test'"):
        D.load_dataset("digits", "val")
    with pytest.raises(TypeError, match=r"unexpected keyword.*\['colour'\].*allowed"):
        D.load_dataset("fashion_mnist", "train", colour=True)
    with pytest.raises(TypeError, match="verify_sizes must be True or False"):
        D.load_dataset("cifar10", "train", verify_sizes="yes")
    with pytest.raises(ValueError, match="image_size must be an integer >= 2"):
        D.dataset_info("pins", image_size=0)


def test_dataset_info_constants_and_input_range():
    fm = D.dataset_info("fashion_mnist")
    assert fm.class_names == ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                              "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
    assert fm.image_shape == (1, 28, 28) and fm.mean == (0.2860,) and fm.std == (0.3530,)
    # hand-computed: (0 - 0.2860) / 0.3530 and (1 - 0.2860) / 0.3530
    assert fm.input_range == pytest.approx((-0.810198300, 2.022662890), abs=1e-8)
    c10 = D.dataset_info("cifar10")
    # min over channels of -m/s is the red channel (-0.4914/0.2470), max of (1-m)/s the green (0.5178/0.2435)
    assert c10.input_range == pytest.approx((-1.989473684, 2.126488706), abs=1e-8)
    assert c10.num_classes == 10 and c10.image_shape == (3, 32, 32)
    c100 = D.dataset_info("cifar100")
    assert c100.num_classes == 100 and len(set(c100.class_names)) == 100
    # the CIFAR-100 classes SSD (and our paper-cifar100 profile) forget
    assert [c100.class_names[i] for i in (2, 40, 51, 69, 71)] == ["baby", "lamp", "mushroom", "rocket", "sea"]
    assert D.dataset_info("digits").image_shape == (1, 8, 8)


def test_tensor_dataset_subset_and_validation():
    info = D.dataset_info("digits")
    x = torch.arange(5 * 64, dtype=torch.float32).view(5, 1, 8, 8)
    ds = D.TensorDataset(x, torch.tensor([0, 1, 2, 1, 0]), info)
    sub = ds.subset([4, 1])
    assert isinstance(sub, D.TensorDataset) and sub is not ds and len(sub) == 2
    assert sub.y.tolist() == [0, 1] and torch.equal(sub.x[0], x[4])
    sub.x.add_(1.0)   # a subset is a copy: the original is untouched
    assert torch.equal(ds.x, x) and ds.x.data_ptr() != sub.x.data_ptr()
    assert ds.subset(torch.tensor([True, False, True, False, False])).y.tolist() == [0, 2]
    assert len(ds.subset([])) == 0 and len(ds.subset(np.array([], dtype=np.int64))) == 0
    with pytest.raises(ValueError, match=r"idx must lie in \[0, 5\)"):
        ds.subset([5])
    with pytest.raises(ValueError, match=r"idx must lie in \[0, 5\)"):
        ds.subset([-1])
    with pytest.raises(ValueError, match="boolean mask of length 2"):
        ds.subset(torch.tensor([True, False]))
    with pytest.raises(TypeError, match="integers or booleans"):
        ds.subset(torch.tensor([0.5]))
    with pytest.raises(TypeError, match="y must be an int64"):
        D.TensorDataset(x, torch.tensor([0, 1, 2, 1, 0], dtype=torch.int32), info)
    with pytest.raises(ValueError, match="image shape"):
        D.TensorDataset(torch.zeros(5, 1, 7, 7), torch.zeros(5, dtype=torch.int64), info)
    assert ds.to("cpu").x.device.type == "cpu"


# ----------------------------------------------------------------------------- Fashion-MNIST (real)

@pytest.fixture(scope="module")
def real_fmnist():
    if not (DEBIAN_FMNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    return {s: D.read_fashion_mnist(DEBIAN_FMNIST, s) for s in D.SPLITS}


@needs_debian_fmnist
def test_real_fashion_mnist_from_debian_path(monkeypatch, real_fmnist):
    monkeypatch.setattr(D.fashion_mnist, "SYSTEM_FASHION_MNIST_DIR", DEBIAN_FMNIST)
    assert D.find_fashion_mnist() == DEBIAN_FMNIST   # found through the lookup, not a path argument
    train = D.load_dataset("fashion_mnist", "train")
    test = D.load_dataset("fashion_mnist", "test")
    assert train.x.shape == (60_000, 1, 28, 28) and test.x.shape == (10_000, 1, 28, 28)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert torch.bincount(train.y).tolist() == [6000] * 10
    assert torch.bincount(test.y).tolist() == [1000] * 10
    # the mean/std constants are the train-split statistics, so train is ~N(0, 1) after normalising
    assert abs(train.x.mean().item()) < 1e-3 and abs(train.x.std().item() - 1) < 1e-3
    assert abs(test.x.mean().item()) < 0.02 and abs(test.x.std().item() - 1) < 0.02
    lo, hi = train.info.input_range
    assert train.x.min().item() == pytest.approx(lo, abs=1e-5) and train.x.max().item() == pytest.approx(hi, abs=1e-5)
    assert torch.equal(train.x, real_fmnist["train"].x) and torch.equal(test.y, real_fmnist["test"].y)
    assert train.info == D.dataset_info("fashion_mnist")


@needs_debian_fmnist
def test_truncated_real_idx_file_raises_dataset_error(monkeypatch, tmp_path):
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    raw = (DEBIAN_FMNIST / "t10k-images-idx3-ubyte.gz").read_bytes()
    (data_dir / "t10k-images-idx3-ubyte.gz").write_bytes(raw[: len(raw) // 2])
    fx.link_or_copy(DEBIAN_FMNIST / "t10k-labels-idx1-ubyte.gz", data_dir / "t10k-labels-idx1-ubyte.gz")
    monkeypatch.setenv(D.DATA_DIR_ENV, str(data_dir))
    with pytest.raises(D.DatasetError, match=r"t10k-images-idx3-ubyte\.gz.*truncated.*prepare-data"):
        D.load_dataset("fashion_mnist", "test")


@needs_debian_fmnist
def test_wrong_magic_in_real_file_raises(monkeypatch, tmp_path):
    data_dir = tmp_path / "d" / "fashion-mnist"
    data_dir.mkdir(parents=True)
    # the real label file under the image file's name: magic 2049 where 2051 is expected
    fx.link_or_copy(DEBIAN_FMNIST / "t10k-labels-idx1-ubyte.gz", data_dir / "t10k-images-idx3-ubyte.gz")
    fx.link_or_copy(DEBIAN_FMNIST / "t10k-labels-idx1-ubyte.gz", data_dir / "t10k-labels-idx1-ubyte.gz")
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path / "d"))
    with pytest.raises(D.DatasetError, match=r"t10k-images-idx3-ubyte\.gz: wrong IDX magic number 2049, expected 2051"):
        D.load_dataset("fashion_mnist", "test")


# ----------------------------------------------------------------------------- Fashion-MNIST (written here)

def tiny_fmnist(folder: Path, n: int = 4, labels=None) -> tuple[np.ndarray, np.ndarray]:
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    images[:, 0, 0] = [0, 255, 51, 128][:n] if n <= 4 else np.arange(n) % 256
    images[:, 27, 27] = 7
    labels = np.arange(n, dtype=np.uint8) % 10 if labels is None else np.asarray(labels, dtype=np.uint8)
    for split in D.SPLITS:
        fx.write_fmnist_split(folder, split, images, labels)
    return images, labels


def test_fashion_mnist_pixels_exact_on_tiny_files(tmp_path):
    images, labels = tiny_fmnist(tmp_path / "fm")
    ds = D.load_dataset("fashion_mnist", "test", data_dir=tmp_path / "fm", verify_sizes=False)
    assert ds.x.shape == (4, 1, 28, 28) and ds.y.tolist() == [0, 1, 2, 3]
    # hand-computed: (v / 255 - 0.2860) / 0.3530 for v = 0, 255, 51, 128
    expected = [(0 - 0.2860) / 0.3530, (1 - 0.2860) / 0.3530, (0.2 - 0.2860) / 0.3530,
                (128 / 255 - 0.2860) / 0.3530]
    assert ds.x[:, 0, 0, 0].tolist() == pytest.approx(expected, abs=1e-6)
    assert ds.x[:, 0, 27, 27].tolist() == pytest.approx([(7 / 255 - 0.2860) / 0.3530] * 4, abs=1e-6)
    assert torch.allclose(unnormalise(ds.x, ds.info), torch.from_numpy(images[:, None] / 255.0), atol=1e-6)


def test_fashion_mnist_checks(tmp_path):
    folder = tmp_path / "fm"
    tiny_fmnist(folder)
    with pytest.raises(D.DatasetError, match=r"4 images, the official test split has 10000"):
        D.load_dataset("fashion_mnist", "test", data_dir=folder)   # verify_sizes defaults to True
    tiny_fmnist(folder, labels=[0, 1, 2, 10])
    with pytest.raises(D.DatasetError, match=r"t10k-labels-idx1-ubyte\.gz: labels must be in 0\.\.9, found 10"):
        D.read_fashion_mnist(folder, "test", verify_sizes=False)
    fx.write_idx_gz(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(3, np.uint8))
    with pytest.raises(D.DatasetError, match="holds 4 images but t10k-labels-idx1-ubyte.gz holds 3 labels"):
        D.read_fashion_mnist(folder, "test", verify_sizes=False)
    fx.write_idx_gz(folder / "t10k-images-idx3-ubyte.gz", np.zeros((4, 32, 32), np.uint8))
    with pytest.raises(D.DatasetError, match="expected 28x28 images"):
        D.read_fashion_mnist(folder, "test", verify_sizes=False)


def test_idx_corruption_modes(tmp_path):
    p = tmp_path / "x.gz"
    arr = np.arange(2 * 28 * 28, dtype=np.uint64).astype(np.uint8).reshape(2, 28, 28)
    fx.write_idx_gz(p, arr)
    assert np.array_equal(D.read_idx(p, D.IDX_IMAGES_MAGIC), arr)
    full = fx.idx_bytes(arr)
    fx.write_idx_gz(p, arr, payload=full[:-10])          # valid gzip, short data
    with pytest.raises(D.DatasetError, match=r"x\.gz: short read: header \(2, 28, 28\) needs 1568 data bytes, found 1558"):
        D.read_idx(p, D.IDX_IMAGES_MAGIC)
    fx.write_idx_gz(p, arr, payload=full + b"\0")
    with pytest.raises(D.DatasetError, match="trailing bytes"):
        D.read_idx(p, D.IDX_IMAGES_MAGIC)
    fx.write_idx_gz(p, arr, payload=full[:10])          # header cut inside the dimensions
    with pytest.raises(D.DatasetError, match="IDX header is truncated"):
        D.read_idx(p, D.IDX_IMAGES_MAGIC)
    fx.write_idx_gz(p, arr, magic=0x0803 + 0x100)       # wrong type byte
    with pytest.raises(D.DatasetError, match=r"wrong IDX magic number 2307, expected 2051"):
        D.read_idx(p, D.IDX_IMAGES_MAGIC)
    p.write_bytes(b"definitely not gzip")
    with pytest.raises(D.DatasetError, match=r"x\.gz is not a valid gzip file"):
        D.read_idx(p, D.IDX_IMAGES_MAGIC)
    good = gzip.compress(full)
    p.write_bytes(good[:-8] + b"\0" * 8)                # CRC / size trailer corrupted
    with pytest.raises(D.DatasetError, match="not a valid gzip file"):
        D.read_idx(p, D.IDX_IMAGES_MAGIC)
    with pytest.raises(D.DatasetError, match="cannot read"):
        D.read_idx(tmp_path / "missing.gz", D.IDX_IMAGES_MAGIC)


def test_fashion_mnist_lookup_order_and_missing(monkeypatch, tmp_path):
    env = tmp_path / "env"
    with pytest.raises(D.DatasetError, match=r"(?s)not found.*apt-get install -y dataset-fashion-mnist.*prepare-data"):
        D.load_dataset("fashion_mnist", "train")
    # ./data/FashionMNIST/raw (torchvision's layout) is found ...
    tiny_fmnist(Path.cwd() / "data" / "FashionMNIST" / "raw")
    assert D.find_fashion_mnist() == Path.cwd().resolve() / "data" / "FashionMNIST" / "raw"
    # ... the system folder comes last, ./data/fashion-mnist before ./data/FashionMNIST/raw ...
    monkeypatch.setattr(D.fashion_mnist, "SYSTEM_FASHION_MNIST_DIR", env / "system")
    tiny_fmnist(env / "system")
    tiny_fmnist(Path.cwd() / "data" / "fashion-mnist")
    assert D.find_fashion_mnist() == Path.cwd().resolve() / "data" / "fashion-mnist"
    # ... $DSDA_DATA_DIR comes first, its fashion-mnist/ subfolder before the folder itself
    monkeypatch.setenv(D.DATA_DIR_ENV, str(env))
    tiny_fmnist(env)
    assert D.find_fashion_mnist() == env
    tiny_fmnist(env / "fashion-mnist")
    assert D.find_fashion_mnist() == env / "fashion-mnist"
    # an explicit data_dir is the only place searched
    assert D.find_fashion_mnist(data_dir=tmp_path / "nowhere") is None
    assert D.find_fashion_mnist() != D.fashion_mnist.SYSTEM_FASHION_MNIST_DIR


def test_fashion_mnist_incomplete_folder_is_an_error_not_a_fallback(tmp_path):
    folder = tmp_path / "fm"
    tiny_fmnist(folder)
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    assert len(D.load_dataset("fashion_mnist", "test", data_dir=folder, verify_sizes=False)) == 4
    with pytest.raises(D.DatasetError, match=r"train-labels-idx1-ubyte\.gz is missing"):
        D.load_dataset("fashion_mnist", "train", data_dir=folder, verify_sizes=False)


def test_cache_returns_same_object_and_notices_changed_files(tmp_path):
    folder = tmp_path / "fm"
    tiny_fmnist(folder)
    a = D.load_dataset("fashion_mnist", "test", data_dir=folder, verify_sizes=False)
    assert D.load_dataset("fashion_mnist", "test", data_dir=str(folder), verify_sizes=False) is a
    assert D.load_dataset("fashion_mnist", "train", data_dir=folder, verify_sizes=False) is not a
    D.clear_cache()
    b = D.load_dataset("fashion_mnist", "test", data_dir=folder, verify_sizes=False)
    assert b is not a and torch.equal(a.x, b.x)
    images = np.full((6, 28, 28), 9, np.uint8)    # replace the files: a new size, so a new fingerprint
    fx.write_fmnist_split(folder, "test", images, np.zeros(6, np.uint8))
    c = D.load_dataset("fashion_mnist", "test", data_dir=folder, verify_sizes=False)
    assert len(c) == 6


# ----------------------------------------------------------------------------- digits

def test_digits_split_disjoint_stratified_deterministic():
    from sklearn.datasets import load_digits
    target = load_digits().target
    split = D.digits_split_indices()
    tr, te = split["train"], split["test"]
    assert len(np.intersect1d(tr, te)) == 0
    assert np.array_equal(np.sort(np.concatenate([tr, te])), np.arange(1797))
    for c in range(10):
        n = int((target == c).sum())
        assert int((target[te] == c).sum()) == int(np.floor(0.2 * n + 0.5))   # round(0.2 n) per class
        assert int((target[tr] == c).sum()) == n - int(np.floor(0.2 * n + 0.5))
    # the global RNG plays no part
    torch.manual_seed(123)
    np.random.seed(7)
    again = D.digits_split_indices()
    assert np.array_equal(again["train"], tr) and np.array_equal(again["test"], te)
    train = D.load_dataset("digits", "train")
    test = D.load_dataset("digits", "test")
    assert len(train) == len(tr) == 1438 and len(test) == 359 and train.x.shape[1:] == (1, 8, 8)
    assert set(train.y.tolist()) == set(test.y.tolist()) == set(range(10))
    D.clear_cache()
    assert torch.equal(D.load_dataset("digits", "test").x, test.x)


def test_digits_pixels_and_normalisation_constants():
    from sklearn.datasets import load_digits
    d = load_digits()
    split = D.digits_split_indices()
    train = D.load_dataset("digits", "train")
    raw01 = d.images[split["train"]] / 16.0
    assert torch.allclose(unnormalise(train.x, train.info)[:, 0], torch.from_numpy(raw01), atol=1e-6)
    assert train.y.tolist() == d.target[split["train"]].tolist()
    # the documented constants are the train-split statistics (rounded to 4 decimals)
    assert raw01.mean() == pytest.approx(D.DIGITS_MEAN[0], abs=1e-4)
    assert raw01.std() == pytest.approx(D.DIGITS_STD[0], abs=1e-4)
    assert train.info.input_range == pytest.approx((-0.3044 / 0.3758, 0.6956 / 0.3758))


# ----------------------------------------------------------------------------- CIFAR

@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_extracted_folder_py2_pickles(monkeypatch, tmp_path, name):
    written = fx.write_cifar_folder(tmp_path / "d", name, per_class_train=1, per_class_test=2)
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path / "d"))
    k = 10 if name == "cifar10" else 100
    for split in D.SPLITS:
        ds = D.load_dataset(name, split, verify_sizes=False)
        data, labels = written[split]
        assert ds.x.shape == (len(labels), 3, 32, 32) and ds.x.dtype == torch.float32
        assert ds.y.tolist() == labels.tolist() and ds.y.dtype == torch.int64
        # channel-first rows: the first 1024 bytes are the red plane, row-major
        back = unnormalise(ds.x, ds.info)
        assert torch.allclose(back, torch.from_numpy(data.reshape(-1, 3, 32, 32) / 255.0), atol=1e-6)
        assert back[0, 0, 0, 1].item() == pytest.approx(data[0, 1] / 255, abs=1e-6)
        assert back[0, 1, 0, 0].item() == pytest.approx(data[0, 1024] / 255, abs=1e-6)
        assert back[0, 2, 31, 31].item() == pytest.approx(data[0, 3071] / 255, abs=1e-6)
        assert ds.info == D.dataset_info(name) and ds.info.num_classes == k
    # CIFAR-10 train comes from five batch files
    assert len(D.load_dataset(name, "train", verify_sizes=False)) == (5 if name == "cifar10" else 1) * k
    with pytest.raises(D.DatasetError, match=r"the train split has \d+ images, the official one 50000.*verify_sizes=False"):
        D.load_dataset(name, "train")


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_archive_is_extracted_and_loaded(tmp_path, name, capsys):
    written = fx.write_cifar_archive(tmp_path, name, per_class_train=1, per_class_test=1, seed=3)
    layout = D.CIFAR_LAYOUTS[name]
    assert not (tmp_path / layout.folder).exists()
    ds = D.load_dataset(name, "test", data_dir=tmp_path, verify_sizes=False)
    assert (tmp_path / layout.folder).is_dir() and "extracting" in capsys.readouterr().out
    assert ds.y.tolist() == written["test"][1].tolist()
    assert torch.allclose(unnormalise(ds.x, ds.info),
                          torch.from_numpy(written["test"][0].reshape(-1, 3, 32, 32) / 255.0), atol=1e-6)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".extract")]   # temp folder removed


def test_cifar_python3_pickles_with_bytes_keys(tmp_path):
    written = fx.write_cifar_folder(tmp_path, "cifar10", py2=False)
    ds = D.load_dataset("cifar10", "test", data_dir=tmp_path, verify_sizes=False)
    assert ds.y.tolist() == written["test"][1].tolist()


def test_cifar_unsafe_archive_is_refused(tmp_path):
    fx.write_evil_archive(tmp_path / "data" / "cifar-10-python.tar.gz", "cifar-10-batches-py")
    with pytest.raises(D.DatasetError, match=r"refusing to extract unsafe.*\.\./\.\./escaped\.txt"):
        D.load_dataset("cifar10", "test", data_dir=tmp_path / "data", verify_sizes=False)
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "data" / "cifar-10-batches-py").exists()
    raw = (tmp_path / "data" / "cifar-10-python.tar.gz").read_bytes()
    (tmp_path / "data" / "cifar-10-python.tar.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(D.DatasetError, match="cannot extract.*truncated"):
        D.load_dataset("cifar10", "test", data_dir=tmp_path / "data", verify_sizes=False)


def test_cifar_pickle_cannot_run_code(tmp_path):
    fx.write_cifar_folder(tmp_path, "cifar10")
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(D.DatasetError, match=r"test_batch is not a valid CIFAR pickle.*refusing to load global"):
        D.load_dataset("cifar10", "test", data_dir=tmp_path, verify_sizes=False)
    assert not marker.exists()


def test_cifar_consistency_checks(tmp_path):
    fx.write_cifar_folder(tmp_path, "cifar10")
    batch_path = tmp_path / "cifar-10-batches-py" / "test_batch"

    def rewrite(**changes):
        batch = pickle.loads(batch_path.read_bytes(), encoding="latin1")
        batch.update(changes)
        batch_path.write_bytes(fx.py2_pickle_bytes(fx._py2(batch)))

    rewrite(labels=[0] * 9 + [10])
    with pytest.raises(D.DatasetError, match=r"labels must be in 0\.\.9, found 0\.\.10"):
        D.read_cifar(tmp_path / "cifar-10-batches-py", "cifar10", "test", verify_sizes=False)
    rewrite(labels=[0] * 9)
    with pytest.raises(D.DatasetError, match="10 images but"):
        D.read_cifar(tmp_path / "cifar-10-batches-py", "cifar10", "test", verify_sizes=False)
    rewrite(data=np.zeros((9, 1024), np.uint8))
    with pytest.raises(D.DatasetError, match=r"must be uint8 of shape \(N, 3072\)"):
        D.read_cifar(tmp_path / "cifar-10-batches-py", "cifar10", "test", verify_sizes=False)
    (tmp_path / "cifar-10-batches-py" / "batches.meta").write_bytes(fx.py2_pickle_bytes({b"label_names": [b"a"]}))
    with pytest.raises(D.DatasetError, match="batches.meta: 1 class names, cifar10 has 10"):
        D.read_cifar(tmp_path / "cifar-10-batches-py", "cifar10", "test", verify_sizes=False)
    (tmp_path / "cifar-10-batches-py" / "batches.meta").unlink()
    with pytest.raises(D.DatasetError, match=r"batches\.meta is missing.*cifar-10-python\.tar\.gz"):
        D.read_cifar(tmp_path / "cifar-10-batches-py", "cifar10", "test", verify_sizes=False)


def test_cifar_never_downloads_implicitly(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(D.cifar, "_download_cifar", lambda name, root: calls.append((name, root)))
    with pytest.raises(D.DatasetError, match=r"(?s)cifar10 was not found.*cifar-10-python\.tar\.gz.*download=True"):
        D.load_dataset("cifar10", "train")
    assert calls == []


def test_cifar_download_when_asked(monkeypatch, tmp_path):
    def offline(name, root):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(D.cifar, "_download_cifar", offline)
    with pytest.raises(D.DatasetError, match=r"(?s)downloading cifar100 failed.*offline.*cifar-100-python\.tar\.gz"):
        D.load_dataset("cifar100", "test", download=True, verify_sizes=False)

    def fake_download(name, root):   # what torchvision leaves behind: archive + extracted folder
        fx.write_cifar_folder(root, name, per_class_train=1, per_class_test=1)

    monkeypatch.setattr(D.cifar, "_download_cifar", fake_download)
    ds = D.load_dataset("cifar100", "test", download=True, verify_sizes=False)
    assert len(ds) == 100 and (Path.cwd() / "data" / "cifar-100-python").is_dir()


# ----------------------------------------------------------------------------- Pins

PINS_COUNTS = {"Alice Adams": 10, "Bob Brown": 7, "Carol Chen": 5}


def test_pins_split_deterministic_disjoint_80_20(tmp_path):
    root = fx.write_pins_tree(tmp_path / "pins", PINS_COUNTS)
    split = D.pins_file_split(root, verify_sizes=False)
    assert split == D.pins_file_split(root, verify_sizes=False)
    train, test = set(split["train"]), set(split["test"])
    assert not train & test
    for label, (name, n) in enumerate(sorted(PINS_COUNTS.items())):
        files = {p for p, lab in split["train"] + split["test"] if lab == label}
        assert files == {root / f"pins_{name}" / f"{name}{i:03d}.jpg" for i in range(n)}   # README.txt skipped
        n_test = sum(lab == label for _, lab in split["test"])
        assert n_test == {10: 2, 7: 1, 5: 1}[n]   # round(0.2 n), at least one
    # an identity's split depends on its own folder only: removing another identity leaves it unchanged
    import shutil
    shutil.rmtree(root / "pins_Carol Chen")
    smaller = D.pins_file_split(root, verify_sizes=False)
    assert [f for f, lab in smaller["test"] if lab < 2] == [f for f, lab in split["test"] if lab < 2]


def test_pins_loader_kaggle_layout(monkeypatch, tmp_path):
    nested = tmp_path / "d" / "pins-face-recognition" / "105_classes_pins_dataset"
    fx.write_pins_tree(nested, PINS_COUNTS)
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path / "d"))
    assert D.find_pins() == nested
    info = D.dataset_info("pins", verify_sizes=False, image_size=8)
    assert info.class_names == ("Alice Adams", "Bob Brown", "Carol Chen") and info.image_shape == (3, 8, 8)
    with pytest.raises(D.DatasetError, match="holds 3 identity folders, PinsFaceRecognition has 105"):
        D.load_dataset("pins", "train")
    split = D.pins_file_split(nested, verify_sizes=False)
    for s in D.SPLITS:
        ds = D.load_dataset("pins", s, verify_sizes=False, image_size=8)
        assert ds.x.shape == (len(split[s]), 3, 8, 8) and ds.info == info
        assert ds.y.tolist() == [lab for _, lab in split[s]]
        # every image is a solid colour encoding (identity, file index): decode and compare
        rgb = unnormalise(ds.x, ds.info).mean(dim=(2, 3)) * 255
        for row, (path, label) in zip(rgb, split[s]):
            expected = fx.pins_colour(label, int(path.stem[-3:]))
            assert row.tolist() == pytest.approx(expected, abs=4), path
    assert len(D.load_dataset("pins", "train", verify_sizes=False, image_size=8)) == 8 + 6 + 4


def test_pins_errors(tmp_path):
    with pytest.raises(D.DatasetError, match=r"(?s)PinsFaceRecognition was not found.*kaggle"):
        D.load_dataset("pins", "train", data_dir=tmp_path)
    root = fx.write_pins_tree(tmp_path / "pins", {"Solo": 1, "Duo": 2})
    with pytest.raises(D.DatasetError, match="pins_Solo: class 'pins_Solo' has 1 sample"):
        D.load_dataset("pins", "train", data_dir=tmp_path, verify_sizes=False)
    (root / "pins_Solo" / "Solo000.jpg").unlink()
    (root / "pins_Solo" / "a.jpg").write_bytes(b"not a jpeg")
    (root / "pins_Solo" / "b.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(D.DatasetError, match=r"cannot read image .*pins_Solo/(a|b)\.jpg"):
        D.load_dataset("pins", "train", data_dir=tmp_path, verify_sizes=False)


# ----------------------------------------------------------------------------- class-level splits

def test_validate_forget_classes():
    assert D.validate_forget_classes(3, 10) == (3,)
    assert D.validate_forget_classes([7, 2, 5], 10) == (2, 5, 7)
    assert D.validate_forget_classes((np.int64(1), torch.tensor(0)), 10) == (0, 1)
    assert D.validate_forget_classes(torch.tensor([4, 9]), 10) == (4, 9)
    assert D.validate_forget_classes(range(9), 10) == tuple(range(9))
    bad = [([], "empty"), ("3", "an int or an iterable"), (None, "an int or an iterable"), (2.0, "an int or an iterable"),
           ([1.5], "must contain integers"), ([True], "must contain integers"), ([1, "2"], "must contain integers"),
           ([10], r"\[10\] out of range; allowed range 0\.\.9"), (-1, r"out of range; allowed range 0\.\.9"),
           ([1, 2, 1], r"duplicates \[1\]"), (list(range(10)), "at least one class must be retained")]
    for value, message in bad:
        with pytest.raises(ValueError, match="forget_classes") as e:
            D.validate_forget_classes(value, 10)
        assert e.match(message), (value, str(e.value))
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        D.validate_forget_classes(0, 1)


def test_class_split_hand_computed():
    y = torch.tensor([0, 1, 2, 1, 0, 3])
    f, r = D.class_split(y, [3, 1], 4)
    assert f.tolist() == [1, 3, 5] and r.tolist() == [0, 2, 4]
    assert f.dtype == r.dtype == torch.int64
    f, r = D.class_split(np.array([2, 2, 0]), 2, 3)
    assert f.tolist() == [0, 1] and r.tolist() == [2]
    with pytest.raises(ValueError, match=r"y holds labels 0\.\.3, outside 0\.\.2"):
        D.class_split(y, 1, 3)
    with pytest.raises(ValueError, match="y must be a 1-D integer tensor"):
        D.class_split(torch.zeros(3), 1, 3)
    with pytest.raises(ValueError, match="forget_classes"):
        D.class_split(y, [4], 4)


def test_split_dataset_on_digits():
    ds = D.load_dataset("digits", "test")
    forget, retain = D.split_dataset(ds, (3, 8))
    assert len(forget) + len(retain) == len(ds)
    assert set(forget.y.tolist()) == {3, 8} and not {3, 8} & set(retain.y.tolist())
    assert len(forget) == int(((ds.y == 3) | (ds.y == 8)).sum())
    assert forget.info is ds.info and retain.x.shape[1:] == ds.x.shape[1:]


# ----------------------------------------------------------------------------- data-access guard

def test_guard_blocks_every_loader(tmp_path):
    fx.write_cifar_folder(tmp_path, "cifar10")
    fx.write_pins_tree(tmp_path / "pins", {"A": 2, "B": 2})
    tiny_fmnist(tmp_path / "fashion-mnist")
    cached = D.load_dataset("digits", "train")   # already cached data is refused too
    assert cached is not None and not D.data_access_forbidden()
    attempts = {
        "load digits": lambda: D.load_dataset("digits", "train"),
        "load fashion": lambda: D.load_dataset("fashion_mnist", "test", data_dir=tmp_path, verify_sizes=False),
        "load cifar": lambda: D.load_dataset("cifar10", "test", data_dir=tmp_path, verify_sizes=False),
        "load pins": lambda: D.load_dataset("pins", "test", data_dir=tmp_path, verify_sizes=False),
        "read_idx": lambda: D.read_idx(tmp_path / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz", D.IDX_LABELS_MAGIC),
        "read_fashion_mnist": lambda: D.read_fashion_mnist(tmp_path / "fashion-mnist", "test", False),
        "read_digits": lambda: D.read_digits("test"),
        "read_cifar": lambda: D.read_cifar(tmp_path / "cifar-10-batches-py", "cifar10", "test", False),
        "read_pins": lambda: D.read_pins(tmp_path / "pins", "test", 8, False),
        "pins info": lambda: D.dataset_info("pins", data_dir=tmp_path, verify_sizes=False),
        "prepare": lambda: D.prepare("digits"),
    }
    with D.forbid_data_access("source-free method under test"):
        assert D.data_access_forbidden()
        for what, fn in attempts.items():
            with pytest.raises(D.DataAccessError, match="source-free method under test"):
                fn()
                pytest.fail(what)
        assert D.dataset_info("cifar10").num_classes == 10   # constants are not data
    assert not D.data_access_forbidden()
    for fn in attempts.values():   # everything works again afterwards
        fn()
    assert issubclass(D.DataAccessError, PermissionError) and issubclass(D.DatasetError, RuntimeError)


def test_guard_is_reentrant_and_process_wide():
    with D.forbid_data_access("outer"):
        with D.forbid_data_access("inner"):
            with pytest.raises(D.DataAccessError, match="outer; inner"):
                D.load_dataset("digits", "test")
        with pytest.raises(D.DataAccessError, match="outer") as e:   # leaving the inner guard keeps the outer
            D.load_dataset("digits", "test")
        assert "inner" not in str(e.value)
        seen = []

        def worker():
            try:
                D.load_dataset("digits", "test")
            except D.DataAccessError as err:
                seen.append(err)

        t = threading.Thread(target=worker)
        t.start()
        t.join()
        assert len(seen) == 1   # another thread is blocked as well
    with pytest.raises(RuntimeError):   # an exception inside the guard still releases it
        with D.forbid_data_access("boom"):
            raise RuntimeError
    assert not D.data_access_forbidden()
    assert len(D.load_dataset("digits", "test")) == 359
    with pytest.raises(ValueError, match="reason must be a non-empty string"):
        with D.forbid_data_access(""):
            pass


# ----------------------------------------------------------------------------- prepare

@pytest.fixture(scope="module")
def full_size_fmnist_files(tmp_path_factory):
    return fx.write_full_size_fmnist(tmp_path_factory.mktemp("full_fmnist"))


@pytest.fixture
def full_size_fmnist(monkeypatch, full_size_fmnist_files):
    """The stand-in, with its own checksums declared as the published ones (the check still runs)."""
    monkeypatch.setattr(D.fashion_mnist, "FASHION_MNIST_CHECKSUMS", fx.idx_checksums(full_size_fmnist_files))
    return full_size_fmnist_files


def _link_fmnist(src: Path, dst: Path) -> None:
    for split in D.SPLITS:
        for f in D.FASHION_MNIST_FILES[split]:
            fx.link_or_copy(src / f, dst / f)


@pytest.fixture
def recorder(monkeypatch):
    """Replace every side effect of `prepare` by a recorder; tests switch parts back on."""
    log = {"commands": [], "downloads": []}
    monkeypatch.setattr(D.preparation, "_run_command", lambda cmd: log["commands"].append(cmd) or 0)
    monkeypatch.setattr(D.preparation, "_download_fashion_mnist", lambda root: log["downloads"].append(root))
    monkeypatch.setattr(D.cifar, "_download_cifar", lambda name, root: log["downloads"].append((name, root)))
    monkeypatch.setattr(D.preparation, "_is_root", lambda: True)
    monkeypatch.setattr(D.preparation, "_which", lambda prog: f"/usr/bin/{prog}")
    monkeypatch.setattr(D.preparation, "_is_online", lambda host, port=443, timeout=3.0: False)
    return log


def test_prepare_found_does_nothing(monkeypatch, tmp_path, full_size_fmnist, recorder):
    monkeypatch.setattr(D.fashion_mnist, "SYSTEM_FASHION_MNIST_DIR", full_size_fmnist)
    assert D.prepare() == full_size_fmnist
    assert recorder == {"commands": [], "downloads": []}


def test_prepare_installs_with_apt_as_root(monkeypatch, tmp_path, full_size_fmnist, recorder):
    system = tmp_path / "usr-share-datasets" / "fashion-mnist"
    monkeypatch.setattr(D.fashion_mnist, "SYSTEM_FASHION_MNIST_DIR", system)

    def fake_apt(cmd):
        recorder["commands"].append(cmd)
        if cmd[:2] == ["apt-get", "install"]:
            _link_fmnist(full_size_fmnist, system)
        return 0

    monkeypatch.setattr(D.preparation, "_run_command", fake_apt)
    assert D.prepare("fashion_mnist") == system
    assert recorder["commands"] == [["apt-get", "update"], ["apt-get", "install", "-y", "dataset-fashion-mnist"]]
    assert recorder["downloads"] == []


def test_prepare_downloads_when_not_root(monkeypatch, tmp_path, full_size_fmnist, recorder):
    monkeypatch.setattr(D.preparation, "_is_root", lambda: False)
    monkeypatch.setattr(D.preparation, "_is_online", lambda host, port=443, timeout=3.0: True)

    def fake_download(root):
        recorder["downloads"].append(root)
        _link_fmnist(full_size_fmnist, root / "FashionMNIST" / "raw")   # torchvision's layout

    monkeypatch.setattr(D.preparation, "_download_fashion_mnist", fake_download)
    assert D.prepare() == Path.cwd().resolve() / "data" / "FashionMNIST" / "raw"
    assert recorder["commands"] == [] and recorder["downloads"] == [Path.cwd().resolve() / "data"]


def test_prepare_apt_failure_then_offline_explains(monkeypatch, recorder):
    monkeypatch.setattr(D.preparation, "_run_command", lambda cmd: recorder["commands"].append(cmd) or 100)
    with pytest.raises(D.DatasetError) as e:
        D.prepare("fashion_mnist")
    msg = str(e.value)
    assert "sudo apt-get install -y dataset-fashion-mnist" in msg
    assert "torchvision.datasets.FashionMNIST(root='data', download=True)" in msg
    assert "apt-get install dataset-fashion-mnist failed" in msg and "offline" in msg
    assert recorder["commands"] == [["apt-get", "update"]]   # stops at the first failing command
    assert recorder["downloads"] == []


def test_prepare_respects_allow_flags(monkeypatch, recorder):
    monkeypatch.setattr(D.preparation, "_is_online", lambda host, port=443, timeout=3.0: True)
    with pytest.raises(D.DatasetError, match="apt-get install -y dataset-fashion-mnist"):
        D.prepare("fashion_mnist", allow_apt=False, allow_download=False)
    assert recorder == {"commands": [], "downloads": []}
    monkeypatch.setattr(D.preparation, "_is_root", lambda: False)
    with pytest.raises(D.DatasetError, match=r"apt skipped \(needs root"):
        D.prepare("fashion_mnist", allow_download=False)
    assert recorder == {"commands": [], "downloads": []}
    with pytest.raises(TypeError, match="allow_apt must be True or False"):
        D.prepare("fashion_mnist", allow_apt="yes")


def test_prepare_other_datasets(monkeypatch, tmp_path, recorder):
    assert (D.prepare("digits") / "digits.csv.gz").is_file()
    with pytest.raises(D.DatasetError, match=r"(?s)cifar10 was not found.*unreachable"):
        D.prepare("cifar10")
    assert recorder["downloads"] == []
    monkeypatch.setattr(D.preparation, "_is_online", lambda host, port=443, timeout=3.0: True)
    monkeypatch.setattr(D.cifar, "_download_cifar", lambda name, root: fx.write_cifar_folder(root, name))
    assert D.prepare("cifar10") == Path.cwd().resolve() / "data" / "cifar-10-batches-py"
    with pytest.raises(D.DatasetError, match="kaggle datasets download"):
        D.prepare("pins")
    fx.write_pins_tree(Path.cwd() / "data" / "pins", {"A": 2})
    assert D.prepare("pins") == Path.cwd().resolve() / "data" / "pins"
    with pytest.raises(ValueError, match="name='svhn'"):
        D.prepare("svhn")

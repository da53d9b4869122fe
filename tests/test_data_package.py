"""dsda.data is a package of small modules with the old module's public surface (issue 12)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dsda
from dsda import data as D

PACKAGE = Path(__file__).resolve().parent.parent / "dsda" / "data"

# Every public name of the single-module dsda/data.py it replaced: `from dsda.data import X` keeps working;
# issue 17 added the validation variants and the split guard.
PUBLIC = """
    CIFAR100_CLASSES CIFAR10_CLASSES CIFAR_LAYOUTS CifarLayout DATASET_NAMES DATA_DIR_ENV DIGITS_CLASSES
    DIGITS_MEAN DIGITS_SPLIT_SEED DIGITS_STD DIGITS_TEST_FRACTION DataAccessError DatasetError DatasetInfo
    FASHION_MNIST_CHECKSUMS FASHION_MNIST_CLASSES FASHION_MNIST_FILES FASHION_MNIST_MEAN FASHION_MNIST_SIZES
    FASHION_MNIST_STD IDX_IMAGES_MAGIC IDX_LABELS_MAGIC PINS_DIR_NAMES PINS_EXTENSIONS PINS_IMAGE_SIZE
    PINS_KAGGLE_SUBDIR PINS_MEAN PINS_NUM_IDENTITIES PINS_PREFIX PINS_SPLIT_SEED PINS_STD PINS_TEST_FRACTION
    SPLITS SYSTEM_FASHION_MNIST_DIR TensorDataset class_split clear_cache data_access_forbidden data_roots
    dataset_info digits_split_indices find_cifar find_fashion_mnist find_pins forbid_data_access load_dataset
    pins_file_split pins_identities prepare read_cifar read_digits read_fashion_mnist read_idx read_pins
    split_dataset validate_forget_classes
""".split() + "VALIDATION_SETS ValidationSet base_dataset forbid_split validation_indices".split()   # issue 17

# Side effects that tests replace: they live (and are patched) where `prepare` and the CIFAR loader read them.
HOOKS = {"preparation": ["_run_command", "_is_root", "_which", "_is_online", "_download_fashion_mnist"],
         "cifar": ["_download_cifar"]}


def _code_lines(fn: ast.FunctionDef, lines: list[str]) -> int:
    """Non-blank, non-comment lines of a function, its docstring left out."""
    first = fn.body[0]
    doc = (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
           and isinstance(first.value.value, str))
    skip = set(range(first.lineno, first.end_lineno + 1)) if doc else set()
    return sum(1 for i in range(fn.lineno, fn.end_lineno + 1)
               if i not in skip and lines[i - 1].strip() and not lines[i - 1].strip().startswith("#"))


def test_data_is_a_package_of_small_files():
    files = sorted(PACKAGE.glob("*.py"))
    assert PACKAGE.is_dir() and len(files) > 1
    for path in files:
        lines = path.read_text().splitlines()
        assert len(lines) <= 400, f"{path.name} has {len(lines)} lines"
        for fn in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert _code_lines(fn, lines) <= 40, f"{path.name}: {fn.name}() is too long"


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_is_still_importable(name):
    assert getattr(D, name) is not None


def test_star_import_gives_the_public_names():
    assert sorted(D.__all__) == sorted(PUBLIC)


def test_dsda_lazy_names_come_from_the_package():
    for name in ("load_dataset", "class_split", "split_dataset", "dataset_info", "forbid_data_access"):
        assert getattr(dsda, name) is getattr(D, name)


def test_patch_hooks_live_in_the_module_that_calls_them():
    # not re-exported: a stale `monkeypatch.setattr(dsda.data, "_is_online", ...)` fails loudly
    # instead of replacing a copy that nothing calls
    for module, names in HOOKS.items():
        for name in names:
            assert callable(getattr(getattr(D, module), name))
            assert not hasattr(D, name)

"""The validation split (dsda/data/validation.py) and the profiles that train without it (cpu-val, smoke-val)."""
import pytest
import torch

from dsda.data import (DataAccessError, VALIDATION_SETS, dataset_info, forbid_data_access, forbid_split,
                       load_dataset, validation_indices)
from dsda.profiles import get_profile
from dsda.recipes import profile_family
from dsda.train import checkpoint_name, model_config


def test_digits_val_is_a_stratified_seeded_holdout_of_the_train_split():
    base = load_dataset("digits", "train")
    val, train, test = (load_dataset("digits_val", s) for s in ("val", "train", "test"))
    assert torch.bincount(val.y).tolist() == [30] * 10
    assert len(val) + len(train) == len(base)
    idx = validation_indices(base.y, "digits", 30, VALIDATION_SETS["digits_val"].seed)   # recomputed
    assert torch.equal(val.x, base.x[idx]) and torch.equal(val.y, base.y[idx])
    keep = torch.ones(len(base), dtype=torch.bool)
    keep[idx] = False
    assert torch.equal(train.x, base.x[keep]) and torch.equal(train.y, base.y[keep])   # disjoint, and the rest
    base_test = load_dataset("digits", "test")
    assert test.x is base_test.x and test.y is base_test.y
    assert val.info.name == train.info.name == "digits_val" == dataset_info("digits_val").name
    assert dataset_info("digits_val").num_classes == base.info.num_classes


def test_the_draw_is_deterministic_and_per_class():
    y = torch.tensor([0] * 50 + [1] * 50)
    a = validation_indices(y, "x", 10, 7)
    assert torch.equal(a, validation_indices(y, "x", 10, 7)) and not torch.equal(a, validation_indices(y, "x", 10, 8))
    # one class's draw depends only on its own members: moving class 1 does not change class 0's picks
    y2 = torch.tensor([0] * 50 + [1] * 80)
    assert torch.equal(validation_indices(y2, "x", 10, 7)[:10], a[:10])
    with pytest.raises(ValueError, match="would leave none"):
        validation_indices(torch.tensor([0] * 5), "x", 5, 0)


def test_fashion_mnist_val_sizes():
    val, train = load_dataset("fashion_mnist_val", "val"), load_dataset("fashion_mnist_val", "train")
    assert torch.bincount(val.y).tolist() == [600] * 10 and torch.bincount(train.y).tolist() == [5400] * 10


def test_val_exists_only_for_the_variants_and_the_guards_hold():
    with pytest.raises(ValueError, match="exists only for the validation variants"):
        load_dataset("digits", "val")
    with pytest.raises(ValueError, match="split"):
        load_dataset("digits_val", "validation")
    with forbid_split("test", "tuning"):
        load_dataset("digits_val", "val")                               # allowed
        for name in ("digits", "digits_val"):
            with pytest.raises(DataAccessError, match="'test' split is forbidden here \\(tuning\\)"):
                load_dataset(name, "test")
    load_dataset("digits_val", "test")                                  # the guard is gone again
    with forbid_data_access("source-free"), pytest.raises(DataAccessError):
        load_dataset("digits_val", "val")
    with pytest.raises(ValueError, match="reason"):
        with forbid_split("test", " "):
            pass


def test_val_profiles_are_distinct_and_share_their_family():
    for new, old in (("cpu-val", "cpu"), ("smoke-val", "smoke")):
        a, b = get_profile(new), get_profile(old)
        assert (a.model, a.width, a.recipe) == (b.model, b.width, b.recipe) and a.dataset != b.dataset
        assert checkpoint_name(model_config(a, 0)) != checkpoint_name(model_config(b, 0))
        assert profile_family(new) == old
    # today's shipped checkpoint keeps its name: the cpu profile's cache key did not change
    assert checkpoint_name(model_config(get_profile("cpu"), 0)) == "original-1283f23ec6b05577.pt"
    with pytest.raises(ValueError, match="family"):
        get_profile("cpu").replace(family="cpu")

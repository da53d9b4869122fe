"""dsda.checks, the one module of argument checks: seeds are validated (never coerced) by every public entry
point, forget classes and notebook parameters are checked in one place, and a model or an optimisation that
produces NaN/inf is reported where the cause is (the model, DAMO's learning rate), not as a symptom further on.
Fast: a few seconds in all."""
import copy
import functools
import re
import sys

import numpy as np
import pytest
import torch

from dsda import checks as C
from dsda import damo as DM
from dsda import data as D
from dsda import metrics as M
from dsda import sampler as S
from dsda import synthesis as SY
from dsda import train as T
from dsda.baselines import adv_imp, boundary_shrink, gkt, ispf, lau, scar, ssd, synth_embed, unsir
from dsda.baselines import runner as R
from dsda.models import build_model
from dsda.profiles import get_profile

U = sys.modules["dsda.unlearn"]  # the module; `dsda.unlearn` is the function

BAD_SEEDS = [0.9, "0", False, -1]  # each used to load the seed-0 model, train a new one or fail inside torch


def cnn(k=10):
    """An untrained digits-shaped CNN (the smoke profile's inputs), in eval mode."""
    torch.manual_seed(0)  # weights only
    return build_model("cnn", k, (1, 8, 8), width=4, input_range=(-1.0, 2.0)).eval()


@functools.lru_cache(maxsize=None)
def digits(classes=tuple(range(10)), n=40):
    train = D.load_dataset("digits", "train")
    keep = torch.isin(train.y, torch.tensor(classes)).nonzero().flatten()[:n]
    return train.subset(keep)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DSDA_CACHE_DIR", str(tmp_path / "ckpt"))
    monkeypatch.setenv("DSDA_NO_PRETRAINED", "1")
    return tmp_path / "ckpt"


# ----------------------------------------------------------------------------- seeds

def test_validate_seed_accepts_only_non_negative_integers():
    assert C.validate_seed(0) == 0 and C.validate_seed(7) == 7
    assert C.validate_seed(np.int64(3)) == 3 and type(C.validate_seed(np.int64(3))) is int
    for bad in BAD_SEEDS + [True, None, 1.0, np.float64(2.0), np.bool_(True), [0]]:
        with pytest.raises(ValueError, match=r"^model_seed must be a non-negative integer, got "):
            C.validate_seed(bad, "model_seed")


def _probs(n=12, k=3):
    p = torch.softmax(torch.randn(n, k, generator=torch.Generator().manual_seed(0)), 1)
    return p, torch.arange(n) % k


def _damo(seed):
    x, y = torch.randn(12, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.arange(12) % 4
    return DM.damo(cnn(4), x[y != 1], y[y != 1], x[y == 1], y[y == 1],
                   DM.DamoConfig(max_steps=1, device="cpu"), seed=seed)


# every public entry point that takes a seed: (name of the seed parameter, call(seed))
SEEDED = {
    "original_model": ("seed", lambda s: T.original_model("smoke", seed=s, progress=False)),
    "retrain_model": ("seed", lambda s: T.retrain_model("smoke", [3], seed=s, progress=False)),
    "model_config": ("seed", lambda s: T.model_config(get_profile("smoke"), s)),
    "checkpoint_record": ("seed", lambda s: T.checkpoint_record("smoke", seed=s)),
    "train_model": ("seed", lambda s: T.train_model(cnn(), digits(), get_profile("smoke").recipe, seed=s,
                                                    device="cpu", progress=False)),
    "evaluate": ("seed", lambda s: M.evaluate(cnn(), "smoke", [3], device="cpu", seed=s)),
    "eval_train_subset": ("seed", lambda s: M.eval_train_subset(torch.arange(20) % 4, 2, seed=s)),
    "mia_loss_cv": ("seed", lambda s: M.mia_loss_cv(*_probs(), *_probs(), seed=s)),
    "mia_loss_cv_model": ("seed", lambda s: M.mia_loss_cv_model(cnn(), digits(), digits(), [3], seed=s,
                                                                device="cpu")),
    "synthesize": ("seed", lambda s: SY.synthesize(cnn(), [0], 2, nfe=2, seed=s, device="cpu")),
    "damo": ("seed", _damo),
    "unlearn": ("seed", lambda s: U.unlearn(cnn(4), [1], profile="smoke", seed=s, device="cpu", n_per_class=2,
                                            nfe=2, max_steps=1)),
    "run_method": ("seed", lambda s: R.run_method("original", "smoke", seed=s, evaluate=False, progress=False)),
    "run_method model_seed": ("model_seed", lambda s: R.run_method("original", "smoke", model_seed=s,
                                                                   evaluate=False, progress=False)),
    "ood_dataset": ("seed", lambda s: R.ood_dataset("smoke", 5, seed=s)),
    "balanced_subset": ("seed", lambda s: R.balanced_subset(digits(), 2, s)),
    "gkt.run": ("seed", lambda s: gkt.run(cnn(), [1], seed=s, device="cpu")),
    "ispf.run": ("seed", lambda s: ispf.run(cnn(), [1], seed=s, device="cpu")),
    "synth_embed.run": ("seed", lambda s: synth_embed.run(cnn(), [1], seed=s, device="cpu")),
    "adv_imp.run": ("seed", lambda s: adv_imp.run(cnn(), [1], seed=s, device="cpu", forget=digits((1,)))),
    "boundary_shrink.run": ("seed", lambda s: boundary_shrink.run(cnn(), [1], seed=s, device="cpu",
                                                                  forget=digits((1,)))),
    "lau.run": ("seed", lambda s: lau.run(cnn(), [1], seed=s, device="cpu", forget=digits((1,)))),
    "scar.run": ("seed", lambda s: scar.run(cnn(), [1], seed=s, device="cpu", forget=digits((1,)),
                                            ood=digits((0, 2)))),
    "ssd.run": ("seed", lambda s: ssd.run(cnn(), [1], seed=s, device="cpu", forget=digits((1,)),
                                          retain=digits((0, 2)))),
    "unsir.run": ("seed", lambda s: unsir.run(cnn(), [1], seed=s, device="cpu", retain=digits((0, 2)))),
}


@pytest.mark.parametrize("bad", BAD_SEEDS, ids=repr)
@pytest.mark.parametrize("entry", SEEDED)
def test_every_entry_point_rejects_a_bad_seed_naming_it_before_any_work(entry, bad, cache):
    name, call = SEEDED[entry]
    with pytest.raises(ValueError, match=rf"^{name} must be a non-negative integer, got {re.escape(repr(bad))}$"):
        call(bad)
    assert not cache.exists(), "nothing may be trained or written for a bad seed"


# ----------------------------------------------------------------------------- forget classes

def test_forget_class_validators_are_one_definition():
    assert D.validate_forget_classes is C.validate_forget_classes is U.validate_forget_classes
    assert U.validate_forget_classes([3, 1], 5) == (1, 3)
    with pytest.raises(ValueError, match=r"^forget_classes contains duplicates \[1\]$"):
        U.validate_forget_classes([1, 2, 1], 5)
    with pytest.raises(ValueError, match=r"^forget_classes must be an int or an iterable of ints, got '10'$"):
        U.validate_forget_classes("10", 10)                        # never list("10") == ["1", "0"]
    with pytest.raises(ValueError, match=r"^forget \[5\] out of range; allowed range 0\.\.4$"):
        C.validate_forget_classes([5], 5, name="forget")


# ----------------------------------------------------------------------------- notebook parameters

GOOD = dict(profile="smoke", dataset=None, forget_classes=[3, 5], multi_forget=(3, 5), seeds=[0, 1], tasks=[[3], 5],
            device="cuda:1", threads=2, n_eval=0, frac=1.0, lrs=[1e-4, 1e-3], methods=["dsda"], interactive=False,
            sampler="aegds")
FORMS = dict(profile="profile", dataset="name?", forget_classes="classes?", multi_forget="classes?",
             seeds="seeds?", tasks="tasks?", device="device", threads="positive_int?", n_eval="nonneg_int?",
             frac="fraction?", lrs="positive_numbers?", methods="names?", interactive="flag",
             sampler=("sgld", "heun", "aegds"))


def test_notebook_params_in_their_forms_pass():
    C.check_notebook_params(GOOD, **FORMS)
    C.check_notebook_params({**GOOD, "forget_classes": None, "seeds": None, "device": "auto"}, **FORMS)


@pytest.mark.parametrize("name,value,pattern", [
    ("forget_classes", "10", r"forget_classes='10' is not valid; expected a non-empty list of distinct class ids "
                             r".* or None \(the default\); .*-y 'forget_classes: \[3, 5\]'"),
    ("forget_classes", 10, r"forget_classes=10 is not valid; expected a non-empty list of distinct class ids"),
    ("forget_classes", [1, 1], "forget_classes=\\[1, 1\\]"), ("forget_classes", [-1], "forget_classes"),
    ("forget_classes", [True], "forget_classes"), ("forget_classes", [], "forget_classes"),
    ("multi_forget", [3.0], "multi_forget"),
    ("seeds", "notalist", r"seeds='notalist' is not valid; expected a non-empty list of non-negative integer seeds"),
    ("seeds", 0, "seeds=0"), ("seeds", [0.5], "seeds"), ("seeds", [-1], "seeds"),
    ("tasks", [[3, 3]], "tasks"), ("tasks", "3", "tasks"),
    ("profile", "gpu", r"profile='gpu' is not valid; expected one of 'smoke', 'cpu'"),
    ("profile", None, r"profile=None is not valid"),
    ("device", "tpu", r"device='tpu' is not valid; expected a device name"), ("device", 0, "device"),
    ("threads", 0, r"threads=0 is not valid; expected a positive integer or None"), ("threads", 2.0, "threads"),
    ("n_eval", -1, "n_eval=-1 .*a non-negative integer"), ("frac", 1.5, r"frac=1\.5 .*\(0, 1\]"),
    ("lrs", [0], "lrs"), ("lrs", 1e-3, "lrs"), ("methods", "dsda", "methods"),
    ("interactive", "False", "interactive"),
    ("sampler", "langevin", r"sampler='langevin' is not valid; expected one of 'sgld', 'heun', 'aegds'$"),
])
def test_notebook_param_in_the_wrong_form_is_named(name, value, pattern):
    with pytest.raises(ValueError, match=f"^notebook parameter {pattern}"):
        C.check_notebook_params({**GOOD, name: value}, **FORMS)


def test_notebook_check_rejects_its_own_misuse():
    with pytest.raises(ValueError, match="no parameter 'seed'"):
        C.check_notebook_params(GOOD, seed="seeds")
    with pytest.raises(ValueError, match="unknown parameter form 'class'.*classes"):
        C.check_notebook_params(GOOD, forget_classes="class")


# ----------------------------------------------------------------------------- finiteness: name the cause

def nan_model(where):
    m = cnn()
    tensors = dict(m.named_parameters()) | dict(m.named_buffers())
    with torch.no_grad():
        tensors[where].view(-1)[0] = float("nan")
    return m


def overflowing_model():
    """Finite weights whose logits are inf: the forward pass itself overflows."""
    m = cnn()
    with torch.no_grad():
        m.fc.weight.fill_(3e38)
        m.fc.bias.fill_(3e38)
    return m


@pytest.mark.parametrize("where", ["fc.weight", "stages.0.1.running_mean"])
def test_sampler_names_nan_weights_or_buffers_not_the_step_size(where):
    pattern = rf"^model's outputs are not finite: its weights or buffers hold NaN or inf \({re.escape(where)}\)"
    with pytest.raises(ValueError, match=pattern) as err:
        SY.synthesize(nan_model(where), [0, 1], 2, nfe=4, device="cpu")
    assert "alpha" not in str(err.value)
    with pytest.raises(ValueError, match=pattern):          # the same through DSDA
        U.unlearn(nan_model(where), [1], profile="smoke", device="cpu", n_per_class=2, nfe=2, max_steps=1)


def test_sampler_blames_the_model_when_its_outputs_overflow_at_the_start():
    pattern = r"at the initial samples x_0 \(score evaluation 1 of 4, before any step\).*outputs are not finite"
    with pytest.raises(S.NonFiniteError, match=pattern) as err:
        SY.synthesize(overflowing_model(), [0, 1], 2, nfe=4, device="cpu")
    assert "not the step size" in str(err.value) and "lower alpha" not in str(err.value)


def _damo_data(k=4):
    x, y = torch.randn(40, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.arange(40) % k
    return x[y != 1], y[y != 1], x[y == 1], y[y == 1]


@pytest.mark.parametrize("options", [{}, {"multitask": False}, {"disc": False}], ids=["paper", "wo-mt", "wo-disc"])
def test_diverging_damo_names_the_step_and_the_learning_rate(options):
    cfg = DM.DamoConfig(lr=1e6, max_steps=20, device="cpu", batch_retain=16, batch_forget=8, **options)
    with pytest.raises(S.NonFiniteError, match=r"^DAMO diverged at step 1 \(after 1 update with adam, lr=1e\+06\): "
                                               r"the losses or their gradients are not finite \(L_R nan, L_F nan"
                                               r".*lower lr \(e\.g\. lr=100000\)$"):
        DM.damo(cnn(4), *_damo_data(), cfg)


def test_damo_whose_last_update_diverges_does_not_return_a_nan_model():
    cfg = DM.DamoConfig(lr=1e6, max_steps=1, device="cpu", batch_retain=16, batch_forget=8)
    with pytest.raises(S.NonFiniteError, match=r"^DAMO diverged at step 1 .*lr=1e\+06\): the model's outputs are "
                                               r"not finite; lower lr"):
        DM.damo(cnn(4), *_damo_data(), cfg)


def test_damo_blames_the_model_not_the_learning_rate_before_any_update():
    with pytest.raises(ValueError, match=r"^model's outputs are not finite: .*\(fc\.weight\)"):
        DM.damo(nan_model("fc.weight"), *_damo_data(10), DM.DamoConfig(max_steps=2, device="cpu"))
    m = overflowing_model()
    with pytest.raises(S.NonFiniteError, match=r"^DAMO at step 0, before any update: .*the learning rate is not the "
                                               r"cause"):
        DM.damo(m, *_damo_data(10), DM.DamoConfig(max_steps=2, device="cpu"))
    x_r, y_r, x_f, y_f = _damo_data(10)
    with pytest.raises(ValueError, match=r"^x_f holds NaN or inf values"):
        DM.damo(cnn(), x_r, y_r, x_f * float("nan"), y_f, DM.DamoConfig(max_steps=2, device="cpu"))


def test_evaluate_says_the_models_outputs_are_not_finite():
    with pytest.raises(ValueError, match=r"^model's outputs are not finite: .*\(stages\.0\.1\.running_mean\)"):
        M.evaluate(nan_model("stages.0.1.running_mean"), "smoke", [3], device="cpu")
    with pytest.raises(ValueError, match=r"^the model's outputs are not finite \(NaN or inf\) on \d+ of \d+ images "
                                         r"although its weights and buffers are finite"):
        M.evaluate(overflowing_model(), "smoke", [3], device="cpu")
    with pytest.raises(ValueError, match=r"^model's outputs are not finite"):     # the model-level attacks too
        M.mia_loss_cv_model(nan_model("fc.bias"), digits(), digits(), [3], device="cpu")


def test_nonfinite_tensors_reads_only():
    m = nan_model("fc.bias")
    before = copy.deepcopy(m.state_dict())
    assert C.nonfinite_tensors(m) == ["fc.bias"] and C.nonfinite_tensors(cnn()) == []
    torch.testing.assert_close(m.state_dict(), before, rtol=0, atol=0, equal_nan=True)

"""The runner and the simple methods: what each method may touch, what it gets, what the record says.

- Source-freeness: a source-free method that loads data fails under the runner; every source-free
  `run` takes no data keyword; a probe receives exactly the declared keywords; the method modules
  of DSDA import no data, training or metrics code (fresh interpreter).
- Every method owned here (original, retrain, dsda, finetune, neggrad, random_labels) end to end on
  the smoke profile, with the record's fields; Retrain reproduces the cached oracle bit for bit and
  is served from the cache the second time.
- Hand-computed references: one SGD step of the shared loop, the balanced subset counts, the OOD
  conversion of constant images, the random relabelling.
- The command line: `python -m dsda run` / `methods`; failures write nothing and clobber nothing.
"""
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import dsda
from dsda import train as T
from dsda.baselines import METHODS, runner as R
from dsda.baselines.base import Method
from dsda.baselines.finetune import fit_epochs
from dsda.baselines.random_labels import random_wrong_labels
from dsda.cli import parse_set_options, parse_set_value
from dsda.data import DataAccessError, DatasetError, DatasetInfo, TensorDataset, load_dataset, split_dataset
from dsda.utils import to_jsonable

ROOT = Path(__file__).resolve().parent.parent
OWNED = ("original", "retrain", "dsda", "dsda_retrain_like", "finetune", "neggrad", "random_labels")
FORGET = (3,)   # the smoke profile's task
RECORD_KEYS = {"method", "title", "data_access", "extras", "source_free", "profile", "settings", "forget_classes",
               "seed", "model_seed", "ET_s", "ET_source", "granted", "metrics", "config", "report", "reference",
               "reference_model", "provenance", "synthesis_shared", "ET_shared_synthesis_s"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private checkpoint cache for this module (the smoke original trains in seconds)."""
    folder = tmp_path_factory.mktemp("ckpt")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DSDA_CACHE_DIR", str(folder))
        mp.setenv("DSDA_NO_PRETRAINED", "1")
        yield folder


@pytest.fixture(scope="module")
def original_smoke(cache):
    model = T.original_model("smoke", progress=False)
    return model, dsda.evaluate(model, "smoke", FORGET)


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def _digits_counts():
    y = load_dataset("digits", "train").y
    return {c: int((y == c).sum()) for c in range(10)}


# ----------------------------------------------------------------------------- every owned method, smoke

@pytest.mark.parametrize("name", OWNED)
def test_method_runs_on_smoke_and_record_is_complete(name, cache, original_smoke):
    method = METHODS[name]
    rec = R.run_method(name, "smoke", seed=0, progress=False)
    assert set(rec) == RECORD_KEYS
    assert (rec["method"], rec["title"], rec["data_access"]) == (name, method.title, method.data_access)
    assert rec["source_free"] == (method.data_access == "none") and rec["profile"] == "smoke"
    assert rec["forget_classes"] == [3] and rec["seed"] == 0 and rec["settings"] == "smoke"
    assert rec["ET_s"] >= 0 and rec["ET_source"] in ("measured", "cache")
    assert set(rec["granted"]) == (set(R.GRANT_KEYS[method.data_access]) if rec["ET_source"] == "measured" else set())
    m = rec["metrics"]
    for key in ("A_f", "A_r", "MIA", "A_test"):
        assert 0.0 <= m[key] <= 100.0
    assert {"gap_MIA", "avg_abs_gap", "ToW", "ToW_MIA", "JS_forget", "JS_retain", "forgetting"} <= set(m)
    assert rec["reference_model"]["model"] == "retrain" and rec["reference_model"]["seed"] == 0
    assert {"versions", "git_commit", "device"} <= set(rec["provenance"])
    assert isinstance(rec["report"].get("steps"), int)
    json.dumps(to_jsonable(rec))   # the CLI writes exactly this
    if "profile" in rec["config"]:
        assert rec["config"]["profile"] == "smoke"
    _, orig = original_smoke
    if name == "original":
        assert m["A_f"] == orig["A_f"] and m["A_r"] == orig["A_r"] and rec["report"]["steps"] == 0
        assert orig["A_f"] > 90.0
    elif name == "retrain":   # evaluated against the oracle of the same task and seed: itself
        assert m["A_f"] == 0.0 and m["A_r"] > 90.0
        assert all(m[k] == 0.0 for k in m if k.startswith("gap_")) and m["JS_forget"] == 0.0 and m["ToW"] == 100.0
    else:   # every unlearning method must lower the forget-class test accuracy of the original model
        assert m["A_f"] < orig["A_f"] - 40.0, (name, m["A_f"], orig["A_f"])
    if name in ("finetune", "neggrad", "random_labels"):   # smoke settings chosen so these forget and keep A_r
        assert m["A_f"] <= 25.0 and m["A_r"] >= 80.0, (name, m)
        assert len(rec["report"]["step_loss"]) == rec["report"]["steps"] > 0


def test_reference_false_gives_the_plain_metrics_and_a_bad_reference_is_refused(cache, original_smoke):
    rec = R.run_method("original", "smoke", progress=False, reference=False)
    assert rec["metrics"] == original_smoke[1] and rec["reference_model"] is None
    with pytest.raises(TypeError, match="reference"):
        R.run_method("original", "smoke", progress=False, reference="retrain")


def test_original_returns_the_original_weights(cache, original_smoke):
    rec, model, report = R.run_method("original", "smoke", evaluate=False, progress=False, return_model=True)
    assert _same_weights(model, original_smoke[0]) and report == {"steps": 0}
    assert rec["metrics"] is None and rec["granted"] == {}


def test_retrain_reproduces_the_oracle_then_serves_it_from_the_cache(cache, tmp_path, monkeypatch):
    seed = 1   # not used by other tests, so the cache starts without this oracle
    path, _ = dsda.baselines.retrain.checkpoint_path(dsda.get_profile("smoke"), FORGET, seed)
    assert not path.exists()
    rec1, m1, rep1 = R.run_method("retrain", "smoke", seed=seed, progress=False, return_model=True)
    assert rec1["ET_source"] == "measured" and rep1["source"] == "trained"
    counts = _digits_counts()
    assert rec1["granted"] == {"forget": counts[3], "retain": sum(counts.values()) - counts[3]}
    assert path.exists()   # stored after the run, outside the guard
    stored = T.checkpoint_record("smoke", seed=seed, exclude=FORGET)
    assert stored["train_time_s"] == pytest.approx(rec1["ET_s"])

    # the method's output is what dsda.train would have trained (same init, data, order, recipe)
    monkeypatch.setenv("DSDA_CACHE_DIR", str(tmp_path / "independent"))
    oracle = T.retrain_model("smoke", FORGET, seed=seed, progress=False)
    assert _same_weights(m1, oracle)
    monkeypatch.setenv("DSDA_CACHE_DIR", str(cache))

    mtime = path.stat().st_mtime_ns
    rec2, m2, rep2 = R.run_method("retrain", "smoke", seed=seed, progress=False, return_model=True)
    assert rec2["ET_source"] == "cache" and rec2["ET_s"] == pytest.approx(stored["train_time_s"])
    assert rec2["granted"] == {} and rep2["source"] == "cache" and rep2["steps"] == rep1["steps"]
    assert _same_weights(m2, m1) and rec2["metrics"] == rec1["metrics"]
    assert path.stat().st_mtime_ns == mtime

    rec3 = R.run_method("retrain", "smoke", seed=seed, progress=False, evaluate=False, use_cache=False)
    assert rec3["ET_source"] == "measured" and rec3["config"]["use_cache"] is False
    assert path.stat().st_mtime_ns == mtime   # use_cache=False leaves the cache alone


def test_retrain_serves_a_shipped_oracle_without_training_or_shadowing_it(cache, tmp_path, monkeypatch):
    # Regression: the runner looked in the local cache only, so on a clean clone (empty cache, oracles shipped in
    # pretrained/) it retrained every oracle and stored it in the cache, where it then shadowed the shipped one for
    # every later notebook (other weights: CI's golden outputs drifted, and ~15 minutes went into retraining).
    seed = 2
    p = dsda.get_profile("smoke")
    cfg = T.model_config(p, seed, FORGET)
    shipped = tmp_path / "pretrained"
    with torch.random.fork_rng():
        torch.manual_seed(7)                     # weights no training run would produce
        model = T._new_model(p)
    T.save_checkpoint(shipped / "smoke" / T.checkpoint_name(cfg), model, cfg,
                      extra={"train_time_s": 123.0, "test_accuracy": 10.0, "history": {}})
    stored, _ = dsda.baselines.retrain.checkpoint_path(p, FORGET, seed)   # in the module's cache (has the original)
    assert not stored.exists()
    monkeypatch.setenv("DSDA_PRETRAINED_DIR", str(shipped))
    monkeypatch.delenv("DSDA_NO_PRETRAINED", raising=False)
    rec, m, rep = R.run_method("retrain", "smoke", seed=seed, progress=False, evaluate=False, return_model=True)
    assert rec["ET_source"] == "cache" and rec["ET_s"] == 123.0 and rep["path"].startswith(str(shipped))
    assert _same_weights(m, model) and _same_weights(m, T.retrain_model("smoke", FORGET, seed=seed, progress=False))
    assert not stored.exists()   # nothing trained, nothing stored in the cache


def test_dsda_options_reach_unlearn_and_bad_values_fail_early(cache):
    rec = R.run_method("dsda", "smoke", evaluate=False, progress=False, max_steps=3, n_per_class=8)
    assert rec["config"]["max_steps"] == 3 and rec["config"]["profile"] == "smoke"
    assert rec["report"]["config"]["damo"]["max_steps"] == 3 and rec["report"]["config"]["n_per_class"] == 8
    assert rec["report"]["steps"] <= 3
    with pytest.raises(ValueError, match="nfe must be even"):
        METHODS["dsda"].config("smoke", nfe=3)
    with pytest.raises(ValueError, match="unknown option"):
        R.run_method("dsda", "smoke", progress=False, not_an_option=1)


# ----------------------------------------------------------------------------- source-freeness

def _method(name, access, run, extras=()):
    from dataclasses import make_dataclass
    return Method(name=name, title=name, data_access=access, config_cls=make_dataclass(f"C_{name}", [], frozen=True),
                  run=run, reference="test", defaults_source="test", extras=extras)


def test_a_shared_synthetic_set_serves_both_dsda_methods_and_its_time_is_in_et(cache, original_smoke):
    """Issue 15: one stage-1 set per (model, recipe's stage 1, seed), reused across forget tasks and DSDA variants."""
    syn = R.synthetic_set_for("dsda_kd_head", "smoke", seed=0)
    own, m_own, _ = R.run_method("dsda_kd_head", "smoke", seed=0, evaluate=False, progress=False, return_model=True)
    rec, m_shared, rep = R.run_method("dsda_kd_head", "smoke", seed=0, evaluate=False, progress=False,
                                      return_model=True, synthetic=syn)
    assert _same_weights(m_own, m_shared)                           # the set is the one the run would make
    assert (own["synthesis_shared"], own["ET_shared_synthesis_s"]) == (False, 0.0)
    assert rec["synthesis_shared"] is True and rep["synthesis_shared"] is True
    assert rec["ET_shared_synthesis_s"] == syn.wall_time and rec["ET_s"] > syn.wall_time
    other = R.run_method("dsda", "smoke", forget_classes=[5], seed=0, evaluate=False, progress=False, synthetic=syn)
    assert other["synthesis_shared"] is True and other["report"]["forget_classes"] == [5]   # the paper objective
    for call in (lambda: R.run_method("neggrad", "smoke", synthetic=syn, progress=False),
                 lambda: R.synthetic_set_for("neggrad", "smoke")):
        with pytest.raises(ValueError, match="synthetic= is only for"):
            call()


def test_source_free_method_that_loads_data_fails_under_the_runner(cache, monkeypatch):
    def sneaky(model, forget_classes, *, config, seed, device):
        load_dataset("digits", "train")   # what a source-free method must never do
        return model, {"steps": 0}

    monkeypatch.setitem(METHODS, "sneaky", _method("sneaky", "none", sneaky))
    with pytest.raises(DataAccessError, match="sneaky.*data_access='none'"):
        R.run_method("sneaky", "smoke", evaluate=False, progress=False)
    load_dataset("digits", "train")   # the guard is released afterwards


def test_data_method_cannot_load_more_than_it_is_given(cache):
    def greedy(model, forget_classes, *, config, seed, device, forget):
        load_dataset("digits", "test")
        return model, {}

    with pytest.raises(DataAccessError):
        R.run_method(_method("greedy", "forget", greedy), "smoke", evaluate=False, progress=False)


def test_every_source_free_run_accepts_no_data_keyword():
    source_free = [m for m in METHODS.values() if m.source_free]
    assert {"original", "dsda"} <= {m.name for m in source_free}
    for m in source_free:
        params = inspect.signature(m.run).parameters
        assert not set(params) & {"forget", "retain", "ood"}, m.name
        assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()), m.name
        R.check_signature(m)


@pytest.mark.parametrize("access", ["none", "forget", "retain_subset", "full"])
def test_probe_receives_exactly_the_declared_keywords(access, cache):
    seen = {}

    def probe(model, forget_classes, *, config, seed, device, **granted):
        seen.update(granted)
        with pytest.raises(DataAccessError):   # the guard is on inside run
            load_dataset("digits", "train")
        return model, {"steps": 0}

    def source_free_probe(model, forget_classes, *, config, seed, device):
        seen["called"] = True
        return model, {"steps": 0}

    run = source_free_probe if access == "none" else probe
    rec = R.run_method(_method(f"probe_{access}", access, run), "smoke", evaluate=False, progress=False,
                       retain_per_class=20)
    counts = _digits_counts()
    expected = {"none": {"called"}, "forget": {"forget"}, "retain_subset": {"retain"}, "full": {"forget", "retain"}}
    assert set(seen) == expected[access]
    if "forget" in seen:
        assert len(seen["forget"]) == counts[3] and set(seen["forget"].y.tolist()) == {3}
    if access == "full":
        assert len(seen["retain"]) == sum(counts.values()) - counts[3] and 3 not in seen["retain"].y.tolist()
    if access == "retain_subset":   # 20 per retain class (every digits class has more than 20)
        y = seen["retain"].y
        assert {c: int((y == c).sum()) for c in range(10)} == {c: (0 if c == 3 else 20) for c in range(10)}
    assert rec["granted"] == {k: len(v) for k, v in seen.items() if k != "called"}


def test_probe_with_ood_extra_gets_a_different_dataset(cache):
    seen = {}

    def probe(model, forget_classes, *, config, seed, device, forget, ood):
        seen.update(forget=forget, ood=ood)
        return model, {}

    try:
        R.run_method(_method("probe_ood", "forget", probe, extras=("ood",)), "smoke", evaluate=False, progress=False)
    except DatasetError:
        pytest.skip("Fashion-MNIST (the smoke profile's OOD source) is not installed")
    assert set(seen) == {"forget", "ood"}
    assert seen["ood"].info.name == "fashion_mnist->digits" and tuple(seen["ood"].x.shape[1:]) == (1, 8, 8)


def test_check_signature_rejects_mismatched_declarations():
    def takes_forget(model, forget_classes, *, config, seed, device, forget):
        return model, {}

    def takes_anything(model, forget_classes, *, config, seed, device, **kw):
        return model, {}

    def takes_nothing(model, forget_classes, *, config, seed, device):
        return model, {}

    with pytest.raises(TypeError, match="data_access='none'"):
        R.check_signature(_method("a", "none", takes_forget))
    with pytest.raises(TypeError, match="data_access='none'"):
        R.check_signature(_method("b", "none", takes_anything))
    with pytest.raises(TypeError, match="lacks"):
        R.check_signature(_method("c", "full", takes_forget))          # no `retain`
    with pytest.raises(TypeError, match="does not grant"):
        R.check_signature(_method("d", "retain_subset", lambda model, forget_classes, *, config, seed, device,
                                  retain, forget: (model, {})))
    R.check_signature(_method("e", "full", takes_anything))
    R.check_signature(_method("f", "none", takes_nothing))


def test_method_modules_import_no_data_training_or_metrics_code():
    code = ("import sys, dsda.sampler, dsda.damo, dsda.unlearn; "
            "print(sorted(m for m in sys.modules if m in ('dsda.data', 'dsda.train', 'dsda.metrics', "
            "'dsda.baselines')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- hand-computed references

@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_fit_epochs_one_full_batch_sgd_step_matches_the_hand_gradient(sign):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, 4, generator=g), torch.tensor([0, 1, 2, 0, 1, 2])
    model = nn.Linear(4, 3)
    w0, b0 = model.weight.detach().clone(), model.bias.detach().clone()
    lr = 0.1
    hist = fit_epochs(model, x, y, torch.optim.SGD(model.parameters(), lr=lr), epochs=1, batch_size=6,
                      generator=torch.Generator().manual_seed(1), device=torch.device("cpu"), sign=sign)
    # d mean CE / dW = (softmax(xW^T + b) - onehot(y))^T x / n ; d/db = mean(softmax - onehot)
    p = torch.softmax(x @ w0.T + b0, dim=1)
    r = p - F.one_hot(y, 3).float()
    assert torch.allclose(model.weight, w0 - sign * lr * r.T @ x / 6, atol=1e-6)
    assert torch.allclose(model.bias, b0 - sign * lr * r.mean(0), atol=1e-6)
    ce = -torch.log(p[torch.arange(6), y]).mean()
    assert hist["steps"] == 1 and hist["step_loss"][0] == pytest.approx(float(ce), abs=1e-6)
    assert not model.training


def test_fit_epochs_skips_a_trailing_single_sample_batch():
    model = nn.Linear(2, 2)
    hist = fit_epochs(model, torch.randn(5, 2), torch.tensor([0, 1, 0, 1, 0]), torch.optim.SGD(model.parameters(), 0.1),
                      epochs=3, batch_size=2, generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    assert hist["steps"] == 6 and len(hist["epoch_loss"]) == 3   # batches of 2 and 2; the lone 5th sample is skipped


def test_balanced_subset_counts_determinism_and_rows():
    ds = load_dataset("digits", "train")
    _, retain = split_dataset(ds, FORGET)
    counts = {c: int((retain.y == c).sum()) for c in range(10)}
    for k in (1, 50, 10_000):
        sub = R.balanced_subset(retain, k, seed=0)
        got = {c: int((sub.y == c).sum()) for c in range(10)}
        assert got == {c: min(k, n) for c, n in counts.items()}
    a, b, c = (R.balanced_subset(retain, 50, seed=s) for s in (0, 0, 1))
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    # every row is a row of the source, with its own label
    rows = {tuple(r.tolist()): int(l) for r, l in zip(retain.x.flatten(1), retain.y)}
    assert all(rows[tuple(r.tolist())] == int(l) for r, l in zip(a.x.flatten(1), a.y))
    with pytest.raises(ValueError, match="retain_per_class"):
        R.balanced_subset(retain, 0, seed=0)


def _info(c, h, w, mean, std):
    return DatasetInfo(name="t", num_classes=2, class_names=("a", "b"), image_shape=(c, h, w), mean=mean, std=std,
                       input_range=(0.0, 1.0))


def test_convert_images_on_constant_images_is_exact():
    v = torch.tensor([0.0, 0.25, 1.0]).view(3, 1, 1, 1)
    gray8 = v.expand(3, 1, 8, 8).clone()
    up = R.convert_images(gray8, _info(3, 28, 28, (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)))   # upsample, replicate
    assert up.shape == (3, 3, 28, 28)
    for ch, (m, s) in enumerate(zip((0.5, 0.4, 0.3), (0.2, 0.25, 0.5))):
        assert torch.allclose(up[:, ch], ((v.view(3, 1, 1) - m) / s).expand(3, 28, 28), atol=1e-6)
    rgb = torch.stack([torch.full((4, 4), 0.1), torch.full((4, 4), 0.5), torch.full((4, 4), 0.9)])[None]
    down = R.convert_images(rgb, _info(1, 2, 2, (0.5,), (0.5,)))   # shrink (antialiased), average channels
    assert torch.allclose(down, torch.full((1, 1, 2, 2), 0.0), atol=1e-6)   # mean 0.5 -> (0.5 - 0.5) / 0.5


def test_ood_dataset_for_the_cpu_profile_is_digits_in_fashion_mnist_shape():
    ood = R.ood_dataset("cpu")
    lo, hi = dsda.dataset_info("fashion_mnist").input_range
    assert ood.info.name == "digits->fashion_mnist" and tuple(ood.x.shape[1:]) == (1, 28, 28)
    assert len(ood) == len(load_dataset("digits", "train"))
    assert float(ood.x.min()) >= lo - 1e-5 and float(ood.x.max()) <= hi + 1e-5
    assert len(R.ood_dataset("cpu", max_samples=100, seed=0)) == 100


def test_random_wrong_labels_avoid_forget_classes_and_are_uniform():
    y = random_wrong_labels(9000, (3, 7), 10, torch.Generator().manual_seed(0))
    counts = torch.bincount(y, minlength=10)
    assert counts[3] == 0 and counts[7] == 0
    expected = 9000 / 8   # binomial std = sqrt(n p (1 - p)) ~ 31.4; allow 5 std
    assert all(abs(int(counts[c]) - expected) < 5 * 31.4 for c in range(10) if c not in (3, 7))
    assert torch.equal(y, random_wrong_labels(9000, (3, 7), 10, torch.Generator().manual_seed(0)))


def test_json_report_drops_state_dicts_and_big_tensors():
    rep = {"steps": 2, "snapshots": [{"step": 1, "wall_s": 0.5, "state_dict": {"w": torch.zeros(3)}}],
           "small": torch.tensor([1.0, 2.0]), "big": torch.zeros(R.MAX_REPORT_ELEMENTS + 1)}
    out = R._json_report(rep)
    assert out["snapshots"] == [{"step": 1, "wall_s": 0.5}] and out["small"] == [1.0, 2.0]
    assert isinstance(out["big"], str) and "omitted" in out["big"]
    assert "state_dict" in rep["snapshots"][0]   # the caller's report is untouched


# ----------------------------------------------------------------------------- validation

def test_run_method_rejects_bad_arguments_naming_them(cache):
    with pytest.raises(ValueError, match="method='nope'.*allowed values.*dsda"):
        R.run_method("nope", "smoke")
    with pytest.raises(ValueError, match="profile"):
        R.run_method("original", "nope")
    with pytest.raises(ValueError, match="forget_classes"):
        R.run_method("original", "smoke", forget_classes=[10])
    with pytest.raises(ValueError, match="seed"):
        R.run_method("original", "smoke", seed=-1)
    with pytest.raises(ValueError, match="retain_per_class"):
        R.run_method("original", "smoke", retain_per_class=0)
    with pytest.raises(ValueError, match="unknown option.*neggrad"):
        R.run_method("neggrad", "smoke", learning_rate=1.0)
    with pytest.raises(ValueError, match="lr must be a positive"):
        R.run_method("neggrad", "smoke", lr=-1.0)
    with pytest.raises(TypeError, match="evaluate"):
        R.run_method("original", "smoke", evaluate="yes")
    with pytest.raises(ValueError, match="set by the runner"):
        R.build_config(METHODS["dsda"], dsda.get_profile("smoke"), False, {"profile": "cpu"})


def test_settings_key_maps_paper_variants_to_paper():
    for name in ("finetune", "neggrad", "random_labels"):
        m = METHODS[name]
        assert R.settings_key(m, dsda.get_profile("paper-fmnist")) == "paper"
        assert m.config("paper") == m.config_cls()   # paper = the published defaults


def test_methods_table_lists_every_method():
    md = R.methods_table_markdown()
    lines = md.strip().splitlines()
    assert lines[0].startswith("| name | method | data access | source-free")
    assert len(lines) == 2 + len(METHODS)
    assert "| `dsda` | DSDA | none | yes |" in md and "| `neggrad` | NegGrad | forget | no |" in md


# ----------------------------------------------------------------------------- command line

def _cli(args, cache_dir, timeout=300):
    env = {**os.environ, "DSDA_CACHE_DIR": str(cache_dir), "DSDA_NO_PRETRAINED": "1", "TQDM_DISABLE": "1",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.run([sys.executable, "-m", "dsda", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_parse_set_values():
    assert parse_set_value("1e-3") == 1e-3 and parse_set_value("5") == 5 and parse_set_value("True") is True
    assert parse_set_value("none") is None and parse_set_value("sgld") == "sgld"
    assert parse_set_value("1,1,0") == (1, 1, 0) and parse_set_value("'x y'") == "x y"
    assert parse_set_options(["lr=0.1", "sampler=sgld"]) == {"lr": 0.1, "sampler": "sgld"}
    for bad in (["lr"], ["=1"], ["lr=1", "lr=2"], ["a-b=1"]):
        with pytest.raises(ValueError, match="--set"):
            parse_set_options(bad)


def test_cli_run_reference_flag():
    from dsda.cli import build_parser
    parse = lambda *a: build_parser().parse_args(["run", "--method", "original", "--out", "x.json", *a])  # noqa: E731
    assert parse().no_reference is False and parse("--no-reference").no_reference is True


def test_cli_run_writes_the_record(cache, original_smoke, tmp_path):
    out = tmp_path / "sub" / "result.json"
    p = _cli(["run", "--method", "neggrad", "--profile", "smoke", "--forget", "3", "--seed", "0", "--out", str(out),
              "--set", "lr=0.003", "--set", "epochs=2"], cache)
    assert p.returncode == 0, p.stderr
    rec = json.loads(out.read_text())
    assert set(rec) == RECORD_KEYS and rec["method"] == "neggrad" and rec["forget_classes"] == [3]
    assert rec["config"]["lr"] == 0.003 and rec["config"]["epochs"] == 2 and rec["data_access"] == "forget"
    assert set(rec["metrics"]) >= {"A_f", "A_r", "MIA"} and rec["ET_s"] > 0
    assert "torch" in rec["provenance"]["versions"] and rec["provenance"]["git_commit"]
    summary = [line for line in p.stdout.splitlines() if line.startswith("[dsda] neggrad")]
    assert len(summary) == 1 and "A_f" in summary[0] and str(out) in summary[0] and "vs retrain" in summary[0]
    assert rec["reference_model"]["model"] == "retrain" and "gap_MIA" in rec["metrics"]
    assert not list(out.parent.glob("*.tmp"))


@pytest.mark.parametrize("args, message", [
    (["--method", "nope"], "allowed values"),
    (["--method", "neggrad", "--set", "nonsense=1"], "unknown option"),
    (["--method", "neggrad", "--set", "lr"], "--set expects"),
    (["--method", "original", "--forget", "10"], "out of range"),
])
def test_cli_failures_exit_nonzero_and_write_nothing(args, message, cache, tmp_path):
    fresh, existing = tmp_path / "fresh.json", tmp_path / "existing.json"
    existing.write_text("keep me\n")
    for out in (fresh, existing):
        p = _cli(["run", "--profile", "smoke", *args, "--out", str(out)], cache)
        assert p.returncode != 0 and message in p.stderr, (p.returncode, p.stderr)
    assert not fresh.exists() and existing.read_text() == "keep me\n"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["existing.json"]


def test_cli_methods_prints_the_table(cache):
    p = _cli(["methods"], cache)
    assert p.returncode == 0, p.stderr
    for name in METHODS:
        assert any(line.split()[0] == name for line in p.stdout.splitlines()[1:]), name
    p = _cli(["methods", "--markdown"], cache)
    assert p.returncode == 0 and p.stdout == R.methods_table_markdown()

"""`dsda.unlearn` end to end: no data, the caller's model untouched, the report, the ablation switches,
bad input; and (slow) the cpu-profile targets against the retrained model."""
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

import dsda
from dsda.damo import DAMO_FIELDS
from dsda.models import Classifier
from dsda.sampler import SamplerConfig

U = sys.modules["dsda.unlearn"]  # the module; `dsda.unlearn` is the function

# tiny and fast: a few synthetic samples, a few sampler and DAMO steps
FAST = dict(device="cpu", n_per_class=8, nfe=4, max_steps=4, batch_retain=16, batch_forget=8, check_every=2)


def tiny_model(num_classes=5, seed=0):
    torch.manual_seed(seed)  # weights only
    stages = [nn.Sequential(nn.Conv2d(1, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU()),
              nn.Sequential(nn.Conv2d(6, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())]
    m = Classifier(stages, 8, num_classes, (1, 6, 6), input_range=(-1.0, 1.0))
    with torch.no_grad():  # make the BN running stats non-trivial, so a stray update would show
        m.train()
        m(torch.randn(32, 1, 6, 6, generator=torch.Generator().manual_seed(1)))
    return m.eval()


def snapshot(model):
    return ({k: v.detach().clone() for k, v in model.state_dict().items()},
            [(m.training) for m in model.modules()], [(p.requires_grad, p.grad) for p in model.parameters()])


def test_unlearn_leaves_callers_model_bit_identical_and_returns_report():
    model = tiny_model()
    state, modes, flags = snapshot(model)
    out, rep = U.unlearn(model, [2], profile="smoke", seed=0, **FAST)
    s2, m2, f2 = snapshot(model)
    assert state.keys() == s2.keys() and all(torch.equal(state[k], s2[k]) for k in state)
    assert modes == m2 and flags == f2
    assert out is not model and any(not torch.equal(v, out.state_dict()[k]) for k, v in state.items())
    assert rep["forget_classes"] == [2] and rep["retain_classes"] == [0, 1, 3, 4]
    assert set(rep["time_s"]) == {"synthesis", "optimisation", "total"}
    assert rep["time_s"]["total"] >= rep["time_s"]["synthesis"] + rep["time_s"]["optimisation"] - 1e-6
    assert rep["steps"] == 4 and rep["stop_reason"] in ("max_steps", "forgotten")
    for key in ("retain", "forget", "disc"):
        assert len(rep["losses"][key]) == rep["steps"]
    assert len(rep["w"]) == rep["steps"] and all(len(w) == 3 for w in rep["w"])
    assert 0.0 <= rep["conflict_rate"] <= 1.0 and len(rep["conflict"]) == rep["steps"]
    assert {"target_frac", "energy", "wall_time"} <= set(rep["sampler_diagnostics"])
    assert rep["config"]["sampler"]["sampler"] == "aegds" and rep["config"]["sampler"]["nfe"] == 4
    assert rep["config"]["damo"]["max_steps"] == 4 and rep["config"]["n_per_class"] == 8
    assert rep["n_synthetic"] == {"retain": 32, "forget": 8} and rep["synthesis_shared"] is False
    assert not out.training


def test_unlearn_is_deterministic_per_seed():
    model = tiny_model()
    a, _ = U.unlearn(model, [1, 3], profile="smoke", seed=3, **FAST)
    b, _ = U.unlearn(model, [1, 3], profile="smoke", seed=3, **FAST)
    c, _ = U.unlearn(model, [1, 3], profile="smoke", seed=4, **FAST)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize("switch,check", [
    (dict(sampler="sgld"), lambda r: r["config"]["sampler"]["sampler"] == "sgld"),        # DSDA-w-EGDS
    (dict(disc=False), lambda r: all(len(w) == 2 for w in r["w"])
     and all(v is None for v in r["losses"]["disc"])),                                      # DSDA-wo-disc
    (dict(multitask=False), lambda r: all(w is None for w in r["w"])),                      # DSDA-wo-mt
])
def test_ablation_switches(switch, check):
    _, rep = U.unlearn(tiny_model(), [0, 4], profile="smoke", seed=0, **{**FAST, **switch})
    assert check(rep), rep["config"]
    assert rep["forget_classes"] == [0, 4]


def test_recipe_overrides_route_by_field_name():
    from dsda.recipes import ALLOWED_OVERRIDES, RECIPES, get_recipe
    r = U.resolve_recipe("smoke", nfe=10, lr=1e-3, device="cpu", n_per_class=5, progress=True)
    assert (r.sampler.nfe, r.sampler.device, r.sampler.progress) == (10, "cpu", True)
    assert (r.damo.lr, r.damo.device, r.damo.progress) == (1e-3, "cpu", True) and r.n_per_class == 5
    assert set(ALLOWED_OVERRIDES) == ({f for f in SamplerConfig.__dataclass_fields__} | set(DAMO_FIELDS)
                                      | {"n_per_class"})
    assert get_recipe(None, "paper-cifar100") is RECIPES["paper"] and get_recipe(None, "cpu") is RECIPES["cpu-kd-head"]
    with pytest.raises(ValueError, match="recipe='best'.*allowed: .*cpu-kd-head"):
        get_recipe("best")


def test_registered_recipes_keep_their_documented_values():
    """The cpu default must not be called plain DSDA; the paper objective keeps the paper method's name."""
    from dsda.recipes import RECIPES
    assert RECIPES["paper"].title == "DSDA" and RECIPES["paper"].damo.disc and RECIPES["paper"].damo.train_scope == "all"
    for name in ("cpu-kd-head", "cpu-kd-head-goal"):
        cpu = RECIPES[name]
        assert "DSDA" not in cpu.title and not cpu.damo.disc
        assert (cpu.damo.retain_loss, cpu.damo.train_scope, cpu.damo.lr, cpu.damo.forget_bound, cpu.damo.patience) == (
            "kd", "fc", 1e-3, 10.0, 2) and cpu.damo.max_steps == 300
    goal, cpu = RECIPES["cpu-kd-head-goal"], RECIPES["cpu-kd-head"]     # issue 15: goal-sized stage 1 (not default)
    assert (goal.n_per_class, goal.sampler.nfe, goal.sampler.target_energy) == (32, 40, 0.05)
    assert (cpu.n_per_class, cpu.sampler.nfe, cpu.sampler.target_energy) == (64, 40, None)
    like = RECIPES["cpu-retrain-like"]   # our variant: never the paper method's name
    assert "DSDA" not in like.title and like.damo.forget_loss == "kd_retain" and like.damo.forget_entropy > 0
    assert like.damo.patience * like.damo.check_every >= like.damo.max_steps    # runs the whole budget


def test_a_shared_synthetic_set_gives_the_same_weights_and_counts_its_time():
    model = tiny_model()
    a, ra = U.unlearn(model, [1, 3], profile="smoke", seed=2, **FAST)
    syn = U.synthetic_set(model, "smoke", seed=2, **FAST)
    b, rb = U.unlearn(model, [1, 3], profile="smoke", seed=2, synthetic=syn, **FAST)
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert rb["synthesis_shared"] is True and ra["synthesis_shared"] is False
    assert rb["time_s"]["synthesis"] == syn.wall_time and rb["time_s"]["total"] >= syn.wall_time
    with pytest.raises(ValueError, match="other stage-1 settings.*nfe 4 \\(recipe: 8\\)"):
        U.unlearn(model, [1], profile="smoke", synthetic=syn, **{**FAST, "nfe": 8})
    with pytest.raises(TypeError, match="SyntheticSet"):
        U.unlearn(model, [1], profile="smoke", synthetic=(syn.x, syn.y))
    with pytest.raises(ValueError, match="another model"):
        U.unlearn(tiny_model(seed=1), [1], profile="smoke", synthetic=syn, **FAST)
    assert rb["synthesis_seed"] == 2 and set(rb["nfe_per_class"]) == set(range(5))


def test_a_target_energy_sizes_synthesis_and_the_report_says_what_it_spent():
    model = tiny_model()
    # the untrained model: classes 0 and 4 start below E = 1.5 (one evaluation each), the others never get there
    _, rep = U.unlearn(model, [1], profile="smoke", seed=0, **{**FAST, "nfe": 40, "target_energy": 1.5})
    assert rep["config"]["sampler"]["target_energy"] == 1.5
    assert rep["nfe_per_class"] == {0: 1.0, 1: 40.0, 2: 40.0, 3: 40.0, 4: 1.0}
    assert rep["sampler_diagnostics"]["nfe_spent"] == pytest.approx((1 + 40 + 40 + 40 + 1) / 5)


@pytest.mark.parametrize("bad", [[], [5], [-1], [1, 1], [0, 1, 2, 3, 4], ["1"], [1.0], [True], "3", None])
def test_bad_forget_classes_raise_value_error_naming_the_parameter(bad):
    with pytest.raises(ValueError, match="forget_classes"):
        U.unlearn(tiny_model(), bad, profile="smoke", **FAST)


def test_other_bad_inputs():
    model = tiny_model()
    with pytest.raises(ValueError, match="unknown option.*allowed:.*lr"):
        U.unlearn(model, [1], profile="smoke", learning_rate=1e-3)
    with pytest.raises(ValueError, match="c must be"):
        U.unlearn(model, [1], profile="smoke", **FAST, c=1.0)
    with pytest.raises(ValueError, match="profile"):
        U.unlearn(model, [1], profile="gpu")
    with pytest.raises(ValueError, match="sampler"):
        U.unlearn(model, [1], profile="smoke", **{**FAST, "sampler": "langevin"})
    with pytest.raises(ValueError, match="n_per_class"):
        U.unlearn(model, [1], profile="smoke", **{**FAST, "n_per_class": 0})
    with pytest.raises(TypeError, match="num_classes"):
        U.unlearn(nn.Linear(3, 2), [1], profile="smoke")
    from dsda.checks import validate_forget_classes
    assert validate_forget_classes(torch.tensor([3, 1]), 5) == (1, 3)
    assert validate_forget_classes(2, 5) == (2,)


def test_method_modules_never_import_data_train_or_metrics():
    code = ("import sys, dsda.unlearn, dsda.damo, dsda.sampler, dsda.synthesis, dsda.energy, dsda.losses, "
            "dsda.multitask, dsda.recipes, dsda.checks, dsda.modes; "
            "print(sorted(m for m in sys.modules if m.startswith(('dsda.data', 'dsda.train', 'dsda.metrics', "
            "'dsda.attacks', 'dsda.baselines'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parent.parent))
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# ----------------------------------------------------------------------------- slow: the cpu-profile targets

@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("forget", [[3], [0], [7], [3, 5]])
def test_cpu_profile_forgets_and_keeps_retain_accuracy(forget):
    """Issue 4 on the cpu profile's default recipe (cpu-kd-head: retain distillation, head-only updates; chosen on
    a validation subset, results/tuning/), four tasks including class 7 and classes 3+5, where the previous
    default (cpu-ce-all) fell short: A_f 15.9 on class 7, A_r 3.8 below the oracle on 3+5."""
    import dsda
    from dsda.recipes import CPU_KD_HEAD as CPU_CANDIDATE
    original = dsda.original_model("cpu", progress=False)
    before = {k: v.clone() for k, v in original.state_dict().items()}
    unlearned, rep = dsda.unlearn(original, forget, profile="cpu", seed=0)
    assert all(torch.equal(before[k], v) for k, v in original.state_dict().items())
    assert {k: rep["config"]["damo"][k] for k in CPU_CANDIDATE} == CPU_CANDIDATE
    m_u = dsda.evaluate(unlearned, "cpu", forget)
    m_r = dsda.evaluate(dsda.retrain_model("cpu", forget, progress=False), "cpu", forget)
    assert m_u["A_f"] <= 1.0, (m_u, rep["stop_reason"], rep["steps"])   # issue 4: A_f <= 1 % on the test split
    assert m_u["A_r"] >= m_r["A_r"] - 3.0, (m_u, m_r, rep["steps"])      # and A_r at most 3 points below the oracle


def test_dsda_unlearn_stays_the_function_after_the_module_is_imported():
    import importlib
    importlib.import_module("dsda.unlearn")
    from dsda.unlearn import unlearn as f  # noqa: F401
    import dsda.baselines.dsda_method  # noqa: F401  (imports ..unlearn)
    assert callable(dsda.unlearn) and dsda.unlearn is U.unlearn


# SHA-256 (dsda.train.state_digest) of the unlearned weights, forget class 3, seed 0, per machine: the floats of one
# run depend on the CPU's kernels (AVX-512 or AVX2, MKL's vendor dispatch) and, on the AMD machine, on the thread
# count, so a digest is a promise about one kind of machine (dsda.utils.device_name: CPU model and torch threads).
# - "Intel(R) Xeon(R) Processor": cpu-kd-head measured at commit 6406888, cpu-kd-head-goal at f884e55 (1 and 2
#   threads, identical).
# - "AMD EPYC", 2 threads (what `make test` uses there), torch CPU capability AVX2: measured on f884e55 and on
#   0e81ff3 (identical).
# - "AMD EPYC", 2 threads, AVX512 (the same model name, another machine): measured at e04ad48, and the same
#   with e04ad48's dsda/inference.py put back to the earlier layout rule (the canonical layout changes no weight).
# The model name alone does not tell an AVX2 from an AVX-512 EPYC, so a key may end with the capability
# (torch.backends.cpu.get_cpu_capability()); the Xeon keys predate recording it. Restructuring the code must not
# change a single bit of them. On a machine not listed the test is skipped with its name; add that machine's
# digests only from a checkout whose other digests still hold.
RECIPE_CLASS3_DIGESTS = {
    "Intel(R) Xeon(R) Processor (1 threads)": {
        "cpu-kd-head": "7f3e159adfb87efe40b686bbab16ea0031103af903c6fdc36ee12fd97ee33c2f",
        "cpu-kd-head-goal": "1aec344039865cbdbee4cb44c9d548354a4a9d935512da652e21efd5d746eb74",
    },
    "AMD EPYC (2 threads) AVX2": {
        "cpu-kd-head": "cfa5fbc535a401c69e665a346cff2d0c2a7434b9df559b6cd9586f6ecc34c361",
        "cpu-kd-head-goal": "62ca8db858d8f01094d801679c603212a122d10604fd7eafdd761da50dc862ca",
    },
    "AMD EPYC (2 threads) AVX512": {
        "cpu-kd-head": "de27524c548f8b0d55e0c88ff3fae16cea163b12e8df8c1fc9df230989e1c3a7",
        "cpu-kd-head-goal": "47a09b2e9f4abbe0624371827ef5c22154969bb2acaea673714ef1cdaff48f27",
    },
}
RECIPE_CLASS3_DIGESTS["Intel(R) Xeon(R) Processor (2 threads)"] = \
    RECIPE_CLASS3_DIGESTS["Intel(R) Xeon(R) Processor (1 threads)"]


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("recipe", ["cpu-kd-head", "cpu-kd-head-goal"])
def test_cpu_recipe_unlearned_weights_are_bitwise_unchanged(recipe):
    from dsda.train import state_digest
    from dsda.utils import device_name
    name = device_name(torch.device("cpu"))
    machine = next((k for k in (f"{name} {torch.backends.cpu.get_cpu_capability()}", name)
                    if k in RECIPE_CLASS3_DIGESTS), None)
    if machine is None:
        pytest.skip(f"no recorded digest for this machine ({name}, {torch.backends.cpu.get_cpu_capability()}); "
                    f"recorded: {', '.join(RECIPE_CLASS3_DIGESTS)}")
    unlearned, rep = dsda.unlearn(dsda.original_model("cpu", progress=False), [3], profile="cpu", seed=0,
                                  recipe=recipe)
    expected = RECIPE_CLASS3_DIGESTS[machine][recipe]
    assert state_digest(unlearned.state_dict()) == expected, (rep["steps"], rep["stop_reason"])


def test_a_set_from_dsda_synthesize_is_accepted_when_it_matches_the_recipe():
    """`dsda.unlearn(model, [c], synthetic=dsda.synthesize(...))`: a set made with the recipe's stage-1 settings."""
    model = tiny_model()
    syn = dsda.synthesize(model, list(range(5)), FAST["n_per_class"], nfe=FAST["nfe"], seed=1, device="cpu")
    out, rep = U.unlearn(model, [2], profile="smoke", seed=1, synthetic=syn, **FAST)
    assert rep["synthesis_shared"] is True and rep["n_synthetic"] == {"retain": 32, "forget": 8}
    with pytest.raises(ValueError, match="n_per_class 8 \\(recipe: 9\\)"):
        U.unlearn(model, [2], profile="smoke", seed=1, synthetic=syn, **{**FAST, "n_per_class": 9})


def test_tuned_recipes_are_named_for_what_they_are_and_point_at_their_study():
    from dsda.recipes import RECIPES, VAL_TUNED
    from dsda.tune.spaces import STUDIES
    assert set(VAL_TUNED) == {s.registers for s in STUDIES.values() if s.kind == "dsda" and s.family == "cpu"}
    for name, (base, study, trial, gap, fields) in VAL_TUNED.items():
        r = RECIPES[name]
        assert "DSDA" not in r.title and "tuned" in r.title     # never the paper method's name; says it was tuned
        assert f"results/tuning/{study}.sqlite3" in r.evidence and f"trial {trial}" in r.evidence
        assert STUDIES[study].base == base and STUDIES[study].registers == name

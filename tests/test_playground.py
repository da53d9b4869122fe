"""Notebook 07's teaching panel (dsda/playground.py) without a browser: the widgets drive `explore` with their
values, the progress bar and the grid follow the callbacks, and the readout holds dsda.evaluate's numbers and
the gap to the retrained model, or says that none is cached or shipped. (tests/test_browser.py drives the real
notebook in JupyterLab.)"""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

import dsda  # noqa: E402
from dsda import playground as pg  # noqa: E402
from dsda.data import dataset_info  # noqa: E402
from dsda.profiles import get_profile  # noqa: E402
from dsda.recipes import RECIPES  # noqa: E402
from dsda.sampler import DEFAULT_ALPHA  # noqa: E402
from dsda.unlearn import synthetic_set  # noqa: E402

P = get_profile("smoke")
BUDGET = {"nfe": 4, "n_per_class": 4, "steps": 30}


def test_gaps_are_the_metric_minus_the_retrained_models():
    got = pg.gaps({"A_f": 2.0, "A_r": 90.5, "MIA": 10.0, "x": 1}, {"A_f": 0.0, "A_r": 92.0, "MIA": 12.5})
    assert got == {"gap_A_f": 2.0, "gap_A_r": -1.5, "gap_MIA": -2.5}


def test_the_recipe_menu_holds_the_profile_familys_recipes():
    assert pg.recipes_for("smoke") == ["smoke", "smoke-kd-head", "smoke-retrain-like"]
    assert pg.recipes_for("cpu") == ["cpu-ce-all", "cpu-kd-head", "cpu-kd-head-goal", "cpu-paper", "cpu-retrain-like",
                                     *sorted(n for n in RECIPES if n.startswith("val-"))]   # tuned on cpu-val
    assert pg.recipes_for("paper-fmnist") == ["paper", "paper-kd-head", "paper-retrain-like"]


@pytest.fixture(scope="module")
def original():
    return dsda.original_model(P, progress=False).eval()


def _panel(original, calls):
    def explore(forget, sampler, nfe, n_per_class, steps, alpha, recipe, on_synthetic, on_check):
        calls.append(dict(forget=forget, sampler=sampler, nfe=nfe, n_per_class=n_per_class, steps=steps,
                          alpha=alpha, recipe=recipe))
        x, y, _ = synthetic_set(original, P, seed=0, sampler=sampler, nfe=nfe, n_per_class=n_per_class)
        on_synthetic(x, y)
        on_check(10)
        # the original itself as the "unlearned" model: its readout numbers are known (evaluate of the original)
        return {"damo_steps": 10, "stop_reason": "test"}, plt.figure(), original
    return pg.Playground(explore, P, dataset_info(P.dataset), original, [3], "aegds", BUDGET)


def test_run_drives_explore_and_fills_the_readout_with_the_gap(original, monkeypatch):
    monkeypatch.setattr(pg, "find_checkpoint", lambda profile, config: "a checkpoint")
    monkeypatch.setattr(pg, "retrain_model", lambda profile, forget, seed, progress: original)
    calls = []
    panel = _panel(original, calls)
    assert "press Run" in panel.readout.value and "cached or shipped" in panel.readout.value
    panel.controls["sampler"].value = "sgld"
    assert panel.controls["alpha"].value == DEFAULT_ALPHA["sgld"], "a new sampler starts at its own step size"
    out = panel.run()
    assert calls == [dict(forget=[3], sampler="sgld", nfe=4, n_per_class=4, steps=30, alpha=DEFAULT_ALPHA["sgld"],
                          recipe="smoke")]
    truth = dsda.evaluate(original, P, [3])
    assert {k: out["after"][k] for k in pg.READOUT_KEYS} == {k: truth[k] for k in pg.READOUT_KEYS}
    assert [out["after"][f"gap_{k}"] for k in pg.READOUT_KEYS] == [0.0, 0.0, 0.0], "the oracle is the same model"
    html = panel.readout.value
    assert f"<td>A_f</td><td>{truth['A_f']:.1f}</td><td>{truth['A_f']:.1f}</td><td>{truth['A_f']:.1f}</td>" \
           "<td>+0.0</td>" in html
    assert "sampler sgld" in html and "recipe smoke" in html
    assert panel.progress.value == 100 and panel.progress.bar_style == "success"
    assert panel.status.value.startswith("done in") and not panel.button.disabled
    assert panel.grid.value[:4] == b"\x89PNG" and panel.figure.value[:4] == b"\x89PNG"


def test_without_a_retrained_model_the_readout_says_so_and_trains_none(original, monkeypatch):
    monkeypatch.setattr(pg, "find_checkpoint", lambda profile, config: None)
    monkeypatch.setattr(pg, "retrain_model", lambda *a, **k: pytest.fail("the panel must not train an oracle"))
    panel = _panel(original, [])
    panel.controls["forget"].value = (1, 4)
    assert "no retrained model without classes [1, 4]" in panel.readout.value
    out = panel.run()
    assert out["oracle"] is None and not any(k.startswith("gap_") for k in out["after"])
    assert "python -m dsda train --profile smoke --forget 1 --forget 4" in panel.readout.value
    assert "<td>MIA</td>" in panel.readout.value and "<td>–</td><td>–</td></tr>" in panel.readout.value


def test_an_empty_selection_runs_nothing(original):
    calls = []
    panel = _panel(original, calls)
    panel.controls["forget"].value = ()
    assert panel.run() is None and calls == [] and panel.status.value == "pick at least one class to forget"

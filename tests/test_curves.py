"""The learning curves of GKT and ISPF (dsda/tune/curves.py): the wall-clock cap, the censored time to target,
an end-to-end smoke curve that is stored once and not run again."""
import dataclasses
import json

import pytest

from dsda.baselines import get_method
from dsda.train import original_model
from dsda.tune import curves, summary


def _pts(*rows):
    return [{"step": i + 1, "wall_s": w, "A_f": f, "A_r": r} for i, (w, f, r) in enumerate(rows)]


def test_time_to_target_is_the_first_point_that_meets_both_conditions():
    pts = _pts((10.0, 0.0, 80.0), (20.0, 5.0, 90.0), (30.0, 0.5, 88.0), (40.0, 0.0, 95.0))
    # oracle A_r 90: the target is A_f <= 1 and A_r >= 87; point 1 is too low, point 2 not forgotten
    assert curves.time_to_target(pts, 90.0, 100.0) == {"ET_s": 30.0, "censored": False, "step": 3}
    # a stricter oracle: only the last point; past the cap it does not count, and the run is censored at the cap
    assert curves.time_to_target(pts, 97.0, 100.0) == {"ET_s": 40.0, "censored": False, "step": 4}
    assert curves.time_to_target(pts, 97.0, 35.0) == {"ET_s": 35.0, "censored": True, "step": None}
    assert curves.time_to_target([], 90.0, 5.0) == {"ET_s": 5.0, "censored": True, "step": None}


def test_published_settings_are_the_paper_profiles_with_the_cap():
    for name in curves.CURVE_METHODS:
        cfg = curves.published_config(name, "cpu")
        assert dataclasses.replace(cfg, max_seconds=0.0, snapshot_every=0) == get_method(name).config("paper")
        assert cfg.max_seconds == 1800.0 and cfg.snapshot_every > 0
    with pytest.raises(ValueError, match="method='neggrad'.*gkt, ispf"):
        curves.published_config("neggrad", "cpu")


@pytest.mark.parametrize("name", ["gkt", "ispf"])
def test_a_capped_run_stops_on_time_and_says_so(name):
    model = original_model("smoke", seed=0, progress=False)
    method = get_method(name)
    long = {"gkt": {"n_cycles": 100_000}, "ispf": {"epochs": 100_000}}[name]
    cfg = method.config("smoke", max_seconds=0.5, **long)
    _, report = method.run(model, [3], config=cfg, seed=0)
    assert report["stop_reason"] == "time"
    done = report["steps"]["cycles"] if name == "gkt" else report["steps"]["student"] // cfg.ep_steps
    assert done < 100_000
    with pytest.raises(ValueError, match="max_seconds"):
        method.config("smoke", max_seconds=-1.0)


def test_smoke_curves_are_stored_once(tmp_path, monkeypatch):
    monkeypatch.setenv("DSDA_OUTPUT_DIR", str(tmp_path))
    paths = curves.run_curves("gkt", family="smoke")
    assert [p.name for p in paths] == ["gkt_3_seed0.json"]          # the first tuning task, seed 0
    rec = json.loads(paths[0].read_text())
    assert rec["settings"].startswith("published") and rec["cap_s"] == curves.CAP_S["smoke"]
    assert rec["points"] and all(set(p) >= {"step", "wall_s", "A_f", "A_r", "MIA"} for p in rec["points"])
    assert [p["step"] for p in rec["points"]] == sorted(p["step"] for p in rec["points"])
    tt = rec["time_to_target"]
    assert tt == curves.time_to_target(rec["points"], rec["oracle"]["A_r"], rec["cap_s"])
    before = [p.stat().st_mtime_ns for p in paths]
    assert curves.run_curves("gkt", family="smoke") == paths          # stored: nothing runs again
    assert [p.stat().st_mtime_ns for p in paths] == before
    assert not list(tmp_path.rglob("*.tmp"))
    row = summary.curve_rows(tmp_path)[-1]                            # the summary table reads it back
    assert row.startswith("| gkt forget 3 seed 0 | time |") and ("censored at 4 s" in row) == tt["censored"]

"""The tuning evidence as data: each registered cpu setting is the variant its study calls chosen.

results/tuning/<study>.json is written by benchmarks/tune_damo.py / tune_baselines.py; docs/TUNING.md is
rendered from those files. The tests read only committed files (no model is run).
"""
import dataclasses
import json
from pathlib import Path

import pytest

from dsda import tuning
from dsda.baselines import get_method
from dsda.recipes import CPU_CE_ALL, CPU_GOAL_SYNTHESIS, CPU_KD_HEAD, CPU_RETRAIN_LIKE, RECIPES
from dsda.utils import to_jsonable

# Study -> (the name its `chosen` field gives, what that became in the code). The records were written when the
# settings were called CPU_CANDIDATE / CPU_PREVIOUS; they are now the recipes cpu-kd-head / cpu-ce-all
# (dsda/recipes.py), whose values are CPU_KD_HEAD / CPU_CE_ALL over the cpu budget. cpu_goal_synthesis (issue 15)
# chose the stage 1 of cpu-kd-head-goal: CPU_GOAL_SYNTHESIS over cpu-kd-head's DAMO.
REGISTERED = {
    "cpu_default": ("CPU_CANDIDATE", lambda: ("cpu-kd-head", CPU_KD_HEAD)),
    "cpu_goal_synthesis": ("cpu-kd-head-goal", lambda: ("cpu-kd-head-goal", {**CPU_KD_HEAD, **CPU_GOAL_SYNTHESIS})),
    "cpu_heldout": ("CPU_PREVIOUS", lambda: ("cpu-ce-all", CPU_CE_ALL)),
    "cpu_retrain_like": ("CPU_RETRAIN_LIKE", lambda: ("cpu-retrain-like", CPU_RETRAIN_LIKE)),
    "baseline_ssd": ("SSD's cpu config", lambda: ("ssd", get_method("ssd").profile_overrides["cpu"])),
    "baseline_unsir": ("UNSIR's cpu config", lambda: ("unsir", get_method("unsir").profile_overrides["cpu"])),
    "baseline_neggrad": ("NegGrad's cpu config", lambda: ("neggrad", get_method("neggrad").profile_overrides["cpu"])),
}

# Study specs whose re-run has not finished yet, with what to run; their record must then be absent (a complete
# record has to be registered above instead). cpu-ce-all's committed evidence is cpu_heldout (it chose B too).
UNFINISHED = {"cpu_previous": "python benchmarks/tune_damo.py --study benchmarks/studies/cpu_previous.json "
                              "(11 of 24 variants ran in the session that wrote the spec)"}

# Fields added to a config after a record was written are absent from it; each maps to the value that does what the
# code did before the field existed. A registered setting may leave such a field out of the comparison only at
# that value (issue 14: the "kd_retain" forget loss's temperature and entropy target, read only when
# forget_loss="kd_retain"; issue 15: SamplerConfig.target_energy, None = every chain runs the whole NFE budget;
# issue 17: DamoConfig.circle_features, "post_relu" = L_Disc reads model.features as before).
ADDED_LATER = {"config": {"forget_temperature": 1.0, "forget_entropy": None, "circle_features": "post_relu"},
               "sampler_config": {"target_energy": None}}

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "results" / "tuning"
UNUSED = ("device", "progress", "profile")   # fields that change nothing computed; the records leave them out


def plain(config) -> dict:
    """A config dataclass as the JSON a record holds, without UNUSED fields."""
    d = json.loads(json.dumps(to_jsonable(dataclasses.asdict(config))))
    return {k: v for k, v in d.items() if k not in UNUSED}


def registered_configs(method: str, settings: dict) -> dict:
    """What the registered settings run with: the DSDA recipe (`method` names it), or the baseline's cpu config."""
    if method not in RECIPES:
        return {"config": plain(get_method(method).config("cpu"))}
    r = RECIPES[method]
    return {"config": plain(r.damo), "sampler_config": plain(r.sampler.resolved()), "n_per_class": r.n_per_class}


def recorded_configs(record: dict, variant: dict) -> dict:
    """What the study's variant ran with, from its record (the same keys as registered_configs)."""
    if record["script"] != "benchmarks/tune_damo.py":
        return {"config": variant["config"]}
    fixed = record["fixed"]
    return {"config": variant["config"], "sampler_config": variant.get("sampler_config", fixed["sampler_config"]),
            "n_per_class": variant["settings"].get("n_per_class", fixed["n_per_class"])}


def load(study: str) -> dict:
    path = RECORDS / f"{study}.json"
    assert path.exists(), f"{path} is missing: run its study (benchmarks/studies/{study}.json)"
    return json.loads(path.read_text())


@pytest.mark.parametrize("study", sorted(REGISTERED))
def test_chosen_variant_is_the_registered_setting(study):
    recipe, registered = REGISTERED[study]
    record = load(study)
    assert record["complete"] and record["study"] == study
    chosen = record["chosen"]
    assert chosen["recipe"].startswith(recipe), f"{study} says it chose {chosen['recipe']!r}, the table {recipe!r}"
    variant = next(v for v in record["variants"] if v["name"] == chosen["variant"])
    assert {tuple(r["task"]) for r in variant["results"]} == {tuple(t) for t in record["tasks"]}, \
        "the chosen variant must have been run on every task of its study"
    method, settings = registered()
    named = json.loads(json.dumps(to_jsonable(dict(settings))))
    unnamed = {k: v for k, v in variant["settings"].items() if named.get(k, ...) != v}
    assert not unnamed, f"{study}: the chosen variant sets {unnamed}, registered: {named}"
    want, got = registered_configs(method, settings), recorded_configs(record, variant)
    for part, fields in want.items():
        if not isinstance(fields, dict):
            assert got[part] == fields, f"{study}: {part} {got[part]!r} was chosen, {fields!r} is registered"
            continue
        later = ADDED_LATER.get(part, {})
        fields = {k: v for k, v in fields.items() if k in got[part] or k not in later or v != later[k]}
        missing = sorted(set(fields) - set(got[part]))
        assert not missing, f"{study}: the record does not cover the registered {part} fields {missing}"
        fields = {k: v for k, v in fields.items() if k in got[part]}   # what the record can vouch for
        diff = {k: (got[part][k], v) for k, v in fields.items() if got[part][k] != v}
        assert not diff, f"{study}: {part} fields (chosen, registered) differ: {diff}"


@pytest.mark.parametrize("study", sorted(REGISTERED))
def test_record_says_what_it_measured_on(study):
    record = load(study)
    assert record["split"] == tuning.VALIDATION and record["split"]["split"] == "train"
    assert "TRAIN split" in record["split"]["description"] and "seed 123" in record["split"]["description"]
    assert record["provenance"]["git_commit"] not in ("", "unknown") and record["command"].startswith("python ")
    labels = {tuning.task_label(t) for t in record["tasks"]}
    assert {tuning.task_label(r["task"]) for r in record["original"]} == labels
    for v in record["variants"]:
        for r in v["results"]:
            assert 0 <= r["val_A_f"] <= 100 and 0 <= r["val_A_r"] <= 100 and tuning.task_label(r["task"]) in labels


def test_docs_tuning_is_the_rendering_of_the_records():
    records = tuning.load_records(RECORDS)
    assert {r["study"] for r in records} >= set(REGISTERED)
    page = (ROOT / "docs" / "TUNING.md").read_text()
    assert page == tuning.render(records), "docs/TUNING.md is stale: run python benchmarks/render_tuning.py"
    for r in records:
        if r.get("chosen"):
            assert f"| **{r['chosen']['variant']}** (chosen) |" in page
            assert f"Chosen: **{r['chosen']['variant']}**, registered as {r['chosen']['recipe']}." in page


def test_render_marks_chosen_and_old_numbers():
    record = {"study": "t", "title": "x", "command": "python s.py", "threads": 1, "wall_s": 3.0,
              "split": tuning.VALIDATION, "tasks": [[3]], "fixed": {"n_per_class": 64}, "complete": True,
              "provenance": {"git_commit": "abc", "timestamp": "now", "device_name": "cpu",
                             "versions": {"torch": "2", "python": "3", "numpy": "1"}},
              "original": [{"task": [3], "val_A_f": 94.2, "val_A_r": 93.1}],
              "chosen": {"variant": "b", "recipe": "R"},
              "variants": [{"name": "a", "settings": {"lr": 1}, "results": [
                               {"task": [3], "val_A_f": 1.0, "val_A_r": 90.0, "steps": 300, "stop": "max_steps",
                                "s_damo": 9.6, "old": {"val_A_f": 1.0, "val_A_r": 91.0, "steps": 300}}]},
                           {"name": "b", "settings": {"lr": 2}, "results": [
                               {"task": [3], "val_A_f": 0.0, "val_A_r": 92.0, "steps": 50, "stop": "forgotten",
                                "check": {"forget_rate": 0.0, "check_forget_prob": 0.0451}}]}]}
    assert tuning.differences(record) == [{"variant": "a", "task": [3], "quantity": "val_A_r", "old": 91.0,
                                           "new": 90.0}]
    page = tuning.render([record])
    assert "| a | `lr=1` | 1.00 / 90.00 (300 max; 10 s)<br>old: 1.0 / 91.0 (300) |" in page
    assert "| **b** (chosen) | `lr=2` | 0.00 / 92.00 (50; held-out p 0.045) |" in page
    assert "a on 3: val_A_r 91.0 -> 90.0" in page
    near = {"val_A_f": 1.0, "val_A_r": 90.09, "steps": 300}   # within one unit of 90.0 / 1.0 as quoted
    assert tuning.differences({"variants": [{"name": "a", "results": [{**near, "task": [3], "old": {
        "val_A_f": 1.0, "val_A_r": 90.0, "steps": 300}}]}]}) == []
    assert [tuning.quoted_unit(x) for x in (88.8, 0.08, 50, 0.0)] == [0.1, 0.01, 1.0, 0.1]
    with pytest.raises(ValueError, match="incomplete"):
        tuning.render([{**record, "complete": False}])


@pytest.mark.parametrize("bad, match", [
    ({"name": "Bad Name", "tasks": [[3]], "variants": []}, "study name"),
    ({"name": "s", "tasks": [[3, 3]], "variants": []}, "tasks must be"),
    ({"name": "s", "tasks": [[10]], "variants": []}, "tasks must be"),
    ({"name": "s", "tasks": [[3]], "variants": [{"name": "a", "settings": {}, "tasks": [[4]]}]}, "among the study"),
    ({"name": "s", "tasks": [[3]], "variants": [{"name": "a", "settings": {}, "old": {"4": {}}}]}, "not among"),
    ({"name": "s", "tasks": [[3]], "variants": [{"name": "a", "settings": {}}, {"name": "a", "settings": {}}]},
     "unique"),
    ({"name": "s", "tasks": [[3]], "variants": [{"name": "a", "settings": {}}], "chosen": {"variant": "b",
                                                                                      "recipe": "R"}}, "chosen must"),
    ({"name": "s", "tasks": [[3]], "variants": [], "typo": 1}, "a study spec is"),
])
def test_bad_study_spec_is_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        tuning.check_spec(bad)


@pytest.mark.parametrize("spec", sorted((ROOT / "benchmarks" / "studies").glob("*.json")), ids=lambda p: p.stem)
def test_committed_study_specs_are_valid_and_have_a_record(spec):
    s = tuning.load_spec(spec)
    assert s["name"] == spec.stem and s.get("chosen")
    if s["name"] in UNFINISHED:
        assert not (RECORDS / f"{s['name']}.json").exists(), f"{s['name']} has a record now: register it in REGISTERED"
        return
    record = load(s["name"])
    assert [v["name"] for v in record["variants"]] == [v["name"] for v in s["variants"]]
    assert [v["settings"] for v in record["variants"]] == [v["settings"] for v in s["variants"]]


def script(name: str):
    """A benchmarks/ script as a module (they are not a package)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tune_damo_command_lines():
    tune = script("tune_damo")
    spec, n, trace, save = tune.parse(["[3, 5]", '[{}, {"disc": false}]', "32", "--trace"])
    assert (spec["tasks"], [v["settings"] for v in spec["variants"]], n, trace, save) == \
        ([[3, 5]], [{}, {"disc": False}], 32, True, False)
    spec, n, trace, save = tune.parse(["[7]", '[{"lr": 1e-3}]', "--name", "my_try"])
    assert (spec["name"], n, trace, save) == ("my_try", 64, False, True)
    spec, *_, save = tune.parse(["--study", str(ROOT / "benchmarks" / "studies" / "cpu_default.json")])
    assert spec["name"] == "cpu_default" and save and spec["chosen"]["variant"] == "C"
    with pytest.raises(ValueError, match="study name"):
        tune.parse(["[3]", "[{}]", "--name", "No Good"])
    with pytest.raises(ValueError, match="lr must be a positive"):   # before the model or any data is loaded
        tune.main(tuning.check_spec({"name": "x", "tasks": [[3]], "variants": [{"name": "a", "settings": {"lr": -1}}]}))
    with pytest.raises(ValueError, match="n_per_class must be"):
        tune.damo_config({"n_per_class": 1})


def test_tune_baselines_command_lines():
    tune = script("tune_baselines")
    spec, save = tune.parse(["ssd", "[3]", '[{}, {"alpha": 3}]'])
    assert (spec["method"], spec["tasks"], len(spec["variants"]), save) == ("ssd", [[3]], 2, False)
    assert tune.method_config(get_method("ssd"), {"alpha": 3.0})["alpha"] == 3.0
    with pytest.raises(ValueError, match="unknown option"):   # before the model or any data is loaded
        tune.main(tuning.check_spec({"name": "x", "method": "ssd", "tasks": [[3]],
                                     "variants": [{"name": "a", "settings": {"alpha_typo": 3}}]}))


def test_a_rerun_keeps_the_complete_record_until_it_finishes(tmp_path):
    path = tmp_path / "s.json"
    path.write_text('{"complete": true}')
    record = {"variants": [], "started": 0.0}
    tuning.add_variant(record, {"name": "a", "settings": {}, "old": {"3": {"val_A_f": 1.0}}}, {},
                       [{"task": [3], "val_A_f": 0.5, "val_A_r": 90.0}], path)
    assert path.read_text() == '{"complete": true}'            # the earlier record is untouched meanwhile
    assert json.loads(tuning.partial_path(path).read_text())["variants"][0]["results"][0]["old"] == {"val_A_f": 1.0}
    tuning.finish(record, path)
    assert json.loads(path.read_text())["complete"] and not tuning.partial_path(path).exists()

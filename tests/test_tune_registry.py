"""Each registered setting is its study's best trial (issue 17), read from the committed storage in results/tuning/.

The check is active for every study whose storage is committed and complete. Until then the study must be
listed in UNFINISHED with the command that runs it; the first test fails as soon as the two disagree (a study
that finished but is still listed, or one that is missing but not listed), so nothing passes by being absent.
tests/test_tune.py runs the same check on a tiny smoke study it makes itself.
"""
from pathlib import Path

import pytest

from dsda.tune import registry, spaces

ROOT = Path(__file__).resolve().parents[1]

# Studies not complete yet (docs/PROTOCOL.md, 5: the commands that run them; each resumes from its storage).
UNFINISHED = {name: f"python -m dsda tune {name}" for name in (
    "scar",)}
CPU_STUDIES = sorted(n for n, s in spaces.STUDIES.items() if s.family == "cpu")


def test_unfinished_lists_exactly_the_studies_without_a_complete_storage():
    incomplete = {n for n in CPU_STUDIES if registry.status(n, ROOT)["state"] != "complete"}
    assert incomplete == set(UNFINISHED), (
        f"finished but still listed in UNFINISHED: {sorted(set(UNFINISHED) - incomplete)}; "
        f"not complete and not listed: {sorted(incomplete - set(UNFINISHED))}")


@pytest.mark.parametrize("name", CPU_STUDIES)
def test_registered_settings_are_the_best_trial(name):
    if name in UNFINISHED:     # listed, not passed: `pytest -rs` shows every study still to run and its recipe
        pytest.skip(f"study {name} not run yet (registers {spaces.get_study(name).registers!r}): {UNFINISHED[name]}")
    assert registry.mismatches(name, ROOT) == []


def test_the_committed_summary_is_what_the_storage_gives():
    from dsda.tune import summary
    path = ROOT / "results" / "tuning" / "SUMMARY.md"
    assert path.read_text() == summary.summary(ROOT), "results/tuning/SUMMARY.md is stale: python -m dsda tune --summary"

"""Dev tasks and report tasks (dsda/protocol.py): declared once, drawn as documented, never mixed."""
import numpy as np
import pytest

from dsda import protocol as P


def test_cpu_declaration_is_the_documented_one():
    assert P.dev_tasks("cpu") == ((3,), (0,), (7,), (3, 5)) == P.dev_tasks("cpu-val")
    assert P.report_tasks("cpu") == ((1,), (5,), (8,)) == P.report_tasks("cpu-val")
    assert P.tuning_tasks("cpu") == ((3,), (3, 5)) == P.tuning_tasks("cpu-val")


@pytest.mark.parametrize("family", sorted(P.DEV_TASKS))
def test_the_studies_read_dev_tasks_only(family):
    assert set(P.TUNING_TASKS) == set(P.DEV_TASKS)
    assert P.TUNING_TASKS[family] and set(P.TUNING_TASKS[family]) <= set(P.DEV_TASKS[family])
    assert P.check_tuning_tasks(family, P.tuning_tasks(family)) == P.TUNING_TASKS[family]


def test_report_tasks_are_the_seeded_draw_from_the_classes_no_dev_task_uses():
    for family, draw in P.REPORT_DRAW.items():
        single = {t[0] for t in P.DEV_TASKS[family] if len(t) == 1}
        assert set(P.REPORT_POOL[family]) == set(range(10)) - single
        picked = np.random.default_rng(draw["seed"]).permutation(list(P.REPORT_POOL[family]))[:draw["take"]]
        assert tuple((int(c),) for c in picked) == P.REPORT_TASKS[family]


@pytest.mark.parametrize("family", sorted(P.DEV_TASKS))
def test_dev_and_report_tasks_are_disjoint(family):
    assert not set(P.DEV_TASKS[family]) & set(P.REPORT_TASKS[family])
    assert all(c in P.REPORT_POOL[family] for t in P.REPORT_TASKS[family] for c in t)


def test_tasks_are_parsed_one_way():
    assert P.as_task(3) == P.as_task([3]) == P.as_task("3") == (3,)
    assert P.as_task([5, 3]) == P.as_task("3+5") == P.as_task((3, 5)) == (3, 5)
    assert P.task_label([5, 3]) == "3+5"
    for bad in ("3+x", [], [3, 3], [-1], True, 2.0):
        with pytest.raises(ValueError, match="task"):
            P.as_task(bad)


def test_exclusion_and_the_note_next_to_every_table():
    rows = [{"task": "3", "v": 1}, {"task": "1", "v": 2}, {"task": "3+5", "v": 3}, {"task": "5", "v": 4}]
    assert [r["v"] for r in P.report_rows("cpu", rows)] == [2, 4]
    assert P.is_dev_task("cpu", "3+5") and not P.is_dev_task("cpu", "5")
    assert P.dev_note("cpu") == "dev tasks (tuning only, excluded from verdicts): 3, 0, 7, 3+5"
    a, b, dropped = P.drop_dev_pairs("cpu", {("3", 0): 1.0, ("8", 1): 2.0}, {("3", 0): 0.0, ("8", 1): 1.0})
    assert a == {("8", 1): 2.0} and b == {("8", 1): 1.0} and dropped == (("3", 0),)
    with pytest.raises(ValueError, match="keyed by \\(task, seed\\)"):
        P.drop_dev_pairs("cpu", {"3": 1.0})


def test_tuning_may_read_dev_tasks_only():
    assert P.check_tuning_tasks("cpu-val", ["3", [3, 5]]) == ((3,), (3, 5))
    with pytest.raises(ValueError, match="dev tasks only.*'8'"):
        P.check_tuning_tasks("cpu-val", [[3], [8]])
    with pytest.raises(ValueError, match="declares no dev tasks"):
        P.dev_tasks("paper")


def test_the_readme_repeats_the_protocol_paragraph_word_for_word():
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    protocol = (root / "docs" / "PROTOCOL.md").read_text().split("**In one paragraph.** ", 1)[1].split("\n\n", 1)[0]
    readme = (root / "README.md").read_text()
    heading = "## The protocol: a validation split, dev tasks apart from report tasks, one tuning procedure\n\n"
    assert heading in readme, "README.md lost its protocol section"
    words = lambda text: text.split()  # noqa: E731  (line breaks differ between the two files)
    assert words(readme.split(heading, 1)[1].split("\n\n", 1)[0]) == words(protocol)

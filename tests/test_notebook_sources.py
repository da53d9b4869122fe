"""notebooks/src/*.py (jupytext percent format) -> notebooks/*.ipynb: building the committed tree changes
nothing, an edit only drops the outputs of the edited cell, and `notebooks check` catches every kind of
drift. Each test works on a copy of the tree in tmp_path, never on the committed notebooks."""
import json
import shutil

import pytest

from dsda import cli
from dsda import reproduce as R

NOTEBOOKS = R.notebooks_dir()
STEMS = [p.stem for p in sorted((NOTEBOOKS / "src").glob("*.py"))]


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A copy of notebooks/ (sources and goldens) that build_all and the cli work on."""
    shutil.copytree(NOTEBOOKS / "src", tmp_path / "notebooks" / "src")
    for nb in NOTEBOOKS.glob("*.ipynb"):
        shutil.copy2(nb, tmp_path / "notebooks" / nb.name)
    monkeypatch.setattr(R, "project_root", lambda: tmp_path)
    return tmp_path / "notebooks"


def test_build_leaves_every_committed_notebook_byte_identical(tree, capsys):
    assert len(STEMS) == 8
    assert cli.main(["notebooks", "build"]) == 0
    assert "built" not in capsys.readouterr().out
    for stem in STEMS:
        assert (tree / f"{stem}.ipynb").read_bytes() == (NOTEBOOKS / f"{stem}.ipynb").read_bytes(), stem
    assert cli.main(["notebooks", "check"]) == 0


def test_edit_drops_only_the_edited_cells_outputs(tree):
    src, dest = tree / "src" / "00_original_and_oracle.py", tree / "00_original_and_oracle.ipynb"
    before = json.loads(dest.read_text())
    last = before["cells"][-1]
    assert last["cell_type"] == "code" and last["outputs"] and last["execution_count"] is not None
    src.write_text(src.read_text().rstrip("\n") + "\nprint('edited')\n")
    assert R.build_notebook(src, dest)
    after = json.loads(dest.read_text())
    assert after["metadata"] == before["metadata"] and len(after["cells"]) == len(before["cells"])
    assert after["cells"][:-1] == before["cells"][:-1], "unchanged cells keep ids, tags, outputs and counts"
    edited = after["cells"][-1]
    assert edited["source"][-1] == "print('edited')" and edited["id"] == last["id"]
    assert edited["outputs"] == [] and edited["execution_count"] is None and edited["metadata"] == {}
    assert R.drift(src, dest) == []


@pytest.mark.parametrize("edit", [
    ("run.save(", "run.save( "),                                 # a code cell's text
    ("# **Question.**", "# **Question:**"),                      # a markdown cell's text
    ('# %% tags=["parameters"]', "# %%"),                        # the tag papermill needs
    ("# %% [markdown]\n# **Verdicts", "# %%\n# **Verdicts"),     # a cell's type
    ("\n# %%\nrun.save(", "\nrun.save("),                        # two cells merged
], ids=["code", "markdown", "tag", "type", "cells"])
def test_check_reports_a_drifted_source(tree, capsys, edit):
    src = tree / "src" / "00_original_and_oracle.py"
    old, new = edit
    assert src.read_text().count(old) == 1
    src.write_text(src.read_text().replace(old, new))
    assert cli.main(["notebooks", "check"]) == 1
    err = capsys.readouterr().err
    assert "00_original_and_oracle.ipynb" in err and "01_" not in err


def test_sources_are_read_as_jupytext_reads_them():
    text = ("import os\n\n"                                  # before the first marker: a cell, not dropped
            "# %% Title tags=[\"parameters\"]\n"             # a cell title is jupytext layout, not a tag
            "profile = 'cpu'\n"
            "# %% [raw]\n"
            "raw text\n"
            "# %%\n"
            "# %matplotlib inline\n")                        # jupytext comments out magics in scripts
    assert R.parse_percent(text) == [
        {"cell_type": "code", "source": "import os", "tags": []},
        {"cell_type": "code", "source": "profile = 'cpu'", "tags": ["parameters"]},
        {"cell_type": "raw", "source": "raw text", "tags": []},
        {"cell_type": "code", "source": "%matplotlib inline", "tags": []},
    ]
    assert all(c.metadata in ({}, {"tags": ["parameters"]}) for c in R.read_source(text).cells)


def test_golden_run_writes_what_build_writes(tree, monkeypatch, capsys):
    """update_golden's papermill run leaves the kernel's language_info, papermill's timings and empty tags in
    the notebook; the golden it writes must still be what `notebooks build` writes, outputs kept."""
    import nbformat
    import papermill

    def fake_execute(src, out, **_):   # what a real execution adds, without a kernel
        nb = nbformat.read(src, as_version=4)
        nb.metadata["language_info"] = {"name": "python", "version": "3.11.7", "file_extension": ".py"}
        nb.metadata["papermill"] = {"duration": 1.0}
        for cell in nb.cells:
            cell.metadata["papermill"] = {"duration": 0.1}
            cell.metadata.setdefault("tags", [])
        code = [c for c in nb.cells if c.cell_type == "code"]
        code[-1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="fresh\n")]
        nbformat.write(nb, out)

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    stem = "00_original_and_oracle"
    R.update_golden(only=["00"])
    golden = (tree / f"{stem}.ipynb").read_bytes()
    assert b"fresh" in golden, "the run's outputs are kept"
    nb = json.loads(golden)
    assert nb["metadata"] == json.loads((NOTEBOOKS / f"{stem}.ipynb").read_text())["metadata"]
    assert all("papermill" not in c["metadata"] and c["metadata"].get("tags") != [] for c in nb["cells"])
    capsys.readouterr()
    assert cli.main(["notebooks", "build"]) == 0
    assert "built" not in capsys.readouterr().out
    assert (tree / f"{stem}.ipynb").read_bytes() == golden

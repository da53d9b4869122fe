"""The notebook series: sources and notebooks in step, papermill conventions, and the whole series
executed on the `smoke` profile through the batch runner (the golden `cpu` outputs are checked by nbval,
see the Makefile's test command)."""
import ast
import json
import os
import subprocess
import sys

import nbformat
import pytest

from dsda import reproduce as R

NOTEBOOKS = R.series()
NAMES = [p.stem for p in NOTEBOOKS]
REQUIRED = {"00_original_and_oracle", "01_energy_view", "02_accelerated_synthesis",
            "03_discriminative_loss_ablation", "04_efficiency_curves", "05_privacy_of_synthetic_images",
            "06_main_results", "07_playground"}


def test_parse_percent_cells_tags_and_markdown():
    text = ('# %% [markdown]\n# # Title\n# text\n\n# %% tags=["parameters"]\nprofile = "cpu"\n\n'
            '# %%\nx = 1\n\n\nprint(x)\n')
    cells = R.parse_percent(text)
    assert [c["cell_type"] for c in cells] == ["markdown", "code", "code"]
    assert cells[0]["source"] == "# Title\ntext"
    assert cells[1]["tags"] == ["parameters"] and cells[1]["source"] == 'profile = "cpu"'
    assert cells[2]["source"] == "x = 1\n\n\nprint(x)"


def test_every_notebook_of_the_series_exists_and_matches_its_source():
    assert REQUIRED <= set(NAMES), f"missing: {sorted(REQUIRED - set(NAMES))}"
    assert R.build_all(check=True) == 0, "run `python -m dsda notebooks build`"


def test_build_keeps_outputs_of_unchanged_cells(tmp_path):
    src = tmp_path / "src.py"
    src.write_text('# %%\nprint(1)\n\n# %%\nprint(2)\n')
    dest = tmp_path / "nb.ipynb"
    assert R.build_notebook(src, dest)
    nb = nbformat.read(dest, as_version=4)
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    nbformat.write(nb, dest)
    src.write_text('# %%\nprint(1)\n\n# %%\nprint(3)\n')
    assert R.build_notebook(src, dest)
    nb = nbformat.read(dest, as_version=4)
    assert nb.cells[0].outputs[0]["text"] == "1\n" and nb.cells[1].outputs == []
    assert R.drift(src, dest) == []
    src.write_text('# %%\nprint(4)\n')
    assert R.drift(src, dest)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_notebook_conventions(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert nb.cells[0].cell_type == "markdown", "a notebook opens with what it shows"
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged `parameters`"
    tree = ast.parse(params[0].source)
    names = set()
    for node in tree.body:   # literals only: papermill injects values after this cell
        assert isinstance(node, ast.Assign), f"parameters cell holds only assignments: {ast.dump(node)[:80]}"
        ast.literal_eval(node.value)
        names |= {t.id for t in node.targets}
    assert {"profile", "device", "seeds"} <= names
    checked = [c for c in code if c.source.startswith("# NBVAL_CHECK_OUTPUT")]
    assert checked, "claims are printed in a cell marked # NBVAL_CHECK_OUTPUT"
    assert all("run.print_claims()" in c.source for c in checked)
    assert any("run.save(" in c.source for c in code), "results are written with run.save"
    outputs = [o for c in checked for o in c.outputs if o.get("name") == "stdout"]
    assert outputs and all(line.startswith("claim: ") for o in outputs for line in o["text"].splitlines()), \
        "committed notebooks carry golden claim lines (python -m dsda notebooks golden)"
    reprs = [c for c in code for o in c.outputs if "<Figure size" in str(o.get("data", {}).get("text/plain", ""))]
    assert not reprs, "figures are closed (run.figure), no <Figure ...> repr"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_notebook_checks_every_parameter_first(path):
    """The first statement after the imports of the cell after `parameters` (papermill injects its values
    in between) is one dsda.checks.check_notebook_params call that declares the form of every parameter."""
    code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    i = next(i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", []))
    defaults: dict = {}
    exec(code[i].source, defaults)
    tree = ast.parse(code[i + 1].source)
    imports = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.module.startswith("dsda")]
    first = next(n for n in tree.body if not isinstance(n, (ast.Import, ast.ImportFrom)))
    call = first.value
    assert isinstance(first, ast.Expr) and isinstance(call, ast.Call) and ast.unparse(call.func) == "check_notebook_params"
    assert [ast.unparse(a) for a in call.args] == ["globals()"]
    assert {k.arg for k in call.keywords} == set(defaults) - {"__builtins__"}
    namespace = {**defaults}
    exec(compile(ast.Module(body=imports + [first], type_ignores=[]), path.name, "exec"), namespace)  # defaults pass


@pytest.mark.parametrize("notebook,args,named", [
    ("07_playground", ["-r", "forget_classes", "10"], "forget_classes='10'"),   # used to forget classes [0, 1]
    ("07_playground", ["-p", "forget_classes", "3"], "forget_classes=3"),
    ("02_accelerated_synthesis", ["-p", "seeds", "notalist"], "seeds='notalist'"),
])
def test_papermill_parameter_in_the_wrong_form_fails_before_any_work_naming_it(notebook, args, named, tmp_path):
    out = tmp_path / "out.ipynb"
    cmd = [sys.executable, "-m", "papermill", str(R.notebooks_dir() / f"{notebook}.ipynb"), str(out),
           "-p", "profile", "smoke", *args, "--cwd", str(R.notebooks_dir())]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "DSDA_OUTPUT_DIR": str(tmp_path)})
    assert p.returncode != 0 and named in p.stderr + p.stdout
    cells = nbformat.read(out, as_version=4).cells
    errors = [(c, o) for c in cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert len(errors) == 1
    cell, err = errors[0]
    assert err.ename == "ValueError" and err.evalue.startswith(f"notebook parameter {named} is not valid; expected a "
                                                               "non-empty list of ")
    assert "check_notebook_params(" in cell.source and not (tmp_path / "results").exists()  # nothing ran after it


def test_golden_outputs_are_from_the_cpu_profile():
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        header = next((o["text"] for c in nb.cells if c.cell_type == "code" for o in c.outputs
                       if o.get("name") == "stdout" and o["text"].startswith("notebook ")), "")
        assert "| profile cpu |" in header, f"{path.name}: golden outputs must come from the cpu profile"


@pytest.mark.notebooks
@pytest.mark.timeout(1500)
def test_smoke_series_runs_end_to_end_with_the_batch_runner(tmp_path, monkeypatch):
    monkeypatch.setenv("DSDA_OUTPUT_DIR", str(tmp_path))
    rows = R.run_series("smoke", progress=False)
    assert [r["notebook"] for r in rows] == NAMES and all(r["status"] == "ran" for r in rows)
    for name in NAMES:   # the parameter reached the code: the JSON says smoke, and its figures exist
        res = json.loads((tmp_path / "results" / "smoke" / f"{name}.json").read_text())
        assert res["profile"] == "smoke" and res["notebook"] == name
        assert res["provenance"]["versions"]["torch"] and res["claims"]
        assert all((tmp_path / f).exists() and (f.startswith("figures/smoke/")) for f in res["figures"])
        assert (tmp_path / "runs" / "smoke" / f"{name}.ipynb").exists()
    summary = (tmp_path / "results" / "smoke" / "SUMMARY.md").read_text()
    assert "Single-class unlearning (Table 1)" in summary and "| 06_main_results |" in summary
    again = R.run_series("smoke", only=["00"], progress=False)     # unchanged inputs: skipped
    assert again == [{"notebook": NAMES[0], "status": "skipped", "wall_s": 0.0}]


def test_reproduce_cli_rejects_unknown_notebook_and_profile(tmp_path):
    env_cmd = [sys.executable, "-m", "dsda", "reproduce", "--profile", "smoke", "--only", "99"]
    p = subprocess.run(env_cmd, capture_output=True, text=True, env={"DSDA_OUTPUT_DIR": str(tmp_path),
                       "PATH": "/usr/bin:/bin"})
    assert p.returncode == 2 and "--only" in p.stderr and "available" in p.stderr
    p = subprocess.run([sys.executable, "-m", "dsda", "reproduce", "--profile", "gpu"], capture_output=True, text=True)
    assert p.returncode == 2 and "invalid choice" in p.stderr
    assert not (tmp_path / "results").exists()


def test_failing_notebook_stops_with_its_error(tmp_path, monkeypatch):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    params = nbformat.v4.new_code_cell('profile = "cpu"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("raise ValueError('broken on ' + profile)")]
    nbformat.write(nb, nbdir / "00_broken.ipynb")
    monkeypatch.setattr(R, "notebooks_dir", lambda: nbdir)
    monkeypatch.setenv("DSDA_OUTPUT_DIR", str(tmp_path / "out"))
    with pytest.raises(RuntimeError, match="00_broken failed in cell .*ValueError: broken on smoke"):
        R.run_series("smoke", progress=False)
    manifest = json.loads((tmp_path / "out" / "runs" / "smoke" / "manifest.json").read_text())
    assert "00_broken" not in manifest


def test_readme_results_block_is_regenerated_between_its_markers_only(tmp_path, monkeypatch):
    monkeypatch.setenv("DSDA_OUTPUT_DIR", str(tmp_path))
    folder = tmp_path / "results" / "cpu"
    folder.mkdir(parents=True)
    row = lambda key, a_f, a_r: {"key": key, "task": "[3]", "A_f": a_f, "A_r": a_r, "ET_s": 12.0}  # noqa: E731
    (folder / "06_main_results.json").write_text(json.dumps({
        "wall_s": 60.0, "claims": [{"text": "DSDA forgets", "verdict": True, "evidence": "|gap| 0.1"}],
        "numbers": {"table_single": "| t1 |", "table_multi": "| t2 |", "multi": [{"task": "[3, 5]"}],
                    "single": [row("dsda", 0.0, 91.0), row("retrain", 0.0, 92.0)]}}))
    (folder / "00_original_and_oracle.json").write_text(json.dumps(
        {"wall_s": 30.0, "claims": [{"text": "accurate", "verdict": False, "evidence": "90 %"}]}))
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\nkept\n{R.README_BEGIN}\nold numbers\n{R.README_END}\ntail kept\n")
    R.update_readme("cpu", readme)
    text = readme.read_text()
    assert text.startswith("# title\nkept\n") and text.endswith(f"{R.README_END}\ntail kept\n")
    assert "old numbers" not in text
    assert "class 3 A_f 0.00 / A_r 91.00 (oracle 92.00), ET 12 s" in text
    assert "| t1 |" in text and "classes [3, 5] at once" in text
    assert "| 06 | DSDA forgets | yes | \\|gap\\| 0.1 |" in text and "| 00 | accurate | **no** | 90 % |" in text
    assert "00 30 s, 06 60 s; total 1.5 min" in text
    R.update_readme("cpu", readme)
    assert readme.read_text() == text                       # idempotent
    readme.write_text("# no markers\n")
    with pytest.raises(ValueError, match="marker"):
        R.update_readme("cpu", readme)
    assert readme.read_text() == "# no markers\n"           # nothing written on error


def test_readme_holds_the_generated_block_of_the_committed_results(monkeypatch):
    monkeypatch.setenv("DSDA_OUTPUT_DIR", str(R.project_root()))   # the committed results, not a test run's
    text = (R.project_root() / "README.md").read_text()
    block = text.split(R.README_BEGIN)[1].split(R.README_END)[0]
    assert block.strip() == R.readme_results("cpu").strip(), "run `python -m dsda notebooks readme`"

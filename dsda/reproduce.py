"""The notebook series: source format, batch runner and summary.

Each notebook has a reviewable twin `notebooks/src/NN_name.py` in jupytext's "percent" format, read
by jupytext (`# %%` starts a code cell, `# %% [markdown]` a markdown cell, `# %% tags=["parameters"]`
tags one; no header needed); `notebooks/NN_name.ipynb` holds the same cells plus the golden outputs of
the `cpu` profile, which nbval compares. `python -m dsda notebooks build` turns sources into notebooks
(keeping outputs of unchanged cells) and `python -m dsda notebooks check` fails when the two drifted apart.

`python -m dsda reproduce --profile cpu [--only 02] [--force]` executes the series with papermill into
`runs/<profile>/`, skips notebooks whose inputs and parameters are unchanged since their last
successful run, stops with the failing cell's error, and writes `results/<profile>/SUMMARY.md`.
"""
from __future__ import annotations

import copy
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Iterable

from .report import output_root, project_root
from .utils import atomic_write_bytes, atomic_write_json, check_choice

# The notebook-level metadata every built notebook carries (the kernel papermill and nbval start).
NOTEBOOK_METADATA = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                     "language_info": {"name": "python"}}


# ----------------------------------------------------------------------------- percent format (jupytext)

def read_source(text: str) -> Any:
    """The cells of a percent-format script, read by jupytext, as the built notebook holds them: only the
    `tags` survive of the cell metadata (papermill needs `parameters`; jupytext's layout hints such as
    `lines_to_next_cell` are not part of the cell), and cell ids are set by `build_notebook`."""
    import jupytext
    nb = jupytext.reads(text, fmt="py:percent")
    for cell in nb.cells:
        tags = list(cell.metadata.get("tags", []))
        cell.metadata = {"tags": tags} if tags else {}
    return nb


def parse_percent(text: str) -> list[dict[str, Any]]:
    """Cells of a percent-format script: [{"cell_type", "source", "tags"}]."""
    return [{"cell_type": c.cell_type, "source": c.source, "tags": list(c.metadata.get("tags", []))}
            for c in read_source(text).cells]


def build_notebook(src: Path, dest: Path) -> bool:
    """Write `dest` from `src`; outputs of cells whose source is unchanged are kept. True if it changed."""
    import jupytext
    nb = read_source(src.read_text())
    # Outputs follow exact source matches only: jupytext's own combine (`--update`) also pairs edited
    # cells by position, which would keep stale golden outputs under a changed cell.
    old = jupytext.read(dest, fmt="ipynb") if dest.exists() else None
    old_code = {c.source: c for c in old.cells if c.cell_type == "code"} if old else {}
    nb.metadata = copy.deepcopy(NOTEBOOK_METADATA)
    for i, cell in enumerate(nb.cells):
        cell.id = hashlib.sha1(f"{src.stem}:{i}".encode()).hexdigest()[:8]   # stable across builds
        prev = old_code.get(cell.source) if cell.cell_type == "code" else None
        if prev is not None:
            cell.outputs, cell.execution_count = prev.outputs, prev.execution_count
    text = jupytext.writes(nb, fmt="ipynb") + "\n"
    if dest.exists() and dest.read_text() == text:
        return False
    atomic_write_bytes(dest, text.encode())
    return True


def notebook_cells(path: Path) -> list[tuple[str, str, list[str]]]:
    import nbformat
    nb = nbformat.read(path, as_version=4)
    return [(c.cell_type, c.source, list(c.metadata.get("tags", []))) for c in nb.cells]


def drift(src: Path, nb_path: Path) -> list[str]:
    """Differences between a source script and its notebook (empty when in step)."""
    if not nb_path.exists():
        return [f"{nb_path} is missing"]
    want = [(c["cell_type"], c["source"], c["tags"]) for c in parse_percent(src.read_text())]
    have = notebook_cells(nb_path)
    problems = [f"{nb_path.name}: cell count {len(have)} != {len(want)} in {src.name}"] if len(have) != len(want) else []
    for i, (w, h) in enumerate(zip(want, have)):
        if w != h:
            problems.append(f"{nb_path.name}: cell {i} differs from {src.name}")
    return problems


# ----------------------------------------------------------------------------- the series

def notebooks_dir() -> Path:
    return project_root() / "notebooks"


def series(only: Iterable[str] | None = None) -> list[Path]:
    """The numbered notebooks in order; `only` keeps those whose name starts with one of the prefixes."""
    nbs = sorted(p for p in notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
    if only:
        only = [str(o) for o in only]
        nbs = [p for p in nbs if any(p.stem.startswith(o) for o in only)]
        if not nbs:
            raise ValueError(f"--only {only} matches no notebook; available: "
                             f"{[p.stem for p in sorted(notebooks_dir().glob('[0-9][0-9]_*.ipynb'))]}")
    return nbs


def _package_digest() -> str:
    """Hash of the package's source: a code change invalidates earlier runs."""
    h = hashlib.sha256()
    for f in sorted((project_root() / "dsda").rglob("*.py")):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def input_digest(nb: Path, params: dict[str, Any]) -> str:
    h = hashlib.sha256()
    h.update(nb.read_bytes())
    h.update(json.dumps(params, sort_keys=True).encode())
    h.update(_package_digest().encode())
    return h.hexdigest()[:16]


def run_sweep(plan: str | None, progress: bool = True) -> None:
    """A plan through the sweep engine (resuming; None: nothing); a failed job stops the series, naming the way out."""
    if plan is None:
        return
    from .sweep import run_plan
    summary = run_plan(plan, progress=progress)
    print(summary.line(), flush=True)
    if summary.failed:
        raise RuntimeError(f"sweep {plan}: {len(summary.failed)} job(s) failed (their records in {summary.store} "
                           f"hold the errors); fix them, then `python -m dsda sweep {plan} --retry-failed`")


def run_series(profile: str = "cpu", only: Iterable[str] | None = None, force: bool = False,
               out_dir: Path | None = None, progress: bool = True, log_output: bool = False,
               sweep: str | None = None) -> list[dict]:
    """Execute the series with papermill; returns one status row per notebook.

    sweep: a plan (plans/<name>.yaml) to run through the sweep engine first, into results/store/<plan>
    (resuming; `make reproduce SWEEP=cpu-quick`). Off by default until the notebooks read the store."""
    import papermill as pm
    from .profiles import PROFILES
    check_choice("profile", profile, PROFILES)
    run_sweep(sweep, progress)   # before the notebooks: later they read the store
    out_dir = Path(out_dir) if out_dir else output_root() / "runs" / profile
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    params = {"profile": profile}
    rows = []
    nbs = series(only)
    for i, nb in enumerate(nbs, 1):
        digest = input_digest(nb, params)
        target = out_dir / nb.name
        result = output_root() / "results" / profile / f"{nb.stem}.json"
        if not force and manifest.get(nb.stem) == digest and target.exists() and result.exists():
            print(f"[{i}/{len(nbs)}] {nb.stem}: unchanged, skipped", flush=True)
            rows.append({"notebook": nb.stem, "status": "skipped", "wall_s": 0.0})
            continue
        print(f"[{i}/{len(nbs)}] {nb.stem}: running ...", flush=True)
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(str(nb), str(target), parameters=params, kernel_name="python3",
                                cwd=str(notebooks_dir()), progress_bar=progress, log_output=log_output)
        except pm.PapermillExecutionError as e:
            manifest.pop(nb.stem, None)
            atomic_write_json(manifest_path, manifest)
            raise RuntimeError(f"{nb.stem} failed in cell {e.exec_count}: {e.ename}: {e.evalue}\n"
                               f"  executed notebook with the traceback: {target}") from None
        wall = time.perf_counter() - t0
        manifest[nb.stem] = digest
        atomic_write_json(manifest_path, manifest)
        print(f"[{i}/{len(nbs)}] {nb.stem}: done in {wall:.0f} s", flush=True)
        rows.append({"notebook": nb.stem, "status": "ran", "wall_s": round(wall, 1)})
    summary = write_summary(profile)
    print(f"summary: {summary}")
    return rows


def write_summary(profile: str) -> Path:
    """results/<profile>/SUMMARY.md: the main table and every claim's verdict."""
    folder = output_root() / "results" / profile
    results = {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("[0-9][0-9]_*.json"))}
    lines = [f"# Results summary: profile `{profile}`", ""]
    main = results.get("06_main_results", {}).get("numbers", {})
    for key, title in (("table_single", "Single-class unlearning (Table 1)"),
                       ("table_multi", "Multi-class unlearning (Table 2)")):
        if main.get(key):
            lines += [f"## {title}", "", main[key], ""]
    lines += ["## Claims of the paper, checked", "", "| notebook | claim | holds | evidence |", "|---|---|---|---|"]
    for name, res in results.items():
        for c in res.get("claims", []):
            lines.append(f"| {name} | {c['text']} | {'yes' if c['verdict'] else '**no**'} | {c['evidence']} |")
    lines += ["", "| notebook | wall time (s) | device | commit |", "|---|---|---|---|"]
    for name, res in results.items():
        prov = res.get("provenance", {})
        lines.append(f"| {name} | {res.get('wall_s', '')} | {prov.get('device_name', '')} | "
                     f"{str(prov.get('git_commit', ''))[:12]} |")
    path = folder / "SUMMARY.md"
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    return path


README_BEGIN = "<!-- results:begin (generated from results/cpu by `python -m dsda notebooks readme`; do not edit) -->"
README_END = "<!-- results:end -->"


def readme_results(profile: str = "cpu") -> str:
    """The generated part of the README's results section: per-task numbers of the DSDA recipes, Tables 1 and 2, every
    claim's verdict and the wall time of each notebook, all read from results/<profile>/*.json."""
    folder = output_root() / "results" / profile
    results = {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("[0-9][0-9]_*.json"))}
    if not results:
        raise FileNotFoundError(f"no results in {folder}: run `python -m dsda reproduce --profile {profile}` first")
    lines: list[str] = []
    main = results.get("06_main_results", {}).get("numbers", {})
    rows = main.get("single", [])
    oracle = {r["task"]: r for r in rows if r["key"] == "retrain"}
    for key in ("dsda", "dsda_kd_head"):   # the paper's objective and our cpu default, every task they ran
        per_task = [(r["task"], r) for r in rows if r["key"] == key and r["task"] in oracle]
        if per_task:
            lines += [f"{per_task[0][1].get('method', key)} per task (test split): " + "; ".join(
                f"class {task.strip('[]')} A_f {r['A_f']:.2f} / A_r {r['A_r']:.2f} (oracle {oracle[task]['A_r']:.2f}), "
                f"ET {r['ET_s']:.0f} s" for task, r in per_task) + ".", ""]
    if main.get("table_single"):
        lines += ["**Table 1, forgetting one class** (mean ± std over tasks and seeds; `runs` = how many):", "",
                  main["table_single"], ""]
    if main.get("table_multi"):
        multi = next((r["task"] for r in main.get("multi", [])), "")
        lines += [f"**Table 2, forgetting classes {multi} at once:**", "", main["table_multi"], ""]
    lines += ["**Every claim of the paper we test, with our verdict** (also in `results/cpu/SUMMARY.md`):", "",
              "| notebook | claim | holds | evidence |", "|---|---|---|---|"]
    for name, r in results.items():
        for c in r.get("claims", []):
            evidence = str(c["evidence"]).replace("|", "\\|")
            lines.append(f"| {name[:2]} | {c['text']} | {'yes' if c['verdict'] else '**no**'} | {evidence} |")
    total = sum(float(r.get("wall_s", 0)) for r in results.values())
    lines += ["", "Wall time per notebook (the golden run): " + ", ".join(
        f"{n[:2]} {float(r.get('wall_s', 0)):.0f} s" for n, r in results.items()) + f"; total {total / 60:.1f} min."]
    return "\n".join(lines)


def update_readme(profile: str = "cpu", path: Path | None = None) -> Path:
    """Replace the README's generated results block (between README_BEGIN and README_END) in place."""
    path = Path(path) if path is not None else project_root() / "README.md"
    text = path.read_text()
    if text.count(README_BEGIN) != 1 or text.count(README_END) != 1 or text.index(README_BEGIN) > text.index(README_END):
        raise ValueError(f"{path} must contain the marker lines {README_BEGIN!r} and {README_END!r} once each, "
                         "in that order")
    head, rest = text.split(README_BEGIN)
    _, tail = rest.split(README_END)
    atomic_write_bytes(path, (head + README_BEGIN + "\n" + readme_results(profile) + "\n" + README_END + tail).encode())
    return path


def build_all(check: bool = False) -> int:
    """Build every notebook from notebooks/src (or, with check=True, report drift and return 1)."""
    srcs = sorted((notebooks_dir() / "src").glob("*.py"))
    problems: list[str] = []
    for src in srcs:
        dest = notebooks_dir() / f"{src.stem}.ipynb"
        if check:
            problems += drift(src, dest)
        elif build_notebook(src, dest):
            print(f"built {dest.relative_to(project_root())}")
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


def update_golden(only: Iterable[str] | None = None, timeout_s: int | None = None) -> None:
    """Re-execute notebooks in place on their default parameters (the `cpu` profile) to refresh the
    golden outputs nbval compares. Maintainers only: run it on a quiet machine, then commit."""
    import nbformat
    import papermill as pm
    for nb in series(only):
        t0 = time.perf_counter()
        tmp = nb.with_suffix(".running.ipynb")
        try:
            pm.execute_notebook(str(nb), str(tmp), kernel_name="python3", cwd=str(notebooks_dir()),
                                progress_bar=False, execution_timeout=timeout_s)
            out = nbformat.read(tmp, as_version=4)
        finally:
            tmp.unlink(missing_ok=True)
        atomic_write_bytes(nb, (nbformat.writes(out) + "\n").encode())
        # The kernel writes its own language_info and papermill its timings into the metadata: rebuilding
        # from the source keeps only the outputs, so the golden is byte for byte what `notebooks build`
        # writes (tests/test_notebook_sources.py checks that build changes nothing).
        build_notebook(notebooks_dir() / "src" / f"{nb.stem}.py", nb)
        print(f"golden {nb.name}: {time.perf_counter() - t0:.0f} s", flush=True)

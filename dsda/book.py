"""The series as a static book (`make book`, `python -m dsda book`): README, notebooks, docs and figures.

Sphinx with MyST-NB renders the committed notebooks from their stored outputs (`nb_execution_mode = "off"`:
nothing is executed) and the Markdown pages with MyST. We chose it over Jupyter Book 2 because Jupyter
Book 2's site builder fetches its theme over the network at build time, and the build must run offline;
Sphinx, MyST-NB and the book theme install from PyPI and build without the network.

1. `stage` copies the sources into a folder with the repository's layout, so every relative link of the
   README and of docs/ stays valid: the README becomes the landing page `index.md` (with the table of
   contents appended), each notebook a chapter, with the figures its run wrote (listed in
   `results/<profile>/<notebook>.json`) appended as a last Markdown cell, and docs/*.md and
   `RESULT_PAGES` (written by the code, linked from the README) the method and evidence pages.
2. `build` runs `sphinx-build -W` on it in a subprocess: a missing image or a link to a missing page is a
   warning, hence an error.
3. `check_site` then reads every built page and lists each local image or link that does not resolve
   (the file, and the anchor of a `#fragment`), which also catches raw HTML that Sphinx does not check,
   and every image, script or style sheet the page would load from the network (the book is read offline).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat

from .report import project_root

CONF = '''# written by dsda/book.py; the build must not need the network (no remote extensions or assets)
project = "dsda"
html_title = "dsda: source-free class unlearning, reproduced"
extensions = ["myst_nb"]
nb_execution_mode = "off"          # render the committed outputs; never execute
myst_heading_anchors = 3           # README-style #section links resolve
html_theme = "sphinx_book_theme"
html_theme_options = {"show_toc_level": 2}
exclude_patterns = ["_build"]
'''

# Markdown files the code writes under results/ that the README links to (each becomes a page)
RESULT_PAGES = ["results/tuning/SUMMARY.md"]


def figure_cell(notebook: Path, results: Path) -> str | None:
    """Markdown showing the figures the notebook's run wrote (paths relative to the staged notebook)."""
    record = results / f"{notebook.stem}.json"
    if not record.exists():
        return None
    figures = json.loads(record.read_text()).get("figures", [])
    if not figures:
        return None
    lines = ["## Figures of this run", ""]
    for fig in figures:
        caption = Path(fig).stem.removeprefix(notebook.stem + "_").replace("_", " ")
        lines += [f"![{caption}](../{fig})", "", f"*{caption}* (`{fig}`)", ""]
    return "\n".join(lines)


def _toctree(caption: str, entries: list[str]) -> str:
    return "\n".join(["", f"```{{toctree}}", ":hidden:", f":caption: {caption}", "", *entries, "```", ""])


def stage(dest: Path, root: Path | None = None, profile: str = "cpu") -> Path:
    """Copy README, notebooks (with their figures appended), docs and figures into `dest`; returns `dest`."""
    root = root or project_root()
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "notebooks").mkdir(parents=True)
    shutil.copytree(root / "docs", dest / "docs", ignore=shutil.ignore_patterns("*.py", "_*"))
    shutil.copytree(root / "figures", dest / "figures")
    chapters = []
    for nb_path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        cell = figure_cell(nb_path, root / "results" / profile)
        if cell:
            nb.cells.append(nbformat.v4.new_markdown_cell(cell))
        nbformat.write(nb, dest / "notebooks" / nb_path.name)
        chapters.append(f"notebooks/{nb_path.stem}")
    pages = [f"docs/{p.stem}" for p in sorted((root / "docs").glob("*.md"))]
    for page in RESULT_PAGES:          # the README links to them: they are pages of the book, at the same path
        if not (root / page).exists():  # not written yet: the README's link to it then fails the check
            continue
        (dest / page).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / page, dest / page)
        pages.append(page.removesuffix(".md"))
    index = (root / "README.md").read_text() + _toctree("Notebooks", chapters) + _toctree("Method and evidence", pages)
    (dest / "index.md").write_text(index)
    (dest / "conf.py").write_text(CONF)
    return dest


def build(src: Path, out: Path) -> subprocess.CompletedProcess:
    """sphinx-build -W (warnings are errors) from `src` into `out`; the result carries its output."""
    try:
        import myst_nb  # noqa: F401
        import sphinx_book_theme  # noqa: F401
    except ImportError as e:
        raise RuntimeError(f"the book needs Sphinx, MyST-NB and sphinx-book-theme ({e}); install them with "
                           "`pip install -e .[test]` (what `make book` does)") from e
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q", "-E", str(src), str(out)]
    return subprocess.run(cmd, capture_output=True, text=True)


class _Refs(HTMLParser):
    """The ids, the image sources and the link targets of one HTML page."""

    def __init__(self):
        super().__init__()
        self.ids, self.images, self.links, self.assets = set(), [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "img" and a.get("src"):
            self.images.append(a["src"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag == "script" and a.get("src"):
            self.assets.append(a["src"])
        if tag == "link" and a.get("href") and a.get("rel") in ("stylesheet", "icon", "preload"):
            self.assets.append(a["href"])


def _parse(page: Path) -> _Refs:
    refs = _Refs()
    refs.feed(page.read_text(errors="replace"))
    return refs


def _local(url: str) -> bool:
    parts = urlsplit(url)
    return not (parts.scheme or parts.netloc or url.startswith(("mailto:", "javascript:", "data:")))


def check_site(out: Path) -> list[str]:
    """Every local image, asset or link of every page in `out` that does not resolve, and every image, script
    or style sheet loaded from the network, as 'page: problem'."""
    # _static/ holds the theme's template fragments (Jinja, not pages)
    pages = {p.resolve(): _parse(p) for p in out.rglob("*.html") if "_static" not in p.relative_to(out).parts}
    problems = []
    for page, refs in sorted(pages.items()):
        name = page.relative_to(out.resolve())
        for url in refs.images + refs.assets:
            if not _local(url):
                problems.append(f"{name}: loads {url} from the network")
            elif not (page.parent / unquote(urlsplit(url).path)).resolve().is_file():
                problems.append(f"{name}: missing {'image' if url in refs.images else 'file'} {url}")
        for href in filter(_local, refs.links):
            problem = _link_problem(page, refs, href, pages)
            if problem:
                problems.append(f"{name}: {problem}")
    return problems


def _link_problem(page: Path, refs: _Refs, href: str, pages: dict[Path, _Refs]) -> str | None:
    parts = urlsplit(href)
    target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
    if target.is_dir():
        target = target / "index.html"
    if not target.exists():
        return f"broken link {href}"
    fragment = unquote(parts.fragment)
    if fragment and target in pages and fragment not in pages[target].ids:
        return f"link {href}: no anchor #{fragment} in {target.name}"
    return None


def make_book(out: Path | None = None, profile: str = "cpu", root: Path | None = None) -> tuple[Path, list[str]]:
    """Stage, build and check the book of `root` (default: this checkout) under `out` (default runs/book);
    returns (index.html, problems): Sphinx's warnings and errors, then check_site's findings."""
    out = Path(out) if out else project_root() / "runs" / "book"
    src, html = stage(out / "src", root=root, profile=profile), out / "html"
    result = build(src, html)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if re.search(r"WARNING|ERROR", line)]
    if result.returncode != 0 and not problems:
        problems = [f"sphinx-build exited {result.returncode}: {(result.stdout + result.stderr)[-2000:]}"]
    if html.exists():
        problems += check_site(html)
    return html / "index.html", problems

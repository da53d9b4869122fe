"""The static book (`make book`, dsda/book.py): it builds offline from the committed notebooks and docs, shows
every figure the notebooks' runs wrote, and a missing figure, a broken internal link or an asset loaded from
the network fails it."""
import json
from pathlib import Path

import nbformat

from dsda.book import RESULT_PAGES, check_site, make_book

ROOT = Path(__file__).resolve().parent.parent


def test_the_book_builds_and_every_figure_and_internal_link_resolves(built_book):
    index, problems = built_book
    assert problems == []
    html = index.parent
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        page = (html / "notebooks" / f"{nb.stem}.html").read_text()
        assert nb.stem in index.read_text(), f"the landing page links chapter {nb.stem}"
        for fig in json.loads((ROOT / "results" / "cpu" / f"{nb.stem}.json").read_text())["figures"]:
            assert f'src="../_images/{Path(fig).name}"' in page, f"{nb.stem} shows {fig}"
            assert (html / "_images" / Path(fig).name).stat().st_size > 1000
    for doc in sorted((ROOT / "docs").glob("*.md")):
        assert (html / "docs" / f"{doc.stem}.html").exists()
    for page in RESULT_PAGES:                    # linked from the README: a page of the book, not a dead link
        assert (html / page).with_suffix(".html").exists(), page
    assert "Table 1, forgetting one class" in index.read_text(), "the README (with its results tables) is the landing page"


def _page(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<html><body>{body}</body></html>")


def test_check_site_names_each_kind_of_problem(tmp_path):
    (tmp_path / "a.png").write_bytes(b"png")
    _page(tmp_path / "index.html", '<h1 id="top">x</h1><img src="a.png"><img src="gone.png">'
          '<a href="sub/page.html#here">ok</a><a href="sub/page.html#nowhere">bad anchor</a><a href="missing.html">x</a>'
          '<a href="https://example.org/">external links are fine</a><a href="#top">self</a>'
          '<script src="https://cdn.example.org/x.js"></script>')
    _page(tmp_path / "sub" / "page.html", '<p id="here"></p><a href="../index.html">up</a>')
    assert sorted(check_site(tmp_path)) == sorted([
        "index.html: missing image gone.png",
        "index.html: link sub/page.html#nowhere: no anchor #nowhere in page.html",
        "index.html: broken link missing.html",
        "index.html: loads https://cdn.example.org/x.js from the network"])


def test_a_missing_figure_or_a_broken_link_fails_the_build(tmp_path):
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "figures" / "cpu").mkdir(parents=True)
    (root / "results" / "cpu").mkdir(parents=True)
    (root / "notebooks").mkdir()
    (root / "README.md").write_text("# Tiny\n\nSee [the method](docs/METHOD.md).\n")
    (root / "docs" / "METHOD.md").write_text("# Method\n\nBack to [the notebook](../notebooks/00_x.ipynb) and "
                                              "[a page that does not exist](GONE.md).\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 00 · x")])
    nbformat.write(nb, root / "notebooks" / "00_x.ipynb")
    (root / "results" / "cpu" / "00_x.json").write_text(json.dumps({"figures": ["figures/cpu/00_x_plot.png"]}))
    _, problems = make_book(tmp_path / "out", root=root)
    text = "\n".join(problems)
    assert "00_x_plot.png" in text, text
    assert "GONE" in text, text

"""docs/EQUATIONS.md maps the paper onto the code; these tests keep the map and the code's citations honest.

Reference syntax on the page (the only one): a backticked `dsda/<path>.py: <name>`, where <name> is an
attribute of that module or a dotted attribute of one (`Class.method`). Every such reference must import;
every paper label (Eq. N, Alg. N line N, Theorem N.N, Fig. N, Table N) that the method and evaluation code
cites must appear on the page; and no file cites a document that is not in the repository.
"""
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "EQUATIONS.md"

REF = re.compile(r"`(dsda/[\w/]+\.py): ([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)`")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
PATH_SPAN = re.compile(r"(?:dsda|tests|benchmarks|notebooks|docs)/[\w./-]+\.(?:py|ipynb|md)")
# a reference in another syntax: `dsda.module.name`, or a `...py:` span that REF does not accept
DOTTED_SPAN = re.compile(r"dsda(?:\.\w+)+")
EXEMPT_SECTIONS = ("How to read this page", "Notation")   # the only sections that name no code
TEMPLATE = "dsda/<path>.py: <name>"                        # the page spells the syntax out once

NUMS = r"\d+(?:\s*(?:-|–|,|and)\s*\d+)*"                  # 5 | 5-6 | 9, 13 | 9 and 13
LABEL_PATTERNS = (   # (pattern, canonical spelling, whether group 1 is a list of numbers)
    (re.compile(rf"\bEqs?\.\s*({NUMS})"), "Eq. {}", True),
    (re.compile(r"\bAlg(?:\.|orithm)\s*(\d+)"), "Alg. {}", False),
    (re.compile(rf"\bAlg(?:\.|orithm)\s*1,?\s+lines?\s+({NUMS})"), "Alg. 1 line {}", True),
    (re.compile(r"\b(?:Thm\.?|Theorem)\s*(\d+\.\d+)"), "Theorem {}", False),
    (re.compile(rf"\bFig(?:s?\.|ures?)\s*({NUMS})"), "Fig. {}", True),
    (re.compile(rf"\bTables?\s+({NUMS})"), "Table {}", True),
)
# Code comments number the paper's items; the baselines' comments number the baselines' own papers.
METHOD_CODE_EXTRA = ("dsda/baselines/dsda_method.py",)

# Citations of a document outside the repository: "digest §3.4", "the digest", "(digest: ...)", the file's
# name. The word as a SHA digest ("SHA-256 digest", "a digest of the weights", state_digest, hexdigest) is fine.
CITES_OUTSIDE = re.compile(
    r"digest\s*§"
    r"|\b(?:the|paper'?s?|our)\s+digest\b(?!\s+of\b)"
    r"|\(\s*digest\b(?!\s+of\b)"
    r"|paper_digest",
    re.IGNORECASE)
SCANNED_DIRS = ("dsda", "benchmarks", "tests", "docs", "notebooks/src")


def _page() -> str:
    assert PAGE.is_file(), "docs/EQUATIONS.md is missing"
    return PAGE.read_text(encoding="utf-8")


def _numbers(text: str) -> list[int]:
    """'5' -> [5]; '9, 13' and '9 and 13' -> [9, 13]; '7-13' -> [7, 8, ..., 13]."""
    out = []
    for part in re.split(r"\s*(?:,|\band\b)\s*", text):
        ends = [int(n) for n in re.split(r"\s*[-–]\s*", part)]
        out += range(ends[0], ends[-1] + 1)
    return out


def paper_labels(text: str) -> set[str]:
    """Every paper label cited in `text`, in the page's canonical spelling."""
    labels = set()
    for pattern, fmt, is_list in LABEL_PATTERNS:
        for m in pattern.finditer(text):
            labels.update(fmt.format(n) for n in (_numbers(m.group(1)) if is_list else [m.group(1)]))
    return labels


def _method_code() -> list[Path]:
    files = [p for p in (ROOT / "dsda").rglob("*.py") if "baselines" not in p.relative_to(ROOT / "dsda").parts]
    return sorted(files) + [ROOT / f for f in METHOD_CODE_EXTRA]


def _sections(page: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", page, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2]))


# ----------------------------------------------------------------------------- the page's references

def test_label_extraction_reads_ranges_lists_and_both_theorem_spellings():
    text = "Eqs. 5-6; Eq. 10, Alg. 1 lines 7-9 and Alg. 1 line 13 (Alg. 1, the scale), Thm 3.3, Fig. 4, Table 2"
    assert paper_labels(text) == {"Eq. 5", "Eq. 6", "Eq. 10", "Alg. 1", "Alg. 1 line 7", "Alg. 1 line 8",
                                  "Alg. 1 line 9", "Alg. 1 line 13", "Theorem 3.3", "Fig. 4", "Table 2"}
    assert paper_labels("Alg. 1 lines 9 and 13, Theorem 3.2") == {"Alg. 1", "Alg. 1 line 9", "Alg. 1 line 13",
                                                                   "Theorem 3.2"}


def test_every_reference_on_the_page_imports():
    refs = REF.findall(_page())
    assert len({path for path, _ in refs}) >= 8 and len(refs) >= 60, "the page should map items to code"
    missing = []
    for path, name in sorted(set(refs)):
        if not (ROOT / path).is_file():
            missing.append(f"{path} (no such file)")
            continue
        module = importlib.import_module(path[:-3].replace("/", "."))
        obj = module
        for part in name.split("."):
            if not hasattr(obj, part):
                missing.append(f"{path}: {name}")
                break
            obj = getattr(obj, part)
    assert not missing, f"docs/EQUATIONS.md names code that does not exist: {missing}"


def test_references_use_the_one_syntax_and_paths_exist():
    bad, absent = [], []
    for span in CODE_SPAN.findall(_page()):
        if (".py:" in span and span != TEMPLATE and not REF.fullmatch(f"`{span}`")) or DOTTED_SPAN.fullmatch(span):
            bad.append(span)
        for path in PATH_SPAN.findall(span):
            if not (ROOT / path).exists():
                absent.append(path)
    bad += re.findall(r"`dsda/[^`]*\n[^`]*`", _page())   # a reference broken over two lines is not read
    assert not bad, f"write code references as `dsda/<path>.py: <name>` on one line, got {bad}"
    assert not absent, f"docs/EQUATIONS.md names files that do not exist: {absent}"


def test_every_section_names_the_code_that_implements_it():
    sections = _sections(_page())
    assert len(sections) >= 15
    bare = [title for title, body in sections.items() if title not in EXEMPT_SECTIONS and not REF.search(body)]
    assert not bare, f"sections without a code reference: {bare}"


def test_every_paper_label_the_code_cites_is_on_the_page():
    page = _page()
    cited: dict[str, set[str]] = {}
    for path in _method_code():
        for label in paper_labels(path.read_text(encoding="utf-8")):
            cited.setdefault(label, set()).add(str(path.relative_to(ROOT)))
    # the extraction itself must work, or this test would pass on nothing
    assert {"Eq. 1", "Eq. 3", "Eq. 7", "Eq. 10", "Alg. 1 line 9", "Alg. 1 line 13", "Theorem 3.3"} <= set(cited)
    missing = {label: sorted(files) for label, files in cited.items()
               if not re.search(re.escape(label) + r"(?!\d)", page)}   # "Eq. 1" must not be found in "Eq. 10"
    assert not missing, f"labels cited in the code but absent from docs/EQUATIONS.md: {missing}"


def test_section_pointers_in_the_code_name_sections_of_the_page():
    """A comment `docs/EQUATIONS.md, "Name"` must point at a heading that contains Name."""
    headings = re.findall(r"^#+ (.+)$", _page(), flags=re.MULTILINE)
    pointer = re.compile(r'docs/EQUATIONS\.md, "([^"]+)"')
    found, dangling = 0, []
    for path in _method_code():
        for name in pointer.findall(path.read_text(encoding="utf-8")):
            found += 1
            if not any(name in h for h in headings):
                dangling.append(f"{path.relative_to(ROOT)}: {name!r}")
    assert found >= 3 and not dangling, dangling


# ----------------------------------------------------------------------------- no citation outside the repo

@pytest.mark.parametrize("text", [
    "(digest §6.4)", "see digest § 3.4", "The digest gives no threshold", "no value in the digest",
    "(digest: about 100 %)", "the paper's digest says", "../shared/reference/dsda_paper_digest.md",
])
def test_outside_citation_pattern_catches_citations(text):
    assert CITES_OUTSIDE.search(text)


@pytest.mark.parametrize("text", [
    "SHA-256 (dsda.train.state_digest) of the weights", "a digest of today's weights",
    "the digest of the weights", "h.hexdigest()[:16]", "digest = input_digest(nb, params)",
    "CPU_DEFAULT_CLASS3_DIGEST", "(digest of the state dict)", "manifest.get(nb.stem) == digest",
])
def test_outside_citation_pattern_allows_sha_digests(text):
    assert not CITES_OUTSIDE.search(text)


def _citing_files() -> dict[str, list[int]]:
    out = {}
    for d in SCANNED_DIRS:
        for path in sorted((ROOT / d).rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts or path == Path(__file__).resolve():
                continue   # this file spells the patterns it looks for
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue   # binary
            lines = [i for i, line in enumerate(text.splitlines(), 1) if CITES_OUTSIDE.search(line)]
            if lines:
                out[str(path.relative_to(ROOT))] = lines
    return out


def test_no_file_cites_a_document_outside_the_repository():
    citing = _citing_files()
    assert not citing, ("cite the paper's own numbering (§, Eq., Alg., Table, Fig.) or docs/EQUATIONS.md, "
                        f"not a document outside the repository: {citing}")

"""What every notebook does at its start and end: evidence header, results JSON, figures, claims.

    run = report.start("02_accelerated_synthesis", profile="cpu", params=dict(...))   # prints the header
    ...
    run.figure(fig, "sampler_traces")          # figures/<profile>/02_accelerated_synthesis_sampler_traces.png
    run.claim("AEGDS needs <= 1/3 of SGLD's NFE to reach E <= 0.05", ratio <= 1/3, f"ratio {ratio:.2f}")
    run.print_claims()                          # the deterministic lines nbval compares
    run.save(numbers)                           # results/<profile>/02_accelerated_synthesis.json

Outputs go under $DSDA_OUTPUT_DIR when set (the test suite points it at a temporary folder so that
running the tests never rewrites the committed results), else under the project root.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .utils import atomic_write_bytes, atomic_write_json, provenance, resolve_device


def project_root() -> Path:
    """The source checkout holding this package, else the current folder."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").exists() else Path.cwd()


def output_root() -> Path:
    env = os.environ.get("DSDA_OUTPUT_DIR")
    return Path(env) if env else project_root()


def results_path(profile: str, name: str) -> Path:
    return output_root() / "results" / profile / f"{name}.json"


def figure_path(profile: str, name: str) -> Path:
    return output_root() / "figures" / profile / f"{name}.png"


@dataclass
class Claim:
    text: str           # the paper's claim as we test it, with its threshold
    verdict: bool       # does it hold in our measurement?
    evidence: str       # the rounded numbers behind the verdict

    def line(self) -> str:
        return f"claim: {self.text} ... {'True' if self.verdict else 'False'} ({self.evidence})"


@dataclass
class Run:
    notebook: str
    profile: str
    params: dict[str, Any]
    device: str = "auto"
    started: float = field(default_factory=time.perf_counter)
    claims: list[Claim] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)

    def header(self) -> str:
        dev = resolve_device(self.device)
        prov = provenance(dev)
        return (f"notebook {self.notebook} | profile {self.profile} | device {prov['device_name']} | "
                f"torch {prov['versions']['torch']} | python {platform.python_version()} | "
                f"commit {prov['git_commit'][:12]} | {prov['timestamp']}")

    def figure(self, fig, name: str, dpi: int = 110) -> None:
        """Save `fig` as PNG and close it (no `<Figure ...>` repr in the notebook). Returns None, so a
        cell ending with this call shows no output; the path is in `self.figures`."""
        import io

        import matplotlib.pyplot as plt
        path = figure_path(self.profile, f"{self.notebook}_{name}")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        plt.close(fig)
        atomic_write_bytes(path, buf.getvalue())
        self.figures.append(str(path.relative_to(output_root())))

    def claim(self, text: str, verdict: bool, evidence: str) -> Claim:
        c = Claim(text, bool(verdict), evidence)
        self.claims.append(c)
        return c

    def print_claims(self) -> None:
        for c in self.claims:
            print(c.line())

    @property
    def wall_s(self) -> float:
        return time.perf_counter() - self.started

    def save(self, numbers: dict[str, Any]) -> Path:
        payload = {"notebook": self.notebook, "profile": self.profile, "params": self.params,
                   "wall_s": round(self.wall_s, 1), "provenance": provenance(resolve_device(self.device)),
                   "claims": [c.__dict__ for c in self.claims], "figures": self.figures, "numbers": numbers}
        return atomic_write_json(results_path(self.profile, self.notebook), payload)


def start(notebook: str, profile: str, params: dict[str, Any], device: str = "auto",
          threads: int | None = None) -> Run:
    """Begin a notebook run: fix the thread count (results depend on it on CPU) and print the header."""
    if threads:
        torch.set_num_threads(int(threads))
    run = Run(notebook, profile, dict(params), device)
    print(run.header())
    return run


def notebook_profile(profile: str, dataset: str | None = None, model: str | None = None,
                     device: str | None = None):
    """The Profile a notebook runs on: the named profile with the notebook's `dataset`, `model` and
    `device` parameters applied (None keeps the profile's own). Checkpoints are cached by the full
    config, so an override never reuses a model trained for another data set or architecture."""
    import dataclasses

    from .data import dataset_info
    from .models import MODEL_NAMES
    from .profiles import get_profile
    from .utils import check_choice
    p = get_profile(profile)
    changes: dict[str, Any] = {}
    if dataset is not None and dataset != p.dataset:
        dataset_info(dataset)  # raises naming the allowed data sets
        changes["dataset"] = dataset
    if model is not None and model != p.model:
        check_choice("model", model, MODEL_NAMES)
        changes["model"] = model
    if device is not None and device != p.device:
        resolve_device(device)
        changes["device"] = device
    return dataclasses.replace(p, **changes) if changes else p


def markdown_table(rows: list[dict[str, Any]] | Any) -> str:
    """A GitHub Markdown table from a list of dicts or a pandas DataFrame (no `tabulate` dependency)."""
    if hasattr(rows, "to_dict"):
        rows = rows.to_dict("records")
    rows = list(rows)
    if not rows:
        return ""
    cols = list(rows[0])
    cell = lambda v: f"{v:.2f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def budget(notebook: str, profile: str) -> dict[str, Any]:
    """A notebook's budget for a profile (dsda/budgets.py): its own entry, or `paper`'s for `paper-*` (a copy)."""
    import copy

    from .budgets import NOTEBOOK_BUDGETS
    from .recipes import profile_family
    from .utils import check_choice
    check_choice("notebook", notebook, NOTEBOOK_BUDGETS)
    return copy.deepcopy(NOTEBOOK_BUDGETS[notebook][profile_family(profile)])

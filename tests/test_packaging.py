"""The two dependency lists (pip, with its test and book extras, and conda) must name the same packages with the
same lower bounds."""
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"pytorch": "torch"}  # conda spells a few packages differently


def _split(spec: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", spec)
    assert m, spec
    return m.group(1).lower(), m.group(2).replace(" ", "")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    pip = dict(_split(s) for s in project["dependencies"] + extras["test"] + extras["book"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {}
    for spec in env["dependencies"]:
        if not isinstance(spec, str):
            continue
        name, bound = _split(spec)
        if name in ("python", "pip"):
            continue
        conda[CONDA_NAMES.get(name, name)] = bound
    assert conda == pip


def test_python_requirement_agrees():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    py = [s for s in env["dependencies"] if isinstance(s, str) and s.startswith("python")]
    assert py == ["python" + project["requires-python"]]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make reproduce" in readme
    commands = [line.strip() for line in ci.splitlines() if line.strip() and not line.startswith("#")
                and not line.startswith(("set ", "cd "))]
    assert commands == ["make test"]


def test_cli_help_runs():
    out = subprocess.run([sys.executable, "-m", "dsda", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "prepare-data" in out.stdout


def test_cli_rejects_unknown_profile():
    out = subprocess.run([sys.executable, "-m", "dsda", "train", "--profile", "nope"], capture_output=True,
                         text=True, cwd=ROOT)
    assert out.returncode != 0 and "--profile" in out.stderr and "cpu" in out.stderr

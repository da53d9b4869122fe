"""Test-session set-up shared by unit tests and the nbval notebook run (collected from the repo root).

- Notebook and benchmark outputs go to a temporary folder ($DSDA_OUTPUT_DIR), so running the tests
  never rewrites the committed results/ and figures/; notebook kernels inherit the variable.
- Progress bars are off; matplotlib draws off-screen.
- nbval compares only cells marked `# NBVAL_CHECK_OUTPUT`; stderr and HTML are never compared.
"""
import os
import tempfile

os.environ.setdefault("DSDA_OUTPUT_DIR", tempfile.mkdtemp(prefix="dsda-test-outputs-"))
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_collectstart(collector):
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("text/html", "application/javascript", "stderr",
                                   "application/vnd.jupyter.widget-view+json")

"""The teaching panel of notebook 07 (`interactive = True`): controls, a Run button, progress, a live grid of
synthetic samples and a readout of A_f, A_r, MIA and the gap to the retrained model.

The notebook keeps the work in its own `explore` function (so a class reads it there); this module only
wires widgets to it. `explore(forget, sampler, nfe, n_per_class, steps, alpha, recipe, on_synthetic, on_check)`
must return (summary, figure, unlearned model); it calls `on_synthetic(x, y)` once stage 1 has its images
and `on_check(step)` at each DAMO check, which is what moves the progress bar and draws the grid before
DAMO has finished.

The readout measures with `dsda.evaluate` (full test split; train-split subsets for the MIA). The retrained
model is only *loaded*: when no checkpoint of it is cached or shipped (`dsda.train.find_checkpoint`), the
readout says so and how to train one, instead of training it for minutes inside a class.
"""
from __future__ import annotations

import html
import io
import time
from typing import Any, Callable

import ipywidgets as widgets

from .metrics import evaluate
from .profiles import Profile
from .recipes import PROFILE_RECIPE, RECIPES, profile_family
from .sampler import DEFAULT_ALPHA, SAMPLERS
from .train import find_checkpoint, model_config, retrain_model

READOUT_KEYS = ("A_f", "A_r", "MIA")     # the metrics the panel shows (percent)
PROGRESS = {"synthesis": 30, "damo": 80, "done": 100}   # where each stage ends on the bar (of 100)


def recipes_for(profile: str | Profile) -> list[str]:
    """The registered recipes sized for this profile's family (cpu: cpu-*, smoke: smoke*, paper: paper*), and the
    recipes that this family's tuning studies registered (cpu: val-*, tuned on cpu-val; dsda/tune/spaces.py)."""
    from .tune.spaces import STUDIES
    family = profile_family(profile)
    tuned = {s.registers for s in STUDIES.values() if s.family == family and s.kind == "dsda"}
    return sorted(n for n in RECIPES if n == family or n.startswith(family + "-") or n in tuned)


def gaps(metrics: dict[str, Any], reference: dict[str, Any], keys=READOUT_KEYS) -> dict[str, float]:
    """`gap_<key>` = metric minus the retrained model's, for the readout's keys (dsda.distance.signed_gaps, the
    definition `evaluate(..., reference=)` uses)."""
    from .distance import signed_gaps
    return signed_gaps(metrics, reference, keys)


def oracle_if_cached(profile: Profile, forget: list[int], seed: int):
    """The retrained model for `forget` when a checkpoint is cached or shipped (loaded, never trained), else None."""
    if find_checkpoint(profile, model_config(profile, seed, forget)) is None:
        return None
    return retrain_model(profile, forget, seed=seed, progress=False)


def png_bytes(fig) -> bytes:
    """The figure as PNG bytes (for an ipywidgets.Image); the figure is closed."""
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _fmt(v: float | None, signed: bool = False) -> str:
    return "–" if v is None else (f"{v:+.1f}" if signed else f"{v:.1f}")


def readout_html(config: dict[str, Any], before: dict, after: dict | None, oracle: dict | None, note: str) -> str:
    """The readout table: each metric for the original, the unlearned and the retrained model, and the gap
    (`after["gap_<key>"]`, as `gaps` or `evaluate(..., reference=)` put it there)."""
    after = after or {}
    rows = "".join(
        f"<tr><td>{k}</td><td>{_fmt(before.get(k))}</td><td>{_fmt(after.get(k))}</td>"
        f"<td>{_fmt((oracle or {}).get(k))}</td><td>{_fmt(after.get('gap_' + k), signed=True)}</td></tr>"
        for k in READOUT_KEYS)
    what = ", ".join(f"{k} {v}" for k, v in config.items())
    return (f"<div><b>Readout</b> ({html.escape(what)})<table>"
            "<tr><th>metric (%)</th><th>original</th><th>after unlearning</th><th>retrained</th>"
            f"<th>gap to retrained</th></tr>{rows}</table><p>{html.escape(note)}</p></div>")


def show_image(ax, x, info) -> None:
    """One normalised image on `ax`, back in [0, 1] pixels (gray for one channel)."""
    import torch
    mean = torch.tensor(info.mean).view(-1, 1, 1)
    std = torch.tensor(info.std).view(-1, 1, 1)
    img = (x.detach().cpu() * std + mean).clamp(0, 1).numpy()
    if img.shape[0] == 1:
        ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(img.transpose(1, 2, 0))
    ax.set_xticks([]), ax.set_yticks([])


def sample_grid(x, y, info, forget: list[int], n_show: int = 4):
    """A figure of `n_show` synthetic images per class (columns), forget classes titled in red."""
    import matplotlib.pyplot as plt
    k = int(info.num_classes)
    n_show = max(1, min(n_show, int((y == 0).sum())))
    fig, axes = plt.subplots(n_show, k, figsize=(0.75 * k, 0.8 * n_show + 0.3), squeeze=False)
    for c in range(k):
        xc = x[y == c]
        for j in range(n_show):
            show_image(axes[j][c], xc[j], info)
        axes[0][c].set_title(info.class_names[c][:8], fontsize=7, color="tab:red" if c in forget else "k")
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return fig


class Playground:
    """The widgets of notebook 07 around its `explore` function; `display(Playground(...).widget)`."""

    def __init__(self, explore: Callable, profile: Profile, info, original, forget: list[int], sampler: str,
                 budget: dict[str, Any], seed: int = 0, alpha: float | None = None, recipe: str | None = None):
        """The controls start at `forget`, `sampler`, the notebook's budget (nfe, n_per_class, steps), `alpha`
        (None: the sampler's default) and `recipe` (None: the profile's)."""
        self.explore, self.profile, self.info, self.original, self.seed = explore, profile, info, original, seed
        self._metrics_cache: dict[tuple, dict | None] = {}
        self.controls = self._controls(forget, sampler, budget)
        if alpha is not None:
            self.controls["alpha"].value = alpha
        if recipe is not None:
            self.controls["recipe"].value = recipe
        self.button = widgets.Button(description="Run", button_style="primary", icon="play")
        self.progress = widgets.IntProgress(value=0, min=0, max=100, description="progress")
        self.status = widgets.Label("press Run")
        # hidden until they hold a picture (an empty image shows as a broken one)
        self.grid = widgets.Image(format="png", layout=widgets.Layout(max_width="520px", display="none"))
        self.figure = widgets.Image(format="png", layout=widgets.Layout(max_width="900px", display="none"))
        self.readout = widgets.HTML(self._waiting_note())
        for w, name in ((self.button, "run"), (self.progress, "progress"), (self.status, "status"),
                        (self.grid, "grid"), (self.readout, "readout"), (self.figure, "figure")):
            w.add_class(f"dsda-{name}")
        self.button.on_click(self.run)
        self.controls["sampler"].observe(self._sampler_changed, names="value")
        self.controls["forget"].observe(lambda _: setattr(self.readout, "value", self._waiting_note()), names="value")
        self.widget = self._layout()

    def _controls(self, forget: list[int], sampler: str, budget: dict[str, Any]) -> dict[str, widgets.Widget]:
        family = profile_family(self.profile)
        c = {
            "forget": widgets.SelectMultiple(options=[(n, i) for i, n in enumerate(self.info.class_names)],
                                             value=tuple(forget), description="forget", rows=6),
            "sampler": widgets.Dropdown(options=list(SAMPLERS), value=sampler, description="sampler"),
            "nfe": widgets.IntSlider(value=budget["nfe"], min=4, max=200, step=2, description="NFE"),
            "alpha": widgets.FloatLogSlider(value=DEFAULT_ALPHA[sampler], base=10, min=-2, max=3, step=0.1,
                                            description="step size"),
            "n_per_class": widgets.IntSlider(value=budget["n_per_class"], min=4, max=256, step=4,
                                             description="images/class"),
            "steps": widgets.IntSlider(value=budget["steps"], min=10, max=1000, step=10, description="DAMO steps"),
            "recipe": widgets.Dropdown(options=recipes_for(self.profile), value=PROFILE_RECIPE[family],
                                       description="DAMO recipe"),
        }
        for name, w in c.items():
            w.add_class(f"dsda-{name}")
            w.style.description_width = "90px"    # the labels in full ("images/class", "DAMO recipe")
        return c

    def _layout(self) -> widgets.Widget:
        c = self.controls
        knobs = widgets.HBox([c["forget"], widgets.VBox([c["sampler"], c["nfe"], c["alpha"]]),
                              widgets.VBox([c["n_per_class"], c["steps"], c["recipe"]])])
        return widgets.VBox([knobs, widgets.HBox([self.button, self.progress, self.status]),
                             widgets.HBox([self.grid, self.readout]), self.figure])

    def _sampler_changed(self, change) -> None:
        # each sampler has its own measured best step size (dsda/sampler.py): start from it
        self.controls["alpha"].value = DEFAULT_ALPHA[change["new"]]

    def config(self) -> dict[str, Any]:
        """The controls' values, as explore's keyword arguments."""
        cfg = {k: w.value for k, w in self.controls.items()}
        cfg["forget"] = sorted(int(i) for i in cfg["forget"])
        return cfg

    def _oracle_note(self, forget: list[int]) -> str:
        if find_checkpoint(self.profile, model_config(self.profile, self.seed, forget)) is not None:
            return f"retrained model without classes {forget}: cached or shipped (loaded, not trained)"
        return (f"no retrained model without classes {forget} is cached or shipped, so there is no gap to show; "
                f"train one first (minutes on the cpu profile): python -m dsda train --profile "
                f"{self.profile.name} " + " ".join(f"--forget {c}" for c in forget))

    def _waiting_note(self) -> str:
        forget = self.config()["forget"] if hasattr(self, "controls") else []
        note = self._oracle_note(forget) if forget else "pick at least one class to forget"
        return f"<div><b>Readout</b>: press Run to measure A_f, A_r, MIA (dsda.evaluate). {html.escape(note)}</div>"

    def _metrics(self, kind: str, forget: list[int]) -> dict | None:
        """evaluate() of the original or the retrained model for `forget`, once per forget set (None: no oracle)."""
        key = (kind, tuple(forget))
        if key not in self._metrics_cache:
            model = self.original if kind == "original" else oracle_if_cached(self.profile, forget, self.seed)
            self._metrics_cache[key] = None if model is None else evaluate(model, self.profile, forget)
        return self._metrics_cache[key]

    def _on_synthetic(self, forget: list[int]) -> Callable:
        def show(x, y):
            self.grid.value, self.grid.layout.display = png_bytes(sample_grid(x, y, self.info, forget)), ""
            self.progress.value = PROGRESS["synthesis"]
            self.status.value = "stage 2: DAMO ..."
        return show

    def _on_check(self, steps: int) -> Callable:
        def check(step: int):
            span = PROGRESS["damo"] - PROGRESS["synthesis"]
            self.progress.value = PROGRESS["synthesis"] + int(span * min(step, steps) / steps)
            self.status.value = f"stage 2: DAMO step {step} / at most {steps}"
        return check

    def run(self, _=None) -> dict[str, Any] | None:
        """The Run button: explore with the controls' values, then the readout. Returns the readout's numbers."""
        cfg = self.config()
        if not cfg["forget"]:
            self.status.value = "pick at least one class to forget"
            return None
        self.button.disabled, self.progress.bar_style, t0 = True, "", time.perf_counter()
        self.progress.value, self.status.value = 0, "stage 1: synthesising images from the model ..."
        try:
            return self._run(cfg, t0)
        except Exception as e:   # a handler's exception would only reach the kernel log: show it here
            self.progress.bar_style, self.status.value = "danger", f"error: {type(e).__name__}: {e}"
            raise
        finally:
            self.button.disabled = False

    def _run(self, cfg: dict[str, Any], t0: float) -> dict[str, Any]:
        forget = cfg["forget"]
        summary, fig, model = self.explore(**cfg, on_synthetic=self._on_synthetic(forget),
                                           on_check=self._on_check(cfg["steps"]))
        self.figure.value, self.figure.layout.display = png_bytes(fig), ""
        self.progress.value, self.status.value = PROGRESS["damo"], "measuring (dsda.evaluate) ..."
        before, oracle = self._metrics("original", forget), self._metrics("oracle", forget)
        after = evaluate(model, self.profile, forget)
        if oracle is not None:   # when evaluate(..., reference=oracle) lands: that call replaces these two lines
            after.update(gaps(after, oracle))
        note = self._oracle_note(forget) + (f"; {summary['damo_steps']} DAMO steps, stop: {summary['stop_reason']}, "
                                            f"{time.perf_counter() - t0:.1f} s in all")
        self.readout.value = readout_html(cfg, before, after, oracle, note)
        self.progress.value, self.progress.bar_style = PROGRESS["done"], "success"
        self.status.value = f"done in {time.perf_counter() - t0:.1f} s"
        return {"before": before, "after": after, "oracle": oracle, "summary": summary}

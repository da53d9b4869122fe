"""Goal-sized synthesis (dsda/chains.py): chains that reach SamplerConfig.target_energy stop and leave the batch.

Analytic reference: the energy E(x) = |x|^2 / 2 with the score s = -x, deterministic steps (temperature 0) and a
constant step a. SGLD then gives x_i = (1 - a)^i x_0, so E(x_i) = (1 - a)^(2i) E(x_0): the step at which a chain
first has E <= target, and so its sample and its NFE, follow by hand. Fast: well under a second, plus one tiny
model synthesis.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from dsda.models import Classifier
from dsda.sampler import SamplerConfig, run_chains
from dsda.synthesis import synthesize

A = 0.5              # (1 - a) = 1/2: E shrinks by 4 per SGLD step
TARGET = 0.01


def quadratic_score(x, rows=None):
    return -x, 0.5 * (x ** 2).sum(1), None


def _first_step(e0: float, cap_steps: int) -> int | None:
    """The first i with E(x_i) = e0 / 4^i <= TARGET, or None within `cap_steps` steps (x_0 .. x_{cap-1} are scored)."""
    return next((i for i in range(cap_steps) if e0 / 4 ** i <= TARGET), None)


def _cfg(sampler="sgld", nfe=12, target=TARGET, **kw):
    return SamplerConfig(sampler=sampler, nfe=nfe, alpha=A, schedule="constant", temperature=0.0, clamp=False,
                         target_energy=target, device="cpu", diag_every=1, **kw)


@pytest.mark.parametrize("nfe", [12, 6])
def test_sgld_chains_stop_at_the_first_state_below_the_target(nfe):
    x0 = torch.tensor([[0.1], [1.0], [10.0], [3.0]], dtype=torch.float64)
    x, rec = run_chains(quadratic_score, x0, _cfg(nfe=nfe), torch.Generator().manual_seed(0))
    want_x, want_nfe = [], []
    for v in x0[:, 0].tolist():
        i = _first_step(v * v / 2, nfe)                   # SGLD: one evaluation per step
        want_x.append(v * (1 - A) ** (nfe if i is None else i))
        want_nfe.append(nfe if i is None else i + 1)      # the evaluation at x_i that showed it done counts
    torch.testing.assert_close(x[:, 0], torch.tensor(want_x, dtype=torch.float64), rtol=0, atol=1e-12)
    assert rec["sample_nfe"].tolist() == want_nfe
    assert rec["nfe_spent"][-1] == pytest.approx(np.mean(want_nfe))
    e_final = [0.5 * v * v for v in want_x]
    assert rec["energy"][-1] == pytest.approx(np.mean(e_final))   # retired chains count at their final state
    assert rec["nfe"][-1] == nfe and rec["step"][-1] == nfe


def test_aegds_spends_two_evaluations_per_step_and_the_one_that_stops_it():
    x0 = torch.tensor([[0.1], [1.0], [10.0]], dtype=torch.float64)
    x, rec = run_chains(quadratic_score, x0, _cfg(sampler="aegds", nfe=40), torch.Generator().manual_seed(0))
    e = 0.5 * x[:, 0] ** 2
    assert rec["sample_nfe"][0] == 1                      # below the target at x_0: one evaluation
    assert all(n % 2 == 1 for n in rec["sample_nfe"])     # 2 i + 1
    assert bool((e <= TARGET).all()) and rec["nfe_spent"][-1] == pytest.approx(rec["sample_nfe"].mean())


def test_mean_nfe_spent_per_record_by_hand():
    x0 = torch.tensor([[0.1], [1.0]], dtype=torch.float64)   # stops at x_0 (1 NFE) and at x_3 (4 NFE)
    _, rec = run_chains(quadratic_score, x0, _cfg(nfe=6), torch.Generator().manual_seed(0))
    # records at x_0 .. x_5, then the returned samples: the moving chain has spent i, the retired one 1
    assert rec["step"].tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert rec["nfe_spent"].tolist() == pytest.approx([0.0, 1.0, 1.5, 2.0, 2.5, 2.5, 2.5])


def test_without_a_target_every_chain_spends_the_budget():
    x0 = torch.tensor([[0.1], [1.0]], dtype=torch.float64)
    x, rec = run_chains(quadratic_score, x0, _cfg(nfe=6, target=None), torch.Generator().manual_seed(0))
    assert rec["sample_nfe"].tolist() == [6, 6] and rec["nfe_spent"].tolist() == rec["nfe"].tolist()
    torch.testing.assert_close(x[:, 0], x0[:, 0] * (1 - A) ** 6, rtol=0, atol=1e-12)


def test_every_chain_done_before_the_cap_leaves_the_loop_idle():
    x0 = torch.full((3, 1), 0.05, dtype=torch.float64)
    calls = []
    _, rec = run_chains(lambda x, rows=None: calls.append(len(x)) or quadratic_score(x), x0, _cfg(nfe=20),
                        torch.Generator().manual_seed(0))
    assert calls == [3] and rec["sample_nfe"].tolist() == [1, 1, 1]   # no evaluation after all retired


def tiny_model(num_classes=4):
    """A one-layer model whose weights are large enough that some chains reach E <= 0.3 within 40 NFE, some not."""
    torch.manual_seed(0)
    model = Classifier([nn.Sequential(nn.Conv2d(1, 8, 6), nn.ReLU())], 8, num_classes, (1, 6, 6), (-1.0, 1.0))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4.0)
    return model.eval()


def test_model_synthesis_with_a_target_reports_nfe_per_class_and_meets_it():
    model = tiny_model()
    syn = synthesize(model, [0, 1, 2, 3], 6, nfe=40, alpha=1.0, target_energy=0.3, seed=1, device="cpu")
    d = syn.diagnostics
    with torch.no_grad():
        e = -torch.log_softmax(model(syn.x), 1).gather(1, syn.y[:, None])[:, 0]
    capped = torch.as_tensor(d.sample_nfe) == 40
    assert bool(((e <= 0.3 + 1e-6) | capped).all())                # each chain met the target or hit the cap
    assert 0 < int(capped.sum()) < len(capped)                      # both kinds occur here
    assert set(d.nfe_per_class) == {0, 1, 2, 3}
    for c, v in d.nfe_per_class.items():
        assert v == pytest.approx(float(d.sample_nfe[syn.y.numpy() == c].mean()))
    assert d.final["nfe_spent"] == pytest.approx(float(d.sample_nfe.mean())) and d.final["nfe_spent"] < 40
    again = synthesize(model, [0, 1, 2, 3], 6, nfe=40, alpha=1.0, target_energy=0.3, seed=1, device="cpu")
    assert torch.equal(syn.x, again.x) and syn.model_digest == again.model_digest != ""


@pytest.mark.parametrize("bad, exc", [(0.0, ValueError), (-1.0, ValueError), (math.inf, ValueError),
                                      (True, TypeError), ("0.05", TypeError)])
def test_bad_target_energy_is_refused_naming_it(bad, exc):
    with pytest.raises(exc, match="target_energy"):
        SamplerConfig(target_energy=bad)

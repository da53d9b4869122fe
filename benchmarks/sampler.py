"""Benchmark of the AEGDS sampler: SGLD vs Heun vs AEGDS at equal compute (issue 3).

    python benchmarks/sampler.py                      # cpu profile's original model, ~2 min on 2 quiet cores
    python benchmarks/sampler.py --checkpoint PATH    # any dsda checkpoint (dsda.train.save_checkpoint)
    python benchmarks/sampler.py --checkpoint PATH --trust-pickle   # also a whole pickled model: runs its code
    python benchmarks/sampler.py --big                # larger grid and batch (a GPU or a quiet machine)

What it measures, in one run on one device:

1. The grid: every sampler at every step size of one shared grid, each for `--nfe` score evaluations
   per sample, diagnostics read every step. From each run: the NFE and wall time to reach
   (a) mean energy <= `--energy-target` (0.05), (b) >= 95 % of samples with p(y|x) >= 0.9, and
   (c) the stricter mean energy <= `--strict-target` (0.01). The rows of one step size are the
   shared-step comparison; each sampler's best step size (fewest NFE to reach both (a) and (b)) is the
   fair one, and the SGLD/Heun/AEGDS NFE ratios are taken there.
2. The options of the paper's contradictions (noise "alg1" vs the default "temperature"; "eq5" equals
   "alg1" at dt = 1; predictor "literal" vs "rk2") and of init / clamp, for AEGDS at its best settings.
3. The overhead: the sampler's wall time per NFE (default diag_every) against a bare
   forward + backward input-gradient pass of the same frozen model on the same batch, alternated and
   repeated; the median ratio.

Prints a table and writes results/benchmarks/sampler.json (atomically, with provenance).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dsda.sampler import SAMPLERS, SamplerConfig, frozen  # noqa: E402
from dsda.synthesis import synthesize  # noqa: E402
from dsda.utils import atomic_write_json, provenance, resolve_device  # noqa: E402

CONFIDENT_TARGET = 0.95  # target (b): fraction of samples with p(y|x) >= 0.9


def load_pickled_model(path, device) -> torch.nn.Module:
    """A whole pickled model (torch.save(model)). UNPICKLES THE FILE: any code in it runs. Only behind
    --trust-pickle, the one explicit opt-in in this repository (tests/test_hardening_io.py allows it here)."""
    model = torch.load(path, map_location=device, weights_only=False)
    if not isinstance(model, torch.nn.Module):
        raise SystemExit(f"error: {path} holds a {type(model).__name__}, not a torch.nn.Module")
    return model


def load_model(args, device):
    if args.checkpoint:
        from dsda.train import CheckpointError, load_checkpoint
        try:
            model, _ = load_checkpoint(args.checkpoint, device=device)
        except CheckpointError as e:
            if not args.trust_pickle:
                raise SystemExit(f"error: {e}\n(A whole pickled model that you saved yourself loads with "
                                 f"--trust-pickle; that runs any code the file contains.)") from None
            model = load_pickled_model(args.checkpoint, device)
        return model.to(device), f"checkpoint {args.checkpoint}"
    import dsda
    return dsda.original_model(args.profile, device=device), f"dsda.original_model({args.profile!r})"


def reach(diag, args) -> dict:
    """NFE and wall time at which each target is first met (None when not within the budget)."""
    a = diag.first_reaching("energy", args.energy_target, below=True)
    b = diag.first_reaching("confident_frac", CONFIDENT_TARGET)
    c = diag.first_reaching("energy", args.strict_target, below=True)
    both = None if a is None or b is None else max(a["nfe"], b["nfe"])
    return {"nfe_energy": a and a["nfe"], "time_energy": a and a["wall_time"],
            "nfe_confident": b and b["nfe"], "time_confident": b and b["wall_time"],
            "nfe_strict": c and c["nfe"], "time_strict": c and c["wall_time"], "nfe_both": both,
            "final_energy": diag.final["energy"], "final_confident": diag.final["confident_frac"],
            "final_target_frac": diag.final["target_frac"], "total_time": diag.final["wall_time"]}


def run(model, args, device, **kw) -> dict:
    cfg = SamplerConfig(nfe=args.nfe, diag_every=1, device=str(device), **kw)
    _, _, diag = synthesize(model, list(range(model.num_classes)), args.n_per_class, seed=args.seed,
                            config=cfg)
    return {**kw, **reach(diag, args), "energy_curve": diag.energy.tolist(), "nfe_curve": diag.nfe.tolist()}


def best_of(rows: list[dict]) -> dict:
    """Fewest NFE to meet (a) and (b); ties (and runs that miss) broken by the lower final energy."""
    key = lambda r: (r["nfe_both"] if r["nfe_both"] is not None else math.inf, r["final_energy"])
    return min(rows, key=key)


def bare_pass_time(model, x, y, device, reps: int) -> float:
    """Seconds per bare forward + backward input-gradient pass (the reference for the overhead)."""
    with frozen(model):
        for _ in range(2):  # warm-up
            xg = x.detach().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(model(xg), y, reduction="sum"), xg)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            xg = x.detach().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(model(xg), y, reduction="sum"), xg)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / reps


def overhead(model, args, device) -> dict:
    k = model.num_classes
    n = k * args.n_per_class
    x = torch.randn(n, *model.input_shape, generator=torch.Generator().manual_seed(1)).to(device)
    y = torch.arange(k, device=device).repeat_interleave(args.n_per_class)
    cfg = SamplerConfig(sampler="aegds", nfe=args.overhead_nfe, device=str(device))  # default diag_every
    synthesize(model, list(range(k)), args.n_per_class, config=dataclasses.replace(cfg, nfe=2))  # warm-up
    bare, samp = [], []
    for _ in range(args.overhead_repeats):  # alternate, so that load from other processes hits both
        bare.append(bare_pass_time(model, x, y, device, args.overhead_nfe))
        t0 = time.perf_counter()
        _, _, diag = synthesize(model, list(range(k)), args.n_per_class, config=cfg)
        samp.append((time.perf_counter() - t0) / args.overhead_nfe)
    ratios = [s / b for s, b in zip(samp, bare)]
    return {"batch": n, "nfe": args.overhead_nfe, "diag_every": cfg.diag_every, "bare_s_per_pass": bare,
            "sampler_s_per_nfe": samp, "ratios": ratios, "median_ratio": statistics.median(ratios),
            "note": "sampler time is the whole synthesize() call (init, diagnostics, final scoring) / NFE"}


def fmt(v, spec="{:d}"):
    return "-" if v is None else spec.format(v)


def ratio(a, b):
    return None if a is None or b is None else a / b


def conclusion(best: dict, shared: dict | None, args) -> str:
    s, h, a = best["sgld"], best["heun"], best["aegds"]
    ra = ratio(s["nfe_energy"], a["nfe_energy"])
    rb = ratio(s["nfe_confident"], a["nfe_confident"])
    holds = ra is not None and rb is not None and ra >= 3 and rb >= 3
    txt = [f"Each sampler at its own best step size (SGLD alpha={s['alpha']:g}, Heun alpha={h['alpha']:g}, "
           f"AEGDS alpha={a['alpha']:g} gamma={a['gamma']:g}), NFE to mean energy <= {args.energy_target}: "
           f"SGLD {fmt(s['nfe_energy'])}, Heun {fmt(h['nfe_energy'])}, AEGDS {fmt(a['nfe_energy'])}; to >= 95 % "
           f"confident: SGLD {fmt(s['nfe_confident'])}, Heun {fmt(h['nfe_confident'])}, "
           f"AEGDS {fmt(a['nfe_confident'])}; to mean energy <= {args.strict_target}: SGLD {fmt(s['nfe_strict'])}, "
           f"Heun {fmt(h['nfe_strict'])}, AEGDS {fmt(a['nfe_strict'])}.",
           f"The paper's acceleration claim (goal: AEGDS needs at most 1/3 of SGLD's NFE) "
           f"{'HOLDS' if holds else 'does NOT hold'} here: SGLD/AEGDS NFE ratio {fmt(ra, '{:.2f}')} (energy) and "
           f"{fmt(rb, '{:.2f}')} (confident)."]
    if s["nfe_both"] is not None and h["nfe_both"] is not None:
        gain = s["nfe_both"] / (h["nfe_both"] / 2)
        txt.append(f"In steps, SGLD needs {s['nfe_both']} and Heun {h['nfe_both'] // 2} to reach both targets, "
                   f"so one Heun step (2 NFE) does the work of {gain:.2f} SGLD steps (1 NFE each); a Heun step pays "
                   f"off in NFE only above 2"
                   + (". Why: reaching a low class energy from noise is a short descent in which the largest stable "
                      "step matters, not following the flow accurately, which is what the second-order step buys."
                      if gain <= 2 else ", as it does here."))
    rs = ratio(s["nfe_strict"], a["nfe_strict"])
    rh = ratio(s["nfe_strict"], h["nfe_strict"])
    if rs is not None:
        txt.append(f"To the stricter energy {args.strict_target} the SGLD/AEGDS NFE ratio is {rs:.2f} "
                   f"(SGLD/Heun {fmt(rh, '{:.2f}')})"
                   + (": in the slow final descent the momentum, not the Heun step, saves evaluations."
                      if rs > 1 and (rh is None or rs > rh) else "."))
    if shared:
        rows = ", ".join(f"{k} {fmt(v)}" for k, v in shared.items() if k != "alpha")
        moms = [v for k, v in shared.items() if k.startswith("aegds") and v is not None]
        wins = moms and (shared.get("sgld") is None or min(moms) < shared["sgld"])
        txt.append(f"At the smallest shared step size alpha={shared['alpha']:g} the NFE to (a) are: {rows}"
                   + ("; there AEGDS wins because momentum multiplies a small step by about 1/(1-gamma), which is "
                      "why a comparison at one shared small step is not fair." if wins else "."))
    return " ".join(txt)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profile", default="cpu", help="profile whose original model is used (default: cpu)")
    p.add_argument("--checkpoint", default=None, help="a dsda checkpoint to use instead of original_model")
    p.add_argument("--trust-pickle", action="store_true",
                   help="if --checkpoint is not a dsda checkpoint, unpickle it as a whole model (torch.save(model)); "
                        "this RUNS ANY CODE the file contains: only for files you made yourself")
    p.add_argument("--device", default="auto")
    p.add_argument("--n-per-class", type=int, default=10)
    p.add_argument("--nfe", type=int, default=40, help="budget per run (even)")
    p.add_argument("--alphas", type=float, nargs="+", default=[1.0, 3.0, 10.0, 20.0, 40.0])
    p.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    p.add_argument("--gammas", type=float, nargs="+", default=[0.5, 0.9], help="AEGDS momentum grid")
    p.add_argument("--energy-target", type=float, default=0.05)
    p.add_argument("--strict-target", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overhead-nfe", type=int, default=20)
    p.add_argument("--overhead-repeats", type=int, default=5)
    p.add_argument("--no-options", action="store_true", help="skip the noise/predictor option runs")
    p.add_argument("--big", action="store_true", help="n-per-class 50, nfe 80, a finer step-size grid")
    p.add_argument("--out", default=str(ROOT / "results" / "benchmarks" / "sampler.json"))
    args = p.parse_args(argv)
    if args.big:
        args.n_per_class, args.nfe = 50, 80
        args.alphas = [1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 60.0, 100.0]
        args.gammas = [0.3, 0.5, 0.7, 0.9]
    if args.nfe % 2:
        p.error("--nfe must be even (Heun and AEGDS spend 2 NFE per step)")

    device = resolve_device(args.device)
    model, source = load_model(args, device)
    model.eval()
    prov = provenance(device)
    print(f"model: {source}; device: {prov['device_name']} ({device}); batch {model.num_classes * args.n_per_class}, "
          f"budget {args.nfe} NFE per run", flush=True)

    grid = []
    head = (f"{'sampler':7s} {'gamma':>5s} {'alpha':>6s} | {'NFE E<=' + str(args.energy_target):>10s} {'NFE conf':>9s} "
            f"{'NFE E<=' + str(args.strict_target):>10s} | {'s E':>6s} {'s conf':>6s} | {'final E':>8s} {'conf':>5s}")
    print(head)
    print("-" * len(head))
    runs = [(name, {"gamma": g} if name == "aegds" else {}) for name in args.samplers
            for g in (args.gammas if name == "aegds" else [None])]
    for alpha in args.alphas:
        for name, extra in runs:
            r = run(model, args, device, sampler=name, alpha=alpha, **extra)
            grid.append(r)
            print(f"{name:7s} {fmt(extra.get('gamma'), '{:5g}'):>5s} {alpha:6g} | "
                  f"{fmt(r['nfe_energy']):>10s} {fmt(r['nfe_confident']):>9s} "
                  f"{fmt(r['nfe_strict']):>10s} | {fmt(r['time_energy'], '{:.2f}'):>6s} "
                  f"{fmt(r['time_confident'], '{:.2f}'):>6s} | {r['final_energy']:8.4f} {r['final_confident']:5.2f}",
                  flush=True)

    best = {name: best_of([r for r in grid if r["sampler"] == name]) for name in args.samplers}
    print("\nbest step size per sampler (fewest NFE to reach both targets):")
    for name, r in best.items():
        print(f"  {name:6s} alpha={r['alpha']:g}: NFE {fmt(r['nfe_energy'])} / {fmt(r['nfe_confident'])} / "
              f"{fmt(r['nfe_strict'])}, wall {fmt(r['time_energy'], '{:.2f}')} s / "
              f"{fmt(r['time_confident'], '{:.2f}')} s")
    ratios = {}
    if "sgld" in best:
        for other in ("heun", "aegds"):
            if other in best:
                for t in ("energy", "confident", "strict"):
                    ratios[f"sgld/{other} NFE {t}"] = ratio(best["sgld"][f"nfe_{t}"], best[other][f"nfe_{t}"])
                    ratios[f"sgld/{other} time {t}"] = ratio(best["sgld"][f"time_{t}"], best[other][f"time_{t}"])
    print("ratios (SGLD / other; > 1 means the other is faster):")
    for k, v in ratios.items():
        print(f"  {k:28s} {fmt(v, '{:.2f}')}")

    options = []
    if not args.no_options and "aegds" in best:
        a, g = best["aegds"]["alpha"], best["aegds"]["gamma"]
        print(f"\nAEGDS options at alpha={a:g}, gamma={g:g} (the default row is the grid's):")
        # noise="eq5" equals "alg1" at dt = 1 and is not re-run
        for kw in ({"noise": "alg1"}, {"predictor": "literal"}, {"init": "uniform"}, {"clamp": False}):
            r = run(model, args, device, sampler="aegds", alpha=a, gamma=g, **kw)
            options.append(r)
            print(f"  {str(kw):28s} NFE {fmt(r['nfe_energy'])} / {fmt(r['nfe_confident'])} / "
                  f"{fmt(r['nfe_strict'])}, final E {r['final_energy']:.4f}, confident {r['final_confident']:.2f}",
                  flush=True)

    ov = overhead(model, args, device)
    print(f"\noverhead: sampler {statistics.median(ov['sampler_s_per_nfe']) * 1e3:.1f} ms/NFE vs bare "
          f"{statistics.median(ov['bare_s_per_pass']) * 1e3:.1f} ms/pass -> median ratio {ov['median_ratio']:.3f} "
          f"(target <= 1.15)")

    shared = None
    if set(SAMPLERS) <= set(args.samplers):
        a0 = min(args.alphas)
        shared = {"alpha": a0, **{r["sampler"] + (f"(gamma={r['gamma']:g})" if "gamma" in r else ""): r["nfe_energy"]
                                  for r in grid if r["alpha"] == a0}}
    note = conclusion(best, shared, args) if set(SAMPLERS) <= set(best) else ""
    if note:
        print("\n" + note)
    out = {"provenance": prov, "model": source, "settings": vars(args), "confident_target": CONFIDENT_TARGET,
           "grid": grid, "best": best, "ratios": ratios, "options": options, "overhead": ov,
           "conclusion": note}
    atomic_write_json(args.out, out)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

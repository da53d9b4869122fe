"""Training the original model and the retrain-from-scratch oracle, with a checkpoint cache.

Recipe (paper §5.1): Adam with a multi-step learning-rate schedule starting at lr = 0.01; epochs per
profile. Both models are trained from scratch; the oracle sees only the retain classes but keeps
all K outputs, as in the paper (its forget-class logits are simply never a target).

Checkpoints are cached under a key of (dataset, model, width, recipe, seed, excluded classes).
A checkpoint stores its config, the library versions, the training history and a SHA-256 of the
weights. It is written atomically and loaded with `weights_only=True`; a file that cannot be read,
whose config does not match the key, or whose weights fail the checksum is reported and never used
silently: a bad cache file is moved aside as `<name>.corrupt` (`.corrupt.2`, ... if that exists),
then the shipped checkpoint (`pretrained/`) is tried, and the model is retrained only when no
file verifies.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.nn.functional as F

from .checks import validate_seed
from .data import VALIDATION_SETS, TensorDataset, dataset_info, load_dataset, split_dataset, validate_forget_classes
from .models import Classifier, build_model
from .profiles import Profile, TrainRecipe, get_profile
from .utils import atomic_torch_save, library_versions, resolve_device, state_digest, to_jsonable  # noqa: F401

CHECKPOINT_FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint could not be read, does not match what was asked for, or fails its checksum."""


# ----------------------------------------------------------------------------- training loop

def _augment(x: torch.Tensor, recipe: TrainRecipe, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flips and random crops with zero padding, drawn from `gen` (CPU)."""
    n = x.shape[0]
    if recipe.hflip:
        flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if recipe.crop_pad > 0:
        p = recipe.crop_pad
        h, w = x.shape[2:]
        padded = F.pad(x, (p, p, p, p))
        off = torch.randint(0, 2 * p + 1, (2, n), generator=gen).to(x.device)
        rows = (off[0][:, None] + torch.arange(h, device=x.device))[:, :, None]  # (n, h, 1)
        cols = (off[1][:, None] + torch.arange(w, device=x.device))[:, None, :]  # (n, 1, w)
        batch = torch.arange(n, device=x.device)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # one gather, no Python loop
    return x


def train_model(model: Classifier, data: TensorDataset, recipe: TrainRecipe, seed: int = 0,
                device: str | torch.device = "auto", progress: bool = True, desc: str = "train") -> dict:
    """Train `model` in place on `data` with the paper's recipe. Returns the history (loss per epoch)."""
    from tqdm.auto import tqdm

    seed = validate_seed(seed)
    dev = resolve_device(device)
    model.to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    n = len(data)
    steps_per_epoch = max(1, n // recipe.batch_size)  # drop the last partial batch (BN wants full ones)
    total = steps_per_epoch * recipe.epochs
    milestones = sorted({max(1, int(round(m * total))) for m in recipe.milestones})
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, recipe.gamma)
    gen = torch.Generator().manual_seed(seed)  # batch order and augmentation
    history: dict[str, list] = {"epoch_loss": [], "epoch_time_s": []}
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=False)
    for _ in range(recipe.epochs):
        model.train()
        t0, loss_sum = time.perf_counter(), torch.zeros((), device=dev)
        perm = torch.randperm(n, generator=gen)
        for i in range(steps_per_epoch):
            idx = perm[i * recipe.batch_size:(i + 1) * recipe.batch_size]
            x = _augment(data.x[idx], recipe, gen).to(dev, non_blocking=True)
            x = x.contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(x), data.y[idx].to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach()
            bar.update(1)
        history["epoch_loss"].append(float(loss_sum) / steps_per_epoch)
        history["epoch_time_s"].append(time.perf_counter() - t0)
        bar.set_postfix(loss=f"{history['epoch_loss'][-1]:.3f}")
    bar.close()
    model.eval()
    return history


@torch.inference_mode()
def test_accuracy(model: Classifier, data: TensorDataset, batch_size: int = 1024,
                  device: str | torch.device = "auto") -> float:
    """Top-1 accuracy in percent (used for the checkpoint record; dsda.metrics has the full set)."""
    dev = resolve_device(device)
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=dev)
    for i in range(0, len(data), batch_size):
        x = data.x[i:i + batch_size].to(dev).contiguous(memory_format=torch.channels_last)
        correct += (model(x).argmax(1) == data.y[i:i + batch_size].to(dev)).sum()
    model.train(was_training)
    return 100.0 * float(correct) / len(data)


# ----------------------------------------------------------------------------- checkpoints

def cache_dir() -> Path:
    """$DSDA_CACHE_DIR, else `checkpoints/` in the source checkout, else ~/.cache/dsda/checkpoints."""
    env = os.environ.get("DSDA_CACHE_DIR")
    if env:
        return Path(env)
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").exists() and (root / "dsda").is_dir():
        return root / "checkpoints"
    return Path.home() / ".cache" / "dsda" / "checkpoints"


def pretrained_dir() -> Path | None:
    """Read-only checkpoints shipped with the project (`pretrained/`), or None when disabled.

    $DSDA_PRETRAINED_DIR overrides the folder; DSDA_NO_PRETRAINED=1 ignores it, so every model is
    trained from scratch (`make reproduce FROM_SCRATCH=1`). Shipped files go through exactly the same
    verification as cached ones (config match, SHA-256 of the weights).
    """
    if os.environ.get("DSDA_NO_PRETRAINED", "") not in ("", "0"):
        return None
    env = os.environ.get("DSDA_PRETRAINED_DIR")
    if env:
        return Path(env)
    root = Path(__file__).resolve().parent.parent
    return root / "pretrained" if (root / "pyproject.toml").exists() else None


def checkpoint_name(config: dict[str, Any]) -> str:
    kind = "retrain" if config["exclude_classes"] else "original"
    return f"{kind}-{cache_key(config)}.pt"


def checkpoint_candidates(profile: Profile, config: dict[str, Any]) -> list[Path]:
    """Existing files for `config`, in the order they are tried: the cache, then the shipped one."""
    name = checkpoint_name(config)
    folders = (cache_dir(), pretrained_dir())
    return [f / profile.name / name for f in folders if f is not None and (f / profile.name / name).exists()]


def find_checkpoint(profile: Profile, config: dict[str, Any]) -> Path | None:
    """The cached checkpoint for `config`, else the shipped one, else None."""
    found = checkpoint_candidates(profile, config)
    return found[0] if found else None


def model_config(profile: Profile, seed: int, exclude: Iterable[int] = ()) -> dict[str, Any]:
    """Everything that determines a trained model; its hash is the cache key."""
    seed = validate_seed(seed)  # int(0.9) or int("0") would silently name the seed-0 model
    config = {"format": CHECKPOINT_FORMAT, "dataset": profile.dataset, "model": profile.model,
              "width": profile.width, "recipe": dataclasses.asdict(profile.recipe), "seed": int(seed),
              "exclude_classes": sorted(int(c) for c in exclude)}
    if profile.dataset in VALIDATION_SETS:   # which images were held out is part of what the model is
        config["validation"] = dataclasses.asdict(VALIDATION_SETS[profile.dataset])
    return config


def cache_key(config: dict[str, Any]) -> str:
    blob = json.dumps(to_jsonable(config), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def save_checkpoint(path: str | os.PathLike, model: Classifier, config: dict[str, Any],
                    extra: dict[str, Any] | None = None) -> Path:
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    arch = {"name": config["model"], "width": config["width"], "num_classes": model.num_classes,
            "input_shape": list(model.input_shape), "input_range": list(model.input_range)}
    payload = {"config": to_jsonable(config), "arch": arch, "versions": library_versions(),
               "state_dict": state, "state_sha256": state_digest(state), "extra": to_jsonable(extra or {})}
    return atomic_torch_save(path, payload)


_REFUSED = re.compile(r"unsupported global: GLOBAL \S+|unsupported GLOBAL \S+|unsupported operand \d+", re.I)


def _load_failure(e: Exception) -> str:
    """Why torch.load failed, without torch's advice to retry with weights_only=False or to allowlist
    globals: either would unpickle the file, i.e. run whatever code it carries."""
    text = str(e)
    if "weights_only" not in text:
        return f"{type(e).__name__}: {text}"
    found = _REFUSED.search(text)
    return (f"it holds pickled objects that the safe loader refuses ({found.group(0) if found else type(e).__name__}); "
            f"a dsda checkpoint holds only tensors and plain data. It was not unpickled, so nothing in it ran; "
            f"delete it or replace it with a file written by dsda.train.save_checkpoint")


def load_checkpoint(path: str | os.PathLike, expected_config: dict[str, Any] | None = None,
                    device: str | torch.device = "cpu") -> tuple[Classifier, dict[str, Any]]:
    """Load and verify a checkpoint; raises CheckpointError when it is unreadable or does not match."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, bad pickle, wrong file type ...
        raise CheckpointError(f"cannot read checkpoint {path}: {_load_failure(e)}") from e
    if not isinstance(payload, dict) or not {"config", "arch", "state_dict", "state_sha256"} <= payload.keys():
        raise CheckpointError(f"{path} is not a dsda checkpoint (missing config/arch/state_dict/state_sha256)")
    if expected_config is not None and payload["config"] != to_jsonable(expected_config):
        raise CheckpointError(f"{path} was trained with a different config:\n  stored:   {payload['config']}\n"
                              f"  expected: {to_jsonable(expected_config)}")
    if state_digest(payload["state_dict"]) != payload["state_sha256"]:
        raise CheckpointError(f"{path}: weights fail their SHA-256 checksum (the file is corrupt)")
    arch = payload["arch"]
    model = build_model(arch["name"], arch["num_classes"], tuple(arch["input_shape"]), width=arch["width"],
                        input_range=tuple(arch["input_range"]))
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the stored architecture: {e}") from e
    model.to(resolve_device(device)).eval()
    return model, payload


def _new_model(profile: Profile) -> Classifier:
    info = dataset_info(profile.dataset)
    return build_model(profile.model, info.num_classes, info.image_shape, width=profile.width,
                       input_range=info.input_range)


def _aside_path(path: Path) -> Path:
    """`<name>.corrupt`, or `<name>.corrupt.2`, `.3` ... when earlier bad files are kept there."""
    bad, n = path.with_name(path.name + ".corrupt"), 1
    while bad.exists():
        n += 1
        bad = path.with_name(f"{path.name}.corrupt.{n}")
    return bad


def _try_checkpoint(found: Path, config: dict[str, Any], dev: torch.device, own: Path,
                    fallback: str) -> Classifier | None:
    """The verified model in `found`, or None after reporting why it is unusable (and what happens next)."""
    try:
        return load_checkpoint(found, expected_config=config, device=dev)[0]
    except CheckpointError as e:
        if found == own:  # our own cache: move the bad file aside; shipped files are left alone
            bad = _aside_path(own)
            os.replace(own, bad)
            e = CheckpointError(f"{e}\n  -> moved to {bad}")
        warnings.warn(f"{e}\n  -> {fallback}.", RuntimeWarning, stacklevel=4)
        print(f"[dsda] unusable checkpoint {found}; {fallback}", flush=True)
        return None


def _cached_model(profile: Profile, seed: int, exclude: tuple[int, ...], device, force: bool,
                  progress: bool) -> Classifier:
    config = model_config(profile, seed, exclude)
    path = cache_dir() / profile.name / checkpoint_name(config)
    dev = resolve_device(device)
    candidates = [] if force else checkpoint_candidates(profile, config)
    for i, found in enumerate(candidates):   # a bad cache file must not hide a good shipped one
        nxt = candidates[i + 1:]
        model = _try_checkpoint(found, config, dev, path, f"trying {nxt[0]}" if nxt else "retraining")
        if model is not None:
            return model

    train = load_dataset(profile.dataset, "train")
    if exclude:
        _, train = split_dataset(train, exclude)
    with torch.random.fork_rng(devices=[]):  # weight init from a seeded RNG, global state untouched
        torch.manual_seed(seed)
        model = _new_model(profile)
    what = f"retrain w/o {list(exclude)}" if exclude else "original"
    t0 = time.perf_counter()
    history = train_model(model, train, profile.recipe, seed=seed, device=dev, progress=progress,
                          desc=f"{profile.name} {what}")
    train_s = time.perf_counter() - t0
    acc = test_accuracy(model, load_dataset(profile.dataset, "test"), profile.eval_batch_size, dev)
    save_checkpoint(path, model, config, extra={"history": history, "train_time_s": train_s,
                                                "test_accuracy": acc, "device": str(dev)})
    print(f"[dsda] trained {profile.name} {what} (seed {seed}) in {train_s:.0f} s: "
          f"test accuracy {acc:.2f} % -> {path}", flush=True)
    return model.eval()


def original_model(profile: str | Profile = "cpu", seed: int = 0, device: str | torch.device = "auto",
                   force: bool = False, progress: bool = True) -> Classifier:
    """The model trained on the full training split (loaded from the cache when present)."""
    return _cached_model(get_profile(profile), validate_seed(seed), (), device, force, progress)


def retrain_model(profile: str | Profile, forget_classes: int | Iterable[int], seed: int = 0,
                  device: str | torch.device = "auto", force: bool = False, progress: bool = True) -> Classifier:
    """The retrain-from-scratch oracle: same recipe, trained without the forget classes."""
    profile = get_profile(profile)
    exclude = validate_forget_classes(forget_classes, dataset_info(profile.dataset).num_classes)
    return _cached_model(profile, validate_seed(seed), exclude, device, force, progress)


def checkpoint_record(profile: str | Profile, seed: int = 0, exclude: Iterable[int] = ()) -> dict[str, Any] | None:
    """The stored record (history, train time, accuracy, versions, path) of a cached or shipped model, or None."""
    profile = get_profile(profile)
    config = model_config(profile, seed, exclude)
    path = find_checkpoint(profile, config)
    if path is None:
        return None
    _, payload = load_checkpoint(path, expected_config=config)
    return {**payload["extra"], "path": str(path), "versions": payload["versions"]}

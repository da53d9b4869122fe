"""The out-of-distribution set of the `ood=` grant (SCAR): another shipped data set, converted to the model's input."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..checks import validate_seed
from ..data import DatasetInfo, TensorDataset, base_dataset, dataset_info, load_dataset
from ..profiles import Profile, get_profile
from ..utils import check_positive

OOD_SOURCE = {"digits": "fashion_mnist"}    # everything else: scikit-learn digits (always available)


def _to_pixels(ds: TensorDataset) -> torch.Tensor:
    """Undo the per-channel normalisation: values in [0, 1]."""
    mean = torch.tensor(ds.info.mean).view(1, -1, 1, 1)
    std = torch.tensor(ds.info.std).view(1, -1, 1, 1)
    return ds.x * std + mean


def convert_images(pixels: torch.Tensor, target: DatasetInfo) -> torch.Tensor:
    """[0, 1] images (N, C, H, W) -> the target's shape and normalisation.

    Resize with bilinear interpolation (antialiased when shrinking), then map channels: 1 -> C by
    replication, C -> 1 by averaging; finally normalise with the target's mean and std.
    """
    c, h, w = target.image_shape
    x = pixels
    if tuple(x.shape[2:]) != (h, w):
        shrink = h < x.shape[2] or w < x.shape[3]
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=shrink)
        x = x.clamp(0.0, 1.0)   # bilinear cannot overshoot, but antialiasing can by rounding
    if x.shape[1] != c:
        if x.shape[1] == 1:
            x = x.expand(-1, c, -1, -1)
        elif c == 1:
            x = x.mean(1, keepdim=True)
        else:
            raise ValueError(f"cannot map {x.shape[1]} channels to {c}")
    mean = torch.tensor(target.mean).view(1, -1, 1, 1)
    std = torch.tensor(target.std).view(1, -1, 1, 1)
    return ((x - mean) / std).contiguous()


def ood_dataset(profile: str | Profile, max_samples: int | None = None, seed: int = 0) -> TensorDataset:
    """An out-of-distribution set for a profile: the TRAIN split of a different data set, converted to the
    profile's input (shape, channels, normalisation).

    - fashion_mnist (28x28x1): scikit-learn digits (8x8), upsampled;
    - digits (8x8x1): Fashion-MNIST, downsampled (antialiased);
    - cifar10 / cifar100 / pins (32x32x3): digits, upsampled and replicated to 3 channels.
    Labels are the source data set's own (meaningless to the model; SCAR uses only the images).
    `max_samples` keeps a seeded random subset.
    """
    seed = validate_seed(seed)
    prof = get_profile(profile)
    target = dataset_info(prof.dataset)
    source_name = OOD_SOURCE.get(base_dataset(prof.dataset), "digits")   # a validation variant: its base's
    source = load_dataset(source_name, "train")
    if max_samples is not None:
        check_positive("max_samples", max_samples)
        if max_samples < len(source):
            keep = torch.randperm(len(source), generator=torch.Generator().manual_seed(seed))[:max_samples]
            source = source.subset(torch.sort(keep).values)
    x = convert_images(_to_pixels(source), target)
    info = DatasetInfo(name=f"{source_name}->{prof.dataset}", num_classes=source.info.num_classes,
                       class_names=source.info.class_names, image_shape=target.image_shape, mean=target.mean,
                       std=target.std, input_range=target.input_range)
    return TensorDataset(x, source.y.clone(), info)

"""Class-level splits: the samples of the forget classes and of all the others."""
from __future__ import annotations

import numpy as np
import torch

from ..checks import validate_forget_classes  # noqa: F401  (re-exported: one definition, in dsda.checks)
from .dataset import TensorDataset


def class_split(y: torch.Tensor, forget_classes, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted int64 indices of the samples whose label is a forget class, and of all the others."""
    classes = validate_forget_classes(forget_classes, num_classes)
    if not isinstance(y, torch.Tensor):
        y = torch.as_tensor(np.asarray(y))
    if y.dim() != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ValueError(f"y must be a 1-D integer tensor of labels, got {y.dtype} {tuple(y.shape)}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"y holds labels {int(y.min())}..{int(y.max())}, outside 0..{num_classes - 1}")
    mask = torch.isin(y, torch.tensor(classes, dtype=y.dtype, device=y.device))
    return mask.nonzero().flatten(), (~mask).nonzero().flatten()   # nonzero is sorted and int64


def split_dataset(ds: TensorDataset, forget_classes) -> tuple[TensorDataset, TensorDataset]:
    """(forget part, retain part) of a data set, as new TensorDatasets."""
    forget_idx, retain_idx = class_split(ds.y, forget_classes, ds.info.num_classes)
    return ds.subset(forget_idx), ds.subset(retain_idx)


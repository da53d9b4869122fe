"""Class-level splits: the samples of the forget classes and of all the others."""
from __future__ import annotations

import numpy as np
import torch

from .dataset import TensorDataset


def validate_forget_classes(forget_classes, num_classes: int) -> tuple[int, ...]:
    """An int or an iterable of ints, all in [0, num_classes), no duplicates, not every class -> sorted tuple."""
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if isinstance(forget_classes, (str, bytes)) or forget_classes is None:
        raise ValueError(f"forget_classes must be an int or an iterable of ints, got {forget_classes!r}")
    if isinstance(forget_classes, torch.Tensor) and forget_classes.dim() == 0:
        forget_classes = forget_classes.item()
    if isinstance(forget_classes, (int, np.integer)) and not isinstance(forget_classes, bool):
        items = [forget_classes]
    else:
        try:
            items = list(forget_classes)
        except TypeError:
            raise ValueError(f"forget_classes must be an int or an iterable of ints, got {forget_classes!r}") from None
    if not items:
        raise ValueError("forget_classes is empty; name at least one class to forget "
                         f"(allowed range 0..{num_classes - 1})")
    classes = []
    for c in items:
        if isinstance(c, torch.Tensor) and c.dim() == 0 and not c.dtype.is_floating_point and c.dtype != torch.bool:
            c = c.item()
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
            raise ValueError(f"forget_classes must contain integers, got {c!r} ({type(c).__name__})")
        classes.append(int(c))
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise ValueError(f"forget_classes {bad} out of range; allowed range 0..{num_classes - 1}")
    if len(set(classes)) != len(classes):
        dup = sorted({c for c in classes if classes.count(c) > 1})
        raise ValueError(f"forget_classes contains duplicates {dup}")
    if len(classes) == num_classes:
        raise ValueError(f"forget_classes names all {num_classes} classes; at least one class must be retained")
    return tuple(sorted(classes))


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


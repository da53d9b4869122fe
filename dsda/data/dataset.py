"""The types every loader returns: `DatasetInfo` (metadata), `TensorDataset` (a split in memory), `DatasetError`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..utils import resolve_device


class DatasetError(RuntimeError):
    """A data set is missing, truncated, corrupt or inconsistent (the message says what to do)."""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]   # (C, H, W) after preprocessing
    mean: tuple[float, ...]             # per-channel normalisation applied to x: (x01 - mean) / std
    std: tuple[float, ...]
    input_range: tuple[float, float]    # image of the pixel range [0, 1] (min, max over channels)

    def __post_init__(self):
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"DatasetInfo.class_names has {len(self.class_names)} entries but "
                             f"num_classes={self.num_classes}")
        if not len(self.mean) == len(self.std) == self.image_shape[0]:
            raise ValueError(f"DatasetInfo.mean/std need one value per channel ({self.image_shape[0]}), "
                             f"got {len(self.mean)} and {len(self.std)}")


def _make_info(name: str, class_names: Sequence[str], image_shape: Sequence[int],
               mean: Sequence[float], std: Sequence[float]) -> DatasetInfo:
    mean = tuple(float(m) for m in mean)
    std = tuple(float(s) for s in std)
    # the normalised image of pixel 0 and pixel 1, taken over all channels
    lo = min((0.0 - m) / s for m, s in zip(mean, std))
    hi = max((1.0 - m) / s for m, s in zip(mean, std))
    return DatasetInfo(name=name, num_classes=len(class_names), class_names=tuple(class_names),
                       image_shape=tuple(int(v) for v in image_shape), mean=mean, std=std,
                       input_range=(lo, hi))


@dataclass(eq=False)
class TensorDataset:
    """A whole split in memory. Tensors coming from `load_dataset` are shared: treat them as read-only."""
    x: torch.Tensor   # (N, C, H, W) float32, normalised
    y: torch.Tensor   # (N,) int64
    info: DatasetInfo

    def __post_init__(self):
        if not isinstance(self.x, torch.Tensor) or self.x.dim() != 4 or self.x.dtype != torch.float32:
            raise TypeError(f"TensorDataset.x must be a float32 tensor of shape (N, C, H, W), got "
                            f"{getattr(self.x, 'dtype', type(self.x).__name__)} {tuple(getattr(self.x, 'shape', ()))}")
        if not isinstance(self.y, torch.Tensor) or self.y.dim() != 1 or self.y.dtype != torch.int64:
            raise TypeError(f"TensorDataset.y must be an int64 tensor of shape (N,), got "
                            f"{getattr(self.y, 'dtype', type(self.y).__name__)} {tuple(getattr(self.y, 'shape', ()))}")
        if len(self.x) != len(self.y):
            raise ValueError(f"TensorDataset.x has {len(self.x)} rows but y has {len(self.y)}")
        if tuple(self.x.shape[1:]) != tuple(self.info.image_shape):
            raise ValueError(f"TensorDataset.x has image shape {tuple(self.x.shape[1:])}, "
                             f"info.image_shape is {self.info.image_shape}")

    def __len__(self) -> int:
        return len(self.y)

    def __repr__(self) -> str:
        return (f"TensorDataset(name={self.info.name!r}, n={len(self)}, image_shape={self.info.image_shape}, "
                f"num_classes={self.info.num_classes}, device={self.x.device})")

    def subset(self, idx) -> "TensorDataset":
        """Rows `idx` (integer indices in [0, N) or a boolean mask of length N) as a new TensorDataset."""
        index = _as_index(idx, len(self))
        index = index.to(self.x.device)
        return TensorDataset(self.x[index], self.y[index], self.info)

    def to(self, device: str | torch.device = "auto") -> "TensorDataset":
        dev = resolve_device(device)
        return TensorDataset(self.x.to(dev), self.y.to(dev), self.info)


def _as_index(idx, n: int) -> torch.Tensor:
    """Turn indices or a boolean mask into a 1-D int64 tensor, checking the range."""
    if isinstance(idx, (slice, int)) or idx is None:
        raise TypeError(f"idx must be a 1-D sequence of indices or a boolean mask, got {type(idx).__name__}")
    t = idx if isinstance(idx, torch.Tensor) else torch.as_tensor(np.asarray(idx))
    if t.dim() != 1:
        raise ValueError(f"idx must be one-dimensional, got shape {tuple(t.shape)}")
    if t.dtype == torch.bool:
        if len(t) != n:
            raise ValueError(f"idx is a boolean mask of length {len(t)}, the data set has {n} rows")
        return t.nonzero().flatten().cpu()
    if t.numel() == 0:
        return torch.zeros(0, dtype=torch.int64)
    if t.dtype.is_floating_point or t.dtype.is_complex:
        raise TypeError(f"idx must hold integers or booleans, got dtype {t.dtype}")
    t = t.to(torch.int64).cpu()
    if int(t.min()) < 0 or int(t.max()) >= n:
        raise ValueError(f"idx must lie in [0, {n}), got values from {int(t.min())} to {int(t.max())}")
    return t


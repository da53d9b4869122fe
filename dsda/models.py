"""Classifiers used in the study.

Every model is a `Classifier`: a stack of `stages` (the feature extractor M_f of the paper, §3)
followed by a single linear layer `fc` (the classification layer M_c). Three methods matter:

- `features(x)`  -> (N, D) penultimate embedding h = M_f(x); DAMO's Circle loss (Eq. 7) and
  several baselines (LAU, SCAR, synthetic embeddings) work on it.
- `feature_maps(x)` -> the output of each stage; GKT's attention transfer uses them.
- `forward(x)` -> logits fc(features(x)).
- `pre_relu_features(x)` -> the last stage's output before its final ReLU, mean-pooled (features that take both
  signs, for a Circle loss whose negative optimum post-ReLU cosines cannot reach; compact CNN and AllCNN).

Global pooling is a plain `mean` over H and W, never `AdaptiveAvgPool2d`: its CUDA backward has no
deterministic kernel (pytorch#50198), and the Langevin sampler differentiates through it.

A model also carries the metadata the source-free method needs to synthesise inputs without
seeing data: `num_classes`, `input_shape` and `input_range` (the normalised pixel range, i.e. the
image of [0, 1] under the owner's preprocessing). These are facts about the model's interface,
stored with every checkpoint, not data.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

MODEL_NAMES = ("cnn", "resnet18", "allcnn")


class Classifier(nn.Module):
    def __init__(self, stages: Sequence[nn.Module], feature_dim: int, num_classes: int,
                 input_shape: Sequence[int], input_range: Sequence[float] = (-float("inf"), float("inf"))):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(feature_dim, num_classes)
        self.num_classes = int(num_classes)
        self.feature_dim = int(feature_dim)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.input_range = (float(input_range[0]), float(input_range[1]))

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x.mean(dim=(2, 3))  # deterministic global average pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))

    def pre_relu_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) mean-pooled output of the last stage before its final ReLU.

        Why: `features` is post-ReLU, so every cosine between two feature vectors is >= 0 and a Circle loss
        optimum O_n < 0 is unreachable; before the ReLU the features take both signs. Needs a last stage that
        ends in an nn.ReLU module (compact CNN, AllCNN); ResNet-18's last ReLU is inside its block's forward.
        """
        last = self.stages[-1]
        tail = last[-1] if isinstance(last, nn.Sequential) and len(last) else last
        if not isinstance(tail, nn.ReLU):
            raise ValueError(f"pre_relu_features needs a last stage ending in nn.ReLU, it ends in {type(tail).__name__}")
        for stage in self.stages[:-1]:
            x = stage(x)
        for module in list(last)[:-1]:
            x = module(x)
        return x.mean(dim=(2, 3))


def _conv_bn_relu(cin: int, cout: int, stride: int = 1, kernel: int = 3) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


# ----------------------------------------------------------------------------- compact CNN

def compact_cnn(num_classes: int, input_shape: Sequence[int], width: int = 32, **kw) -> Classifier:
    """The `cpu` profile's model: 4 conv layers (w, 2w, 2w, 4w), two max-pools, mean pool.

    With width 32 (131k parameters) it reaches about 91-92 % Fashion-MNIST test accuracy in a few
    epochs on 2 CPU cores; the first layer runs at full resolution with a single conv because the
    28x28 convolutions dominate the cost on CPU.
    """
    c = input_shape[0]
    w = width
    stages = [
        nn.Sequential(*_conv_bn_relu(c, w), nn.MaxPool2d(2)),
        nn.Sequential(*_conv_bn_relu(w, 2 * w), *_conv_bn_relu(2 * w, 2 * w), nn.MaxPool2d(2)),
        nn.Sequential(*_conv_bn_relu(2 * w, 4 * w)),
    ]
    return Classifier(stages, 4 * w, num_classes, input_shape, **kw)


# ----------------------------------------------------------------------------- ResNet-18 (CIFAR)

class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


def resnet18(num_classes: int, input_shape: Sequence[int], width: int = 64, **kw) -> Classifier:
    """ResNet-18, CIFAR variant (He et al. 2016): 3x3 stem, no max-pool, mean pooling (11.2M params)."""
    c = input_shape[0]
    w = width

    def layer(cin: int, cout: int, stride: int) -> list[nn.Module]:
        return [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]

    stages = [
        nn.Sequential(*_conv_bn_relu(c, w), *layer(w, w, 1)),
        nn.Sequential(*layer(w, 2 * w, 2)),
        nn.Sequential(*layer(2 * w, 4 * w, 2)),
        nn.Sequential(*layer(4 * w, 8 * w, 2)),
    ]
    return Classifier(stages, 8 * w, num_classes, input_shape, **kw)


# ----------------------------------------------------------------------------- AllCNN

def allcnn(num_classes: int, input_shape: Sequence[int], width: int = 96, dropout: float = 0.0,
           **kw) -> Classifier:
    """All-CNN-C (Springenberg et al. 2015) with BatchNorm, as used by the GKT and ISPF papers.

    The original ends with a 1x1 conv to `num_classes` channels followed by global pooling; since both
    are linear and commute with the mean, we pool first and use a linear layer, which is the same
    function and gives the model the `features` + `fc` split DAMO needs.
    """
    c = input_shape[0]
    w1, w2 = width, 2 * width
    drop = [nn.Dropout(dropout)] if dropout > 0 else []
    stages = [
        nn.Sequential(*_conv_bn_relu(c, w1), *_conv_bn_relu(w1, w1), *_conv_bn_relu(w1, w1, stride=2), *drop),
        nn.Sequential(*_conv_bn_relu(w1, w2), *_conv_bn_relu(w2, w2), *_conv_bn_relu(w2, w2, stride=2), *drop),
        nn.Sequential(*_conv_bn_relu(w2, w2), *_conv_bn_relu(w2, w2, kernel=1)),
    ]
    return Classifier(stages, w2, num_classes, input_shape, **kw)


_BUILDERS = {"cnn": compact_cnn, "resnet18": resnet18, "allcnn": allcnn}


def build_model(name: str, num_classes: int, input_shape: Sequence[int], width: int | None = None,
                input_range: Sequence[float] = (-float("inf"), float("inf"))) -> Classifier:
    """Build a model by name (one of MODEL_NAMES); `width` overrides the base channel count."""
    if name not in _BUILDERS:
        raise ValueError(f"model={name!r} is not valid; allowed values: {', '.join(map(repr, MODEL_NAMES))}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if len(input_shape) != 3 or min(input_shape) <= 0:
        raise ValueError(f"input_shape must be (channels, height, width) with positive sizes, got {input_shape!r}")
    kw = {} if width is None else {"width": int(width)}
    return _BUILDERS[name](num_classes, tuple(input_shape), input_range=input_range, **kw)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

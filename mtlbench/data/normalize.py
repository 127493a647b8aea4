"""The one place for the input normalisation constants (ImageNet statistics, RGB order)."""

from __future__ import annotations

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

"""The convolutional parts of qmedimg's networks, for images (2D) and volumes (3D): the hybrid model's
backbones (``compact``, ``hqcnn``) and the classical baselines' torchvision networks (ResNet-18 and
VGG-16 on images, ResNet-18 3D on volumes). :mod:`qmedimg.model` puts heads on them.

Example::

    from qmedimg.backbones import make_backbone, baseline_network
    net, width = make_backbone("hqcnn", channels=1, dims=3)      # (B, 1, D, H, W) -> (B, 64)
    resnet = baseline_network("resnet18", 1, 11, stem="3x3", dims=3)   # torchvision's r3d_18, 1 channel in

A network is chosen from the data: ``dims`` is 2 for images (B, C, H, W), 3 for volumes (B, C, D, H, W)
(:attr:`qmedimg.data.Dataset.dims`); the names stay the same.
"""

from __future__ import annotations

import torch
from torch import nn

from qmedimg.errors import QmedimgError

BACKBONES = ("compact", "hqcnn")
BASELINE_SIZES = {"resnet18": (28, 64, 128, 224), "vgg16": (64, 128, 224)}  # image sizes each can take
VOLUME_BASELINE_SIZES = {"resnet18": (28, 64)}  # volume sizes (MedMNIST 3D has 28³ and 64³)
STEMS = ("3x3", "imagenet")  # ResNet-18's first layers (Baseline)

_LAYERS = {2: (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d),
           3: (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, nn.AdaptiveAvgPool3d)}


def _check_dims(dims: int) -> None:
    if dims not in _LAYERS:
        raise ValueError(f"dims {dims!r}: 2 for images (B, C, H, W) or 3 for volumes (B, C, D, H, W)")


def make_backbone(name: str, channels: int, dims: int = 2) -> tuple[nn.Module, int]:
    """A CNN mapping (B, C, H, W) images, or (B, C, D, H, W) volumes for ``dims=3``, to (B, F) features,
    for any side >= 28; returns (net, F). The 3D networks are the 2D ones with Conv3d, BatchNorm3d and
    MaxPool3d (3×3×3 kernels, 2×2×2 pooling) and global average pooling over the volume.

    ``compact``: 2 conv + pool blocks, the lightweight design of hybrid-QML papers.
    ``hqcnn``: 5 conv layers in 3 stages, as in the HQCNN paper's feature extractor.
    """
    _check_dims(dims)
    conv_type, norm, pool_type, global_pool = _LAYERS[dims]

    def conv(cin: int, cout: int) -> list[nn.Module]:
        return [conv_type(cin, cout, 3, padding=1, bias=False), norm(cout), nn.ReLU(inplace=True)]

    if name == "compact":
        layers = [*conv(channels, 16), pool_type(2), *conv(16, 32), pool_type(2)]
        width = 32
    elif name == "hqcnn":
        layers = [
            *conv(channels, 16), *conv(16, 16), pool_type(2),
            *conv(16, 32), *conv(32, 32), pool_type(2),
            *conv(32, 64),
        ]
        width = 64
    else:
        raise ValueError(f"unknown backbone '{name}'; valid: {', '.join(BACKBONES)}")
    return nn.Sequential(*layers, global_pool(1), nn.Flatten()), width


def check_baseline(name: str, size: int, dims: int = 2) -> None:
    """One line if baseline ``name`` cannot take ``size``-sided images (``dims=2``) or volumes (``dims=3``)."""
    if dims == 3:
        if name not in VOLUME_BASELINE_SIZES:
            raise QmedimgError(f"{name} has no 3D version for volumes; on volumes use resnet18 (a 3D ResNet-18) "
                               "or the hybrid model")
        sizes = VOLUME_BASELINE_SIZES[name]
        if size not in sizes:
            raise QmedimgError(f"{name} on volumes cannot take {size}³; it can take sizes "
                               f"{', '.join(map(str, sizes))} (--size)")
    elif size not in BASELINE_SIZES[name]:
        raise QmedimgError(f"{name} cannot take {size}×{size} images; it can take sizes "
                           f"{', '.join(map(str, BASELINE_SIZES[name]))} (--size)")


def baseline_network(name: str, channels: int, num_classes: int, stem: str = "3x3", dims: int = 2) -> nn.Module:
    """A classical reference network: torchvision's ``resnet18`` (``stem="3x3"``: MedMNIST v2's 28×28
    adaptation, a 3×3 stride-1 first convolution and no max-pool; ``"imagenet"``: torchvision's own 7×7
    stride-2 convolution and max-pool) or ``vgg16``, with ``channels`` input channels.

    On volumes (``dims=3``) ``resnet18`` is torchvision's ``r3d_18`` (``torchvision.models.video``): the
    same ResNet-18 with 3×3×3 convolutions and stride 2 in every axis from its second stage, which is what
    MedMNIST v2's "ResNet-18 + 3D" baseline is (a 2D ResNet-18 converted to Conv3d). Its stem takes
    ``channels`` inputs: ``"3x3"`` a 3×3×3 stride-1 convolution (MedMNIST v2's 28 adaptation converted to
    3D), ``"imagenet"`` r3d_18's own 3×7×7 convolution of stride (1, 2, 2). VGG-16 has no 3D version."""
    import torchvision

    _check_dims(dims)
    if stem not in STEMS:
        raise ValueError(f"unknown stem '{stem}'; valid: {', '.join(STEMS)}")
    if dims == 3:
        if name != "resnet18":
            raise QmedimgError(f"{name} has no 3D version for volumes; on volumes use resnet18 (a 3D ResNet-18) "
                               "or the hybrid model")
        net = torchvision.models.video.r3d_18(num_classes=num_classes)
        first = (nn.Conv3d(channels, 64, 3, 1, 1, bias=False) if stem == "3x3" else
                 nn.Conv3d(channels, 64, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False))
        nn.init.kaiming_normal_(first.weight, mode="fan_out", nonlinearity="relu")  # as r3d_18 initialises its own
        net.stem[0] = first
        return net
    if name == "resnet18":
        net = torchvision.models.resnet18(num_classes=num_classes)
        if stem == "3x3":
            net.conv1 = nn.Conv2d(channels, 64, 3, 1, 1, bias=False)
            net.maxpool = nn.Identity()
        else:
            net.conv1 = nn.Conv2d(channels, 64, 7, 2, 3, bias=False)
        return net
    if name == "vgg16":
        net = torchvision.models.vgg16(num_classes=num_classes)
        net.features[0] = nn.Conv2d(channels, 64, 3, padding=1)
        return net
    raise ValueError(f"unknown baseline '{name}'; valid: {', '.join(BASELINE_SIZES)}")


def autocast(network: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """``network(inputs)`` under float16 autocast on the inputs' (CUDA) device, returned as float32."""
    with torch.autocast(inputs.device.type, dtype=torch.float16):
        return network(inputs).float()

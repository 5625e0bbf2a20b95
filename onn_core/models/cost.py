"""Parameter counts and multiply-accumulates per image: what the method compares students by.

Digital MACs count every multiply-accumulate a processor does (convolutions, transposed
convolutions, linear layers, and the frontend's K⁺ − K⁻ subtraction and gains). Optical MACs are
the convolutions the meta-optic performs with light: they cost no digital energy. Sensor values
are what the backend reads from the sensor per image (every capture's output pixels); with the
design's sensor they give the read-out energy (:mod:`onn_core.models.energy`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .frontends import OpticalFrontend


def count_cost(model: nn.Module, image_shape: tuple[int, int, int]) -> dict[str, Any]:
    """Parameters and per-image MACs of ``model`` on images of (channels, height, width)."""
    counts = {"digital_macs": 0, "optical_macs": 0, "sensor_values": 0}

    def layer_hook(module: nn.Module, inputs, output) -> None:
        if isinstance(module, nn.Linear):
            counts["digital_macs"] += module.in_features * module.out_features
        elif isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            counts["digital_macs"] += output[0].numel() * per_output
        elif isinstance(module, nn.ConvTranspose2d):
            per_input = module.out_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            counts["digital_macs"] += inputs[0][0].numel() * per_input

    def frontend_hook(module: OpticalFrontend, inputs, output) -> None:
        height, width = inputs[0].shape[-2:]
        counts["optical_macs"] += module.optical_macs(height, width)
        counts["digital_macs"] += module.digital_macs(height, width)
        counts["sensor_values"] += module.sensor_values(height, width)

    handles = []
    optical_parameters = 0
    for module in model.modules():
        if isinstance(module, OpticalFrontend):
            handles.append(module.register_forward_hook(frontend_hook))
            optical_parameters += sum(p.numel() for p in module.parameters())
        elif isinstance(module, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
            handles.append(module.register_forward_hook(layer_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *image_shape))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "parameters": total,
        "trainable_parameters": trainable,
        "optical_parameters": optical_parameters,
        "digital_parameters": total - optical_parameters,
        **counts,
    }

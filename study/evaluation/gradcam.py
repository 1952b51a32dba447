"""Grad-CAM (Selvaraju et al. 2017) on a model's last spatial block: where it looks for a class."""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from study.models import gradcam_layer


def grad_cam(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """Heatmaps in [0, 1] of shape (N, H, W) for the `target` class of each normalised input."""
    layer = gradcam_layer(model)
    store: dict[str, torch.Tensor] = {}

    def hook(_m, _i, out):
        out.retain_grad()
        store["act"] = out

    handle = layer.register_forward_hook(hook)
    try:
        model.eval()
        with torch.enable_grad():
            logits = model(x.requires_grad_(True))
            model.zero_grad(set_to_none=True)
            logits.gather(1, target.view(-1, 1)).sum().backward()
    finally:
        handle.remove()
    act, grad = store["act"], store["act"].grad
    weights = grad.mean(dim=(2, 3), keepdim=True)  # global-average-pooled gradients
    cam = F.relu((weights * act).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    flat = cam.flatten(1)
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(1e-8)).view_as(cam).detach().cpu().numpy()


def png_bytes(chw_uint8: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(chw_uint8.transpose(1, 2, 0))).save(buf, "PNG")
    return buf.getvalue()

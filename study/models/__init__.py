"""The model zoo: every architecture of the seed study (and more), built from plain options.

``create_model(name, num_classes, **options)`` returns a :class:`Classifier` whose ``forward``
gives raw logits of shape (N, num_classes); ``model.head_output`` tells the trainer which loss
("softmax" → cross-entropy, "sigmoid" → BCE-with-logits on one-hot targets).

Importing this package fills the registry from the torch-free catalog; torch and timm are
imported by the first ``create_model`` and by the torch helpers below on first use (PEP 562),
so listing models and checking options (``study models --list``, ``--help``) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import catalog  # noqa: F401 - fill the registry (names only; builders load on demand)
from .registry import (
    create_model,
    input_interpolation,
    list_models,
    model_info,
    register_model,
)

if TYPE_CHECKING:
    from .layers import ACTIVATIONS, Classifier, count_gflops, count_params, input_norm
    from .regularization import gradcam_layer, l2_penalty, param_groups

# name -> the torch module that defines it
_LAZY = {
    "ACTIVATIONS": "layers",
    "Classifier": "layers",
    "count_gflops": "layers",
    "count_params": "layers",
    "input_norm": "layers",
    "gradcam_layer": "regularization",
    "l2_penalty": "regularization",
    "param_groups": "regularization",
}

__all__ = [
    "ACTIVATIONS",
    "Classifier",
    "count_gflops",
    "count_params",
    "create_model",
    "gradcam_layer",
    "input_interpolation",
    "input_norm",
    "l2_penalty",
    "list_models",
    "model_info",
    "param_groups",
    "register_model",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

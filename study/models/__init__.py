"""The model zoo: every architecture of the seed study (and more), built from plain options.

``create_model(name, num_classes, **options)`` returns a :class:`Classifier` whose ``forward``
gives raw logits of shape (N, num_classes); ``model.head_output`` tells the trainer which loss
("softmax" → cross-entropy, "sigmoid" → BCE-with-logits on one-hot targets).
Importing this package registers the families below.
"""

from __future__ import annotations

from . import backbones, googlenet, vanilla_cnn  # noqa: F401 - fill the registry
from .layers import ACTIVATIONS, Classifier, count_params, input_norm
from .registry import create_model, list_models, model_info, register_model
from .regularization import gradcam_layer, l2_penalty, param_groups

__all__ = [
    "ACTIVATIONS",
    "Classifier",
    "count_params",
    "create_model",
    "gradcam_layer",
    "input_norm",
    "l2_penalty",
    "list_models",
    "model_info",
    "param_groups",
    "register_model",
]

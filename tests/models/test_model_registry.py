"""The model registry answers without torch (issue #16 item 9): names, descriptions, default
options and option checks come from the torch-free catalog; the first build imports the family's
module. The activation names the options accept are exactly the ones the layers build."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO

from study.models import create_model, input_interpolation, registry
from study.models.layers import ACTIVATIONS

NO_TORCH = """
import json, sys
from study.models import list_models, model_info
from study.models.registry import OptionError, get_entry, parse_options
names = list_models()
infos = {n: model_info(n) for n in names}
try:
    parse_options(get_entry("vanilla_cnn"), {"depth": 9})
    refused = ""
except OptionError as e:
    refused = str(e)
before_build = sorted(m for m in ("torch", "timm") if m in sys.modules)
from study.models import create_model
create_model("vanilla_cnn", 3)
print(json.dumps({"names": names, "depth": infos["vanilla_cnn"]["options"]["depth"],
                  "refused": refused, "before_build": before_build,
                  "after_build": "torch" in sys.modules}))
"""


def test_listing_and_checking_options_import_no_torch_until_a_build() -> None:
    r = subprocess.run(
        [sys.executable, "-c", NO_TORCH], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    out = json.loads(r.stdout.splitlines()[-1])
    assert out["before_build"] == [], out  # listing, model_info and option checks
    assert {"vanilla_cnn", "googlenet", "resnet50", "mobilenet_v1_025"} <= set(out["names"])
    assert out["depth"] == 4 and "option 'depth'=9 is invalid" in out["refused"]
    assert out["after_build"]  # the builder's module (and torch) came with the first build


def test_option_activation_names_are_the_layers_activations() -> None:
    assert set(registry.ACTIVATION_NAMES) == set(ACTIVATIONS)


def test_input_interpolation_matches_the_built_model() -> None:
    """Known before building (for the decoded-image cache), the same as the model records."""
    for name in ("timm/test_resnet", "resnet50", "vanilla_cnn"):
        model = create_model(name, 3)
        assert input_interpolation(name) == model.input_interpolation, name
    assert input_interpolation("timm/test_resnet") == "bilinear"  # its pretrained_cfg says so
    assert input_interpolation("resnet50") == "bicubic"

"""The embedded "toon" set: deterministic bytes, seeds that matter, balanced classes, valid PNGs."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from study.data import toon

SIZE = 64


@pytest.fixture(scope="module")
def tiny() -> list[toon.ToonImage]:
    return list(toon.generate(toon.SIZES["tiny"], seed=0, image_size=SIZE))


def test_same_seed_gives_identical_bytes(tiny: list[toon.ToonImage]) -> None:
    again = list(toon.generate(toon.SIZES["tiny"], seed=0, image_size=SIZE))
    assert again == tiny
    assert toon.render(17, seed=0, image_size=SIZE) == tiny[17]  # random access == the loop


def test_same_seed_gives_identical_bytes_in_a_fresh_process(tiny: list[toon.ToonImage]) -> None:
    # load the module on its own: the check is about toon, not about the package's heavy imports
    code = f"""
import hashlib, importlib.util, sys
spec = importlib.util.spec_from_file_location("toon", {toon.__file__!r})
sys.modules["toon"] = t = importlib.util.module_from_spec(spec)
spec.loader.exec_module(t)
print(hashlib.sha256(b"".join(i.png for i in t.generate(14, 0, {SIZE}))).hexdigest())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == hashlib.sha256(b"".join(i.png for i in tiny[:14])).hexdigest()


def test_different_seeds_differ(tiny: list[toon.ToonImage]) -> None:
    other = list(toon.generate(len(tiny), seed=1, image_size=SIZE))
    # same slots (names, labels, characters), different drawings in every slot
    assert [(i.name, i.label, i.group) for i in other] == [(i.name, i.label, i.group) for i in tiny]
    assert all(a.png != b.png for a, b in zip(tiny, other, strict=True))


def test_every_class_and_character_present_and_balanced(tiny: list[toon.ToonImage]) -> None:
    n = len(tiny)
    assert Counter(i.label for i in tiny) == {e: n // 7 for e in toon.EMOTIONS}
    assert Counter(i.group for i in tiny) == {c: n // len(toon.CHARACTERS) for c in toon.CHARACTERS}
    pairs = Counter((i.group, i.label) for i in tiny)
    assert len(pairs) == 7 * len(toon.CHARACTERS) and len(set(pairs.values())) == 1
    # even the smallest possible set has every class
    assert {i.label for i in toon.generate(7, seed=3, image_size=16)} == set(toon.EMOTIONS)


def test_every_named_size_is_balanced_and_the_cast_has_both_styles() -> None:
    # whole rounds of (character, emotion): every named size has equal classes and characters
    rounds = len(toon.EMOTIONS) * len(toon.CHARACTERS)
    assert all(n % rounds == 0 for n in toon.SIZES.values()), toon.SIZES
    assert len(toon.CHARACTERS) == len(set(toon.CHARACTERS)) >= 4
    styles = Counter(c.style for c in toon._CAST)
    assert styles["anime"] >= 2 and styles["3d"] >= 2


def test_images_are_valid_rgb_pngs_with_content(tiny: list[toon.ToonImage]) -> None:
    assert len({i.name for i in tiny}) == len(tiny)
    for item in tiny:
        assert item.name.startswith(f"{item.group}/{item.label}/") and item.name.endswith(".png")
        im = Image.open(io.BytesIO(item.png))
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (SIZE, SIZE)
        assert np.asarray(im).std() > 10  # a drawn face, not a blank canvas
    big = Image.open(io.BytesIO(toon.render(0, seed=0, image_size=128).png))
    assert big.size == (128, 128)


def test_emotion_cues_move_the_face_parameters_as_intended() -> None:
    """Average over many draws: the cues people use point the right way (and overlap per image)."""
    rng = np.random.default_rng(0)
    mean = {}
    for e in toon.EMOTIONS:
        draws = [toon._expression(rng, e)[0] for _ in range(300)]
        mean[e] = {k: np.mean([d[k] for d in draws]) for k in toon._NEUTRAL}
    assert mean["joy"]["mouth_curve"] > 0.3 > mean["neutral"]["mouth_curve"] > -0.1
    assert mean["sadness"]["mouth_curve"] < -0.2 and mean["sadness"]["lid"] < -0.1
    assert mean["anger"]["lid"] > 0.1 and mean["anger"]["brow_tilt"] > 0.05
    assert mean["fear"]["brow_tilt"] < -0.03 and mean["fear"]["eye_open"] > 1.1
    assert mean["surprise"]["mouth_round"] > 0.5 and mean["surprise"]["eye_open"] > 1.1
    assert abs(mean["disgust"]["mouth_asym"]) < 0.2  # sneer side is random, so the mean cancels
    curves = [toon._expression(rng, "sadness")[0]["mouth_curve"] for _ in range(300)]
    assert max(curves) > mean["neutral"]["mouth_curve"]  # weak sadness overlaps with neutral


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"num_images": 0}, "num_images"),
        ({"num_images": 5, "seed": -1}, "seed"),
        ({"num_images": 5, "image_size": 8}, "image_size"),
        ({"num_images": 5, "image_size": 64.0}, "image_size"),
        ({"num_images": True}, "num_images"),
    ],
)
def test_bad_arguments_fail_before_drawing(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"toon: {field} must be"):
        toon.generate(**kwargs)  # raised by the call itself, not on first iteration

"""The Grad-CAM section: for the best evaluated trial with maps, a few test images per true class
beside their Grad-CAM map (where the network finds evidence for its prediction). The rows to show
(pandas), the overlay image (PIL), and the section's HTML.
"""

from __future__ import annotations

import functools
import io
from typing import Any

import numpy as np
import pandas as pd
import plotly.colors as pc
from PIL import Image

from study.report.evaluated import label_names
from study.report.load import StudyData
from study.report.markup import esc, img, note
from study.report.trials import best_trial


def gradcam_items(gradcam: pd.DataFrame, classes: list[str], per_class: int = 4) -> pd.DataFrame:
    """Up to ``per_class`` Grad-CAM rows per true class, in class order."""
    g = gradcam.assign(
        label=label_names(gradcam["label"], classes), pred=label_names(gradcam["pred"], classes)
    )
    order = {c: i for i, c in enumerate(classes)}
    g = g.assign(_order=g["label"].map(order).fillna(len(order)))
    g = g.sort_values(["_order", "label"], kind="stable")
    return g.groupby("label", sort=False).head(per_class).drop(columns="_order")


@functools.cache
def _turbo_lut() -> np.ndarray:
    colors = pc.sample_colorscale("Turbo", list(np.linspace(0, 1, 256)))
    return np.array([pc.unlabel_rgb(c) for c in colors], dtype=np.uint8)


def gradcam_overlay(image_png: bytes, cam: Any, side: int, alpha: float = 0.45) -> bytes:
    """The image with its Grad-CAM map (values in [0, 1]) blended on top, as PNG bytes."""
    img = Image.open(io.BytesIO(image_png)).convert("RGB")
    heat = np.clip(np.asarray(cam, dtype=np.float32).reshape(side, side), 0, 1)
    colored = Image.fromarray(_turbo_lut()[(heat * 255).astype(np.uint8)], "RGB")
    colored = colored.resize(img.size, Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    Image.blend(img, colored, alpha).save(buf, format="PNG")
    return buf.getvalue()


def _pick_evaluated(d: StudyData, ids: list[str]) -> str:
    if d.trials is not None:
        best = best_trial(d.trials, d.settings, among=set(ids))
        if best is not None:
            return str(best["trial_id"])
    return sorted(ids)[0]


def gradcam_section(d: StudyData, trial: str | None) -> str:
    g = d.gradcam
    if g is None or g.empty:
        return note(
            "No Grad-CAM maps stored for this study (the runner computes them for the "
            "best model at the end of the study)."
        )
    ids = g["trial_id"].astype(str)
    shown = trial if trial in set(ids) else _pick_evaluated(d, ids.unique().tolist())
    items = gradcam_items(g[ids == shown], d.classes)
    parts = [
        f"<p>Trial <b>{esc(shown)}</b>. Left: test image; right: where the network looks "
        "(Grad-CAM, red = most evidence for the predicted class).</p>"
    ]
    for label, rows in items.groupby("label", sort=False):
        overlay = gradcam_overlay
        cells = "".join(
            f"<figure>{img(r['image'], 'test image')}"
            f"{img(overlay(r['image'], r['cam'], int(r['cam_size'])), 'Grad-CAM')}"
            f"<figcaption>predicted <b>{esc(str(r['pred']))}</b> ({float(r['confidence']):.0%})"
            f'<br><span class="path">{esc(str(r["path"]))}</span></figcaption></figure>'
            for _, r in rows.iterrows()
        )
        parts.append(f'<h3>true class: {esc(str(label))}</h3><div class="gallery">{cells}</div>')
    return "".join(parts)

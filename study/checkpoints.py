"""Trial checkpoints: what a trial saves each epoch and how a retried trial finds the newest
readable one (Ray restores the latest; a corrupt one must not end the trial)."""

from __future__ import annotations

from pathlib import Path

import torch


def save_state(path: Path, model, opt, epoch: int, history: list[dict], best: dict) -> None:
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "epoch": epoch,
            "history": history,
            "best": best,
            "torch_rng": torch.get_rng_state(),
        },
        path / "last.pt",
    )


def _candidates(ckpt) -> list:
    """The checkpoint Ray restores, then its older siblings (num_to_keep=2), newest first."""
    from pyarrow import fs as pafs
    from ray import tune

    parent = str(Path(ckpt.path).parent)
    infos = ckpt.filesystem.get_file_info(pafs.FileSelector(parent))
    older = sorted(
        (
            i.path
            for i in infos
            if i.type == pafs.FileType.Directory
            and Path(i.path).name.startswith("checkpoint_")
            and i.path < ckpt.path
        ),
        reverse=True,
    )
    return [ckpt, *(tune.Checkpoint(p, ckpt.filesystem) for p in older)]


def restore(ckpt, model, opt, device) -> tuple[int, list, dict, dict | None, str]:
    """Load the newest readable checkpoint; a corrupt one is named and skipped, never fatal."""
    notes = []
    for cand in _candidates(ckpt):
        try:
            with cand.as_directory() as d:
                state = torch.load(Path(d) / "last.pt", map_location=device, weights_only=True)
                best_state = torch.load(Path(d) / "best.pt", map_location="cpu", weights_only=True)
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
        except Exception as e:  # unreadable, truncated, or from another model: try an older one
            notes.append(
                f"checkpoint {cand.path} is unreadable ({type(e).__name__}: {str(e)[:120]})"
            )
            continue
        torch.set_rng_state(state["torch_rng"])
        notes.append(f"resumed from checkpoint {cand.path} (epoch {state['epoch']})")
        return state["epoch"], state["history"], state["best"], best_state, "; ".join(notes)
    notes.append("restarted from scratch")
    return 0, [], {"value": None, "epoch": 0}, None, "; ".join(notes)

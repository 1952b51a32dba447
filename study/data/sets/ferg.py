"""FERG-DB (Aneja et al. 2016): 6 cartoon characters x 7 emotions, 256 px. The character is each
image's group, so `by-group` splits hold out whole characters."""

from __future__ import annotations

from pathlib import Path

from study.data.registry import DatasetSpec, register_dataset
from study.data.sources import SourceError, SourceItem, is_junk, list_tree

FERG_CHARACTERS = ("aia", "bonnie", "jules", "malcolm", "mery", "ray")
FERG_EMOTIONS = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")


def read_ferg(source: str | Path) -> tuple[list[SourceItem], list[tuple[str, str]]]:
    """FERG-DB as distributed: `FERG_DB_256/<char>/<char>_<emotion>/<char>_<emotion>_<n>.png`.

    `source` may be the FERG_DB_256 folder itself, its parent, or the archive. The character becomes
    the item's group so that `by-group` splits can hold out whole characters.
    """
    source = Path(source)
    listing = list_tree(source)
    items: list[SourceItem] = []
    problems = list(listing.problems)
    for n in listing.files:
        if is_junk(n):
            continue
        parts = n.split("/")
        # locate the <char>/<char>_<emotion>/file triple at the end of the path
        if len(parts) < 3 or parts[-3] not in FERG_CHARACTERS:
            continue
        char, folder = parts[-3], parts[-2]
        emotion = folder[len(char) + 1 :] if folder.startswith(f"{char}_") else ""
        if emotion not in FERG_EMOTIONS:
            problems.append((n, f"folder {folder!r} is not <character>_<emotion>"))
            continue
        items.append(SourceItem(path=n, label=emotion, group=char, read=listing.reader(n)))
    if not items:
        raise SourceError(
            f"source {source}: no FERG-DB images found; expected "
            "FERG_DB_256/<character>/<character>_<emotion>/<character>_<emotion>_<n>.png "
            f"with characters {', '.join(FERG_CHARACTERS)}"
        )
    return items, problems


register_dataset(
    DatasetSpec(
        name="ferg",
        reader=lambda src, seed: read_ferg(src),
        description="FERG-DB 256 px, 6 characters x 7 emotions; characters kept as groups",
        classes=FERG_EMOTIONS,
        default_split="by-group",
    )
)

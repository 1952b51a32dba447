"""`prepare` touches nothing but its own output, and every input it cannot use is named (#12)."""

from __future__ import annotations

import io
import json
import os
import stat
import struct
import threading
import warnings
import zipfile
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import face_png, tree_snapshot
from PIL import Image

from study import storage
from study.data import __main__ as data_cli
from study.data import decode, load_split, open_dataset, prepare, sources
from study.data.decode import BadImage, decode_rgb, inspect_image
from study.data.registry import check_name
from study.data.sources import SourceError, read_class_folders


def _images(root: Path, classes: tuple[str, ...] = ("a", "b"), n: int = 3) -> Path:
    for c, cls in enumerate(classes):
        for i in range(n):
            face_png(root / cls / f"{i}.png", seed=100 * c + i)
    return root


def _header_only_png(w: int, h: int) -> bytes:
    """A valid PNG header that declares w x h pixels, with (almost) no pixel data: ~65 bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + (chunk(b"IEND", b""))
    )


def _lying_zip(path: Path, member: str, real_size: int, declared: int) -> None:
    """A zip whose headers say `member` inflates to `declared` bytes; it inflates to `real_size`."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, b"\0" * real_size)
    raw = bytearray(path.read_bytes())
    local, central = raw.find(b"PK\x03\x04"), raw.find(b"PK\x01\x02")
    struct.pack_into("<I", raw, local + 22, declared)  # local header: uncompressed size
    struct.pack_into("<I", raw, central + 24, declared)  # central directory: uncompressed size
    path.write_bytes(bytes(raw))


def _lock(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make a folder unreadable (root ignores permissions, so also make scandir refuse it)."""
    path.chmod(0)
    if os.geteuid() == 0:
        real = os.scandir

        def scandir(p=".") -> os.ScandirIterator:
            if os.path.realpath(p) == os.path.realpath(path):
                raise PermissionError(13, "Permission denied", str(p))
            return real(p)

        monkeypatch.setattr(os, "scandir", scandir)


# --- the bad inputs: each builds its case under tmp and returns (argv after "prepare", words the
# error must contain). Paths are absolute; the data dir is tmp/d unless the case says otherwise.

Case = Callable[[Path, pytest.MonkeyPatch], tuple[list[str], str]]


def _source_is_output(t: Path, mp) -> tuple[list[str], str]:  # issue #12.1
    _images(t / "d" / "mine")
    argv = ["folder", "--source", str(t / "d/mine"), "--data-dir", str(t / "d")]
    return [*argv, "--name", "mine"], "--source"


def _source_inside_output(t: Path, mp) -> tuple[list[str], str]:
    _images(t / "d" / "mine" / "raw")
    argv = ["folder", "--source", str(t / "d/mine/raw"), "--data-dir", str(t / "d")]
    return [*argv, "--name", "mine", "--overwrite"], "--source"


def _source_contains_output(t: Path, mp) -> tuple[list[str], str]:
    _images(t / "src")
    return ["folder", "--source", str(t / "src"), "--data-dir", str(t / "src/a")], "--source"


def _name(value: Callable[[Path], str]) -> Case:
    def case(t: Path, mp) -> tuple[list[str], str]:
        _images(t / "src")
        _images(t / "d" / "other")  # another data set's folder that must survive
        argv = ["folder", "--source", str(t / "src"), "--data-dir", str(t / "d")]
        return [*argv, "--name", value(t), "--overwrite"], "--name"

    return case


def _foreign_dir(t: Path, mp) -> tuple[list[str], str]:
    _images(t / "src")
    (t / "d" / "mine").mkdir(parents=True)
    (t / "d" / "mine" / "thesis.tex").write_text("not prepare's")
    argv = ["folder", "--source", str(t / "src"), "--data-dir", str(t / "d"), "--name", "mine"]
    return [*argv, "--overwrite"], str(t / "d" / "mine")


def _foreign_manifest(t: Path, mp) -> tuple[list[str], str]:
    _images(t / "src")
    (t / "d" / "mine").mkdir(parents=True)
    (t / "d" / "mine" / "manifest.json").write_text('{"name": "some other tool"}')
    argv = ["folder", "--source", str(t / "src"), "--data-dir", str(t / "d"), "--name", "mine"]
    return [*argv, "--overwrite"], str(t / "d" / "mine")


def _symlinked_output(t: Path, mp) -> tuple[list[str], str]:
    _images(t / "src")
    (t / "elsewhere").mkdir()
    (t / "d").mkdir()
    (t / "d" / "mine").symlink_to(t / "elsewhere")
    argv = ["folder", "--source", str(t / "src"), "--data-dir", str(t / "d"), "--name", "mine"]
    return [*argv, "--overwrite"], str(t / "d" / "mine")


def _extra_files_in_prepared(t: Path, mp) -> tuple[list[str], str]:
    _images(t / "src")
    prepare("folder", source=t / "src", data_dir=t / "d", out_name="mine")
    (t / "d" / "mine" / "notes.txt").write_text("mine")
    argv = ["folder", "--source", str(t / "src"), "--data-dir", str(t / "d"), "--name", "mine"]
    return [*argv, "--seed", "7", "--overwrite"], "notes.txt"


def _bad_file(build: Callable[[Path, pytest.MonkeyPatch], None], words: str) -> Case:
    def case(t: Path, mp) -> tuple[list[str], str]:
        _images(t / "src")
        build(t / "src", mp)
        return ["folder", "--source", str(t / "src"), "--data-dir", str(t / "d")], words

    return case


def _bomb(src: Path, mp) -> None:  # issue #12.9
    (src / "a" / "bomb.png").write_bytes(_header_only_png(100_000, 100_000))


def _non_utf8(src: Path, mp) -> None:
    with open(os.fsencode(src / "a") + b"/caf\xe9.png", "wb") as f:
        f.write(b"x")


def _zip_case(kind: str) -> Case:
    def case(t: Path, mp) -> tuple[list[str], str]:
        src = _images(t / "src")
        zpath = t / "mine.zip"
        if kind == "cap":  # a member that declares more than the cap (cap lowered for speed)
            mp.setattr(sources, "MAX_MEMBER_BYTES", 10_000, raising=False)
            with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
                zf.writestr("a/huge.png", b"\0" * 50_000)
        else:  # a header that lies: declares 100 bytes, inflates to 50,000
            _lying_zip(zpath, "a/liar.png", 50_000, 100)
        with zipfile.ZipFile(zpath, "a") as zf:
            for f in sorted(src.rglob("*.png")):
                zf.write(f, f.relative_to(src).as_posix())
        argv = ["folder", "--source", str(zpath), "--data-dir", str(t / "d")]
        return argv, "a/huge.png: zip member declares 50,000 bytes" if kind == "cap" else (
            "a/liar.png: cannot be read from mine.zip"
        )

    return case


def _nested(src: Path, mp) -> None:
    face_png(src / "a" / "style_a" / "x.png", seed=9)


def _single_folder(t: Path, mp) -> tuple[list[str], str]:  # anger/style_a/x.png was "style_a"
    _images(t / "src" / "anger", ("style_a", "style_b"))
    return ["folder", "--source", str(t / "src"), "--data-dir", str(t / "d")], "'anger'"


CASES: dict[str, Case] = {
    "source is the output dir": _source_is_output,
    "source inside the output dir": _source_inside_output,
    "source contains the output dir": _source_contains_output,
    "name .": _name(lambda t: "."),
    "name ..": _name(lambda t: ".."),
    "name absolute dir": _name(lambda t: str(t / "d" / "other")),
    "name with slash": _name(lambda t: "other/x"),
    "name empty": _name(lambda t: ""),
    "existing folder prepare did not write": _foreign_dir,
    "existing folder with another tool's manifest": _foreign_manifest,
    "output is a symlink": _symlinked_output,
    "overwrite would delete a user's file": _extra_files_in_prepared,
    "decompression bomb": _bad_file(_bomb, "a/bomb.png: declares"),
    "zip member over the cap": _zip_case("cap"),
    "zip header lies about the size": _zip_case("lie"),
    "dangling symlink": _bad_file(
        lambda s, mp: (s / "a" / "gone.png").symlink_to(s / "nowhere.png"),
        "a/gone.png: broken symbolic link",
    ),
    "looping symlink": _bad_file(
        lambda s, mp: (s / "b" / "loop.png").symlink_to(s / "b" / "loop.png"),
        "b/loop.png: symbolic link loop",
    ),
    "symlink to a folder above": _bad_file(
        lambda s, mp: (s / "b" / "up").symlink_to(s), "b/up/: symbolic link loop"
    ),
    "unreadable sub-folder": _bad_file(
        lambda s, mp: ((s / "c").mkdir(), _lock(s / "c", mp)), "c/: folder cannot be read"
    ),
    "non-UTF-8 file name": _bad_file(_non_utf8, "a/caf\\xe9.png: name is not valid UTF-8"),
    "named pipe": _bad_file(lambda s, mp: os.mkfifo(s / "a" / "pipe.png"), "a/pipe.png: not a"),
    "image nested below its class folder": _bad_file(_nested, "a/style_a/x.png"),
    "single folder: class or wrapper?": _single_folder,
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_exits_2_names_it_and_changes_nothing(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    t = tmp_path / "t"  # the data dir's parent too is inside the snapshot
    t.mkdir()
    argv, words = CASES[case](t, monkeypatch)
    before = tree_snapshot(tmp_path)
    capsys.readouterr()
    try:
        rc = data_cli.main(["prepare", *argv])
        err = capsys.readouterr().err
        assert rc == 2, err
        assert err.startswith("error: ") and words in err, err
        if "bad file(s)" not in err:  # a list of bad files has a line each; all else one line
            assert err.count("\n") == 1, err
        assert "Traceback" not in err
        assert tree_snapshot(tmp_path) == before  # no temp folder left, nothing replaced
    finally:
        for p in t.rglob("*"):  # let pytest clean up a locked folder
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)


def test_skip_bad_skips_every_bad_entry_and_lists_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _images(tmp_path / "src")
    _bomb(src, monkeypatch)
    _non_utf8(src, monkeypatch)
    (src / "a" / "gone.png").symlink_to(src / "nowhere.png")
    (src / "b" / "loop.png").symlink_to(src / "b" / "loop.png")
    (src / "b" / "up").symlink_to(src)
    (src / "c").mkdir()
    _lock(src / "c", monkeypatch)
    try:
        res = prepare("folder", source=src, data_dir=tmp_path / "d", skip_bad=True)
    finally:
        (src / "c").chmod(0o755)
    assert len(res.table) == 6 and sorted(res.table["label"].unique()) == ["a", "b"]
    on_disk = json.loads((res.out_dir / "manifest.json").read_text())
    assert {s["path"] for s in on_disk["skipped"]} == {
        "a/bomb.png",
        "a/caf\\xe9.png",
        "a/gone.png",
        "b/loop.png",
        "b/up/",
        "c/",
    }
    assert "skipped files: 6" in res.summary


def test_overwrite_replaces_only_what_prepare_wrote(tmp_path: Path) -> None:
    src = _images(tmp_path / "src")
    _images(tmp_path / "d" / "raw_photos")  # a user's folder next to the data sets
    first = prepare("folder", source=src, data_dir=tmp_path / "d", out_name="mine")
    (first.out_dir / "cache").mkdir()  # the tensor cache is prepare's side of the folder too
    others = tree_snapshot(tmp_path / "d" / "raw_photos")
    with pytest.raises(FileExistsError, match="--overwrite"):
        prepare("folder", source=src, data_dir=tmp_path / "d", out_name="mine", seed=3)
    again = prepare(
        "folder", source=src, data_dir=tmp_path / "d", out_name="mine", seed=3, overwrite=True
    )
    assert again.manifest["version"] != first.manifest["version"]
    assert json.loads((again.out_dir / "manifest.json").read_text())["seed"] == 3
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["mine", "raw_photos"]
    assert tree_snapshot(tmp_path / "d" / "raw_photos") == others


@pytest.mark.parametrize("umask", [0o022, 0o002], ids=["022", "002"])
def test_prepared_folder_follows_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        res = prepare("folder", source=_images(tmp_path / "src"), data_dir=tmp_path / "d")
        load_split(open_dataset(tmp_path / "d", "folder"), "train", 32)  # writes the cache
    finally:
        os.umask(old)
    folders = [res.out_dir, res.out_dir / "cache"]
    for p in [*folders, *res.out_dir.iterdir(), *(res.out_dir / "cache").iterdir()]:
        expect = 0o777 & ~umask if p in folders else 0o666 & ~umask
        assert stat.S_IMODE(p.stat().st_mode) == expect, p


def test_remote_prefix_without_prepare_manifest_needs_overwrite(tmp_path: Path) -> None:
    data = f"mock://{tmp_path.name}/data"  # pyarrow's in-memory file system, one per process
    src = _images(tmp_path / "src")
    fs, path = storage.resolve(f"{data}/mine")
    fs.create_dir(path)
    storage.write_text(f"{data}/mine/readme.txt", "someone else's")
    with pytest.raises(FileExistsError, match="no manifest written by prepare"):
        prepare("folder", source=src, data_dir=data, out_name="mine")
    assert not storage.exists(f"{data}/mine/images.parquet")
    prepare("folder", source=src, data_dir=data, out_name="mine", overwrite=True)
    assert storage.read_text(f"{data}/mine/readme.txt") == "someone else's"
    assert prepare("folder", source=src, data_dir=data, out_name="mine").reused


def test_same_input_same_output_with_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Images over the pixel limit are refused every time, whatever the threads interleave
    (the limit is lowered so that 'large' images are cheap: 400x400 > 100,000 pixels)."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)
    src = _images(tmp_path / "src", n=15)
    big = {f"{c}/big{i}.png" for c in "ab" for i in range(6)}
    for j, p in enumerate(sorted(big)):
        Image.fromarray(np.full((400, 400), j * 9, np.uint8), "L").save(src / p)
    with warnings.catch_warnings():  # PIL warns about each one; here only the result counts
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        filters = list(warnings.filters)
        runs = [
            prepare("folder", source=src, data_dir=tmp_path / f"d{k}", skip_bad=True, workers=8)
            for k in range(3)
        ]
        assert warnings.filters == filters  # decoding leaves the process's warning state alone
    for r in runs:
        assert len(r.table) == 30 and r.manifest["version"] == runs[0].manifest["version"]
        assert {s["path"] for s in r.manifest["skipped"]} == big
        assert all(
            "declares 400x400 = 160,000 pixels, over the limit of 100,000" in s["reason"]
            for s in r.manifest["skipped"]
        )


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_two_decodes_in_the_worst_interleaving_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """The race of #12.10, forced: thread A decodes a small image and finishes while thread B is
    about to open a large one. A size check made of a process-wide warnings filter was undone by
    A's exit, so B's large image was decoded and stored; it must be refused like any other time."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)
    small = _png(Image.new("L", (48, 48), 7))
    big = _png(Image.new("L", (400, 400), 7))
    a_inside, b_inside, a_done = threading.Event(), threading.Event(), threading.Event()
    real_open, real_to_rgb = Image.open, decode.to_rgb

    def open_(fp, *args, **kwargs):
        if fp.getvalue() == big:
            b_inside.set()
            a_done.wait(10)
        else:
            a_inside.set()
            b_inside.wait(10)
        return real_open(fp, *args, **kwargs)

    def to_rgb(img: Image.Image) -> Image.Image:  # called once A's decode has returned
        out = real_to_rgb(img)
        if img.size == (48, 48):
            a_done.set()
        return out

    monkeypatch.setattr(Image, "open", open_)
    monkeypatch.setattr(decode, "to_rgb", to_rgb)
    with ThreadPoolExecutor(2) as pool, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        fa = pool.submit(inspect_image, small)
        assert a_inside.wait(10)
        fb = pool.submit(inspect_image, big)
        assert fa.result().width == 48
        with pytest.raises(BadImage, match="declares 400x400 = 160,000 pixels"):
            fb.result()


def test_bomb_header_is_refused_before_decoding() -> None:
    data = _header_only_png(100_000, 100_000)
    assert len(data) < 80
    with pytest.raises(BadImage, match="declares too many pixels"):
        inspect_image(data)


def test_16_bit_values_scale_by_the_mode_not_by_the_image(tmp_path: Path) -> None:
    """PIL reads a PGM with maxval > 255 as mode "I" scaled to 0..65535; a 16-bit PGM whose
    brightest pixel is 255 or 256 is nearly black, not white vs black."""

    def pgm(maxval: int, values: list[int]) -> bytes:
        body = np.array(values, ">u2").reshape(8, 8).repeat(4, 0).repeat(4, 1)
        return f"P5 32 32 {maxval}\n".encode() + body.tobytes()

    for top in (255, 256):
        out = np.asarray(decode_rgb(pgm(65535, [0] * 63 + [top])))
        assert out.max() == round(top / 65535 * 255) == 1, top
    mid = np.asarray(decode_rgb(pgm(1023, [512] * 64)))  # PIL rescales 512/1023 to ~32800
    assert np.all(mid == 128)
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 40), 70_000, np.int32), "I").save(buf, "TIFF")
    assert np.all(np.asarray(decode_rgb(buf.getvalue())) == 255)  # 32-bit "I": clipped


def test_class_level(tmp_path: Path) -> None:
    flat = _images(tmp_path / "flat")
    assert {i.label for i in read_class_folders(flat)[0]} == {"a", "b"}
    # a zip of a folder holds that folder: the one wrapper `folder` looks through
    zpath = tmp_path / "mine.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in sorted(flat.rglob("*.png")):
            zf.write(f, "mine/" + f.relative_to(flat).as_posix())
    assert {i.label for i in read_class_folders(zpath)[0]} == {"a", "b"}
    # known classes (manga): wrappers that are not a class are looked through
    wrapped = _images(tmp_path / "w" / "Manga Facial Expressions", ("angry", "sad"))
    items, _ = read_class_folders(wrapped.parent, ("angry", "sad"))
    assert {i.label for i in items} == {"angry", "sad"}
    with pytest.raises(SourceError, match="single folder 'Manga Facial Expressions'"):
        read_class_folders(wrapped.parent)  # for `folder` it is a class, or not: refused
    nested = _images(tmp_path / "n", ("anger", "joy"))
    face_png(nested / "anger" / "style_a" / "x.png", seed=1)
    with pytest.raises(SourceError, match=r"'anger/style_a/x.png' is nested.*first folder level"):
        read_class_folders(nested)


@pytest.mark.parametrize("good", ["mine", "toon-v2", "a.b_c", "..x", "A1"])
def test_plain_names_pass(good: str) -> None:
    assert check_name(good) == good

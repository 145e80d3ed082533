"""Image reading for every format and orientation case, and atomic, metadata-free writing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from imgtool.errors import InputError, OutputError
from imgtool.io import (
    as_image,
    atomic_write,
    read_image,
    read_image_header,
    read_mask,
    write_csv,
    write_json,
    write_png,
)


@pytest.fixture
def photo(rng: np.random.Generator) -> np.ndarray:
    """A smooth 96x128 RGB image (smooth so that JPEG round trips stay close)."""
    y, x = np.mgrid[0:96, 0:128].astype(np.float32)
    img = np.stack([x * 1.8 + 10, y * 2.2 + 20, (x + y) * 0.8 + 30], axis=2)
    img += rng.normal(0, 1.0, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int32) - b.astype(np.int32)).mean())


def test_png_rgb_roundtrip_exact(tmp_path: Path, photo: np.ndarray) -> None:
    Image.fromarray(photo).save(tmp_path / "a.png")
    img, info = read_image(tmp_path / "a.png")
    assert img.dtype == np.uint8 and img.shape == (96, 128, 3)
    np.testing.assert_array_equal(img, photo)
    assert (info.width, info.height, info.orientation) == (128, 96, 1)
    assert len(info.sha256) == 64


def test_jpeg_close(tmp_path: Path, photo: np.ndarray) -> None:
    Image.fromarray(photo).save(tmp_path / "a.jpg", quality=95)
    img, _ = read_image(tmp_path / "a.jpg")
    assert img.shape == photo.shape
    assert _mean_abs(img, photo) < 2.0


def test_png_16bit_rgb_and_gray(tmp_path: Path, photo: np.ndarray) -> None:
    p16 = photo.astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / "rgb16.png"), p16[:, :, ::-1])
    cv2.imwrite(str(tmp_path / "g16.png"), p16[:, :, 1])
    img, _ = read_image(tmp_path / "rgb16.png")
    np.testing.assert_array_equal(img, photo)
    g, _ = read_image(tmp_path / "g16.png")
    assert g.shape == (96, 128, 3)
    for c in range(3):
        np.testing.assert_array_equal(g[:, :, c], photo[:, :, 1])


def test_tiff_8_and_16bit(tmp_path: Path, photo: np.ndarray) -> None:
    tifffile.imwrite(tmp_path / "a8.tif", photo)
    tifffile.imwrite(tmp_path / "a16.tiff", photo.astype(np.uint16) * 257)
    np.testing.assert_array_equal(read_image(tmp_path / "a8.tif")[0], photo)
    np.testing.assert_array_equal(read_image(tmp_path / "a16.tiff")[0], photo)


def test_grayscale_rgba_palette(tmp_path: Path, photo: np.ndarray) -> None:
    gray = photo[:, :, 0]
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    g, _ = read_image(tmp_path / "g.png")
    np.testing.assert_array_equal(g, np.repeat(gray[:, :, None], 3, axis=2))

    rgba = np.dstack([photo, np.full(photo.shape[:2], 77, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png")[0], photo)

    pal = Image.fromarray(photo).quantize(colors=64)
    pal.save(tmp_path / "p.png")
    expected = np.asarray(pal.convert("RGB"))
    np.testing.assert_array_equal(read_image(tmp_path / "p.png")[0], expected)


def test_cmyk_jpeg(tmp_path: Path, photo: np.ndarray) -> None:
    Image.fromarray(photo).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    img, _ = read_image(tmp_path / "c.jpg")
    assert img.shape == photo.shape
    assert _mean_abs(img, photo) < 3.0


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation(tmp_path: Path, orientation: int) -> None:
    # An asymmetric image: a bright block in the top-left corner of the UPRIGHT picture.
    upright = np.full((80, 120, 3), 40, np.uint8)
    upright[:20, :30] = 250
    # Store it the way a camera would for this orientation tag: apply the inverse transform.
    inverse = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1, :],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.rot90(a, 1),
        7: lambda a: np.swapaxes(a[::-1, ::-1], 0, 1),
        8: lambda a: np.rot90(a, -1),
    }[orientation]
    stored = np.ascontiguousarray(inverse(upright))
    exif = Image.Exif()
    exif[274] = orientation
    Image.fromarray(stored).save(tmp_path / "o.jpg", quality=98, exif=exif)
    img, info = read_image(tmp_path / "o.jpg")
    assert info.orientation == orientation
    assert img.shape == upright.shape
    assert _mean_abs(img, upright) < 3.0
    # And PIL's own reference implementation agrees.
    from PIL import ImageOps

    with Image.open(tmp_path / "o.jpg") as im:
        ref = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert _mean_abs(img, ref) < 1.0


def test_header_only_pixel_limit(tmp_path: Path, photo: np.ndarray) -> None:
    Image.fromarray(photo).save(tmp_path / "a.png")
    assert read_image_header(tmp_path / "a.png") == (128, 96, 1)
    with pytest.raises(InputError, match="over the limit"):
        read_image(tmp_path / "a.png", max_pixels=128 * 96 - 1)
    assert read_image(tmp_path / "a.png", max_pixels=128 * 96)[0].shape == (96, 128, 3)


def test_pixel_limit_refused_before_decoding(tmp_path: Path) -> None:
    # A 20000 x 20000 PNG header over garbage data: decoding would fail, and would need
    # 1.2 GB; the limit must refuse it from the header alone.
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b"")
    (tmp_path / "huge.png").write_bytes(data)
    with pytest.raises(InputError, match="400.0 megapixels, over the limit of 100.0"):
        read_image(tmp_path / "huge.png")


def test_bad_files(tmp_path: Path, photo: np.ndarray) -> None:
    with pytest.raises(InputError, match="file not found"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        read_image(tmp_path / "empty.jpg")
    (tmp_path / "text.jpg").write_text("this is not a photo\n")
    with pytest.raises(InputError, match="not a recognised image"):
        read_image(tmp_path / "text.jpg")
    Image.fromarray(photo).save(tmp_path / "ok.jpg", quality=90)
    raw = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match="truncated"):
        read_image(tmp_path / "trunc.jpg")
    Image.fromarray(photo[:40, :200 // 2]).save(tmp_path / "small.png")
    with pytest.raises(InputError, match="below the minimum of 64"):
        read_image(tmp_path / "small.png")
    with pytest.raises(InputError, match="folder"):
        read_image(tmp_path)


def test_as_image_arrays(photo: np.ndarray) -> None:
    img, info = as_image(photo)
    assert img is photo or np.array_equal(img, photo)
    assert info.path is None and info.width == 128
    g, _ = as_image(photo[:, :, 0].astype(np.uint16) * 257)
    np.testing.assert_array_equal(g[:, :, 2], photo[:, :, 0])
    f, _ = as_image(photo.astype(np.float32) / 255.0)
    np.testing.assert_array_equal(f, photo)
    with pytest.raises(TypeError):
        as_image(12)  # type: ignore[arg-type]


def test_read_mask(tmp_path: Path) -> None:
    m = np.zeros((70, 90), np.uint8)
    m[10:30, 20:50] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    mask = read_mask(tmp_path / "m.png", shape=(70, 90))
    assert mask.dtype == bool and mask.sum() == 20 * 30
    with pytest.raises(InputError, match="90x70 pixels but the image is 100x70"):
        read_mask(tmp_path / "m.png", shape=(70, 100), name="ROI")


def test_written_png_has_no_metadata(tmp_path: Path, photo: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0)}  # GPS
    Image.fromarray(photo).save(tmp_path / "in.jpg", exif=exif, quality=95)
    img, _ = read_image(tmp_path / "in.jpg")
    write_png(tmp_path / "out.png", img)
    raw = (tmp_path / "out.png").read_bytes()
    assert b"eXIf" not in raw and b"PhoneMaker" not in raw and b"tEXt" not in raw and b"iTXt" not in raw
    with Image.open(tmp_path / "out.png") as im:
        assert len(im.getexif()) == 0
        np.testing.assert_array_equal(np.asarray(im), img)


def test_label_png_single_channel(tmp_path: Path) -> None:
    lab = np.array([[0, 1], [2, 3]], np.uint8).repeat(40, 0).repeat(40, 1)
    write_png(tmp_path / "l.png", lab)
    with Image.open(tmp_path / "l.png") as im:
        assert im.mode == "L"
        np.testing.assert_array_equal(np.asarray(im), lab)


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as f:
            f.write("{partial")
            raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []
    write_json(target, {"a": 1.5, "nan": float("nan"), "arr": np.arange(3)})
    assert json.loads(target.read_text()) == {"a": 1.5, "nan": None, "arr": [0, 1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_write_csv(tmp_path: Path) -> None:
    write_csv(tmp_path / "m.csv", [{"a": 1, "b": None, "c": 0.5}, {"a": 2, "d": "x,y"}])
    lines = (tmp_path / "m.csv").read_text().splitlines()
    assert lines == ["a,b,c,d", "1,,0.5,", '2,,,"x,y"']


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_folder(tmp_path: Path, photo: np.ndarray) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OutputError):
            write_png(ro / "x.png", photo)
    finally:
        ro.chmod(0o700)


def test_read_labels_accepts_label_maps_only(tmp_path: Path) -> None:
    from imgtool.io import read_labels

    labels = np.zeros((70, 90), np.uint8)
    labels[10:30, 20:50] = 2
    labels[40:, :] = 3
    write_png(tmp_path / "ok.png", labels)
    back, info = read_labels(tmp_path / "ok.png")
    assert np.array_equal(back, labels) and (info.width, info.height) == (90, 70)
    arr_back, arr_info = read_labels(labels)
    assert np.array_equal(arr_back, labels) and arr_info.path is None
    bad = labels.copy()
    bad[0, 0] = 7
    write_png(tmp_path / "bad.png", bad)
    with pytest.raises(InputError, match="bad.png"):
        read_labels(tmp_path / "bad.png")
    colour = np.zeros((70, 90, 3), np.uint8)
    colour[..., 0] = 1
    write_png(tmp_path / "colour.png", colour)
    with pytest.raises(InputError, match="colour image"):
        read_labels(tmp_path / "colour.png")

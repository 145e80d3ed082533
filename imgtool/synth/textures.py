"""Real skin and hair textures for phantoms, taken from a user's own photos.

Phantoms can be drawn on real skin detail and with real hair colours: healthy-skin
patches come from photos with lesion masks (outside the mask, where the colour is
skin) or from photos without masks (where the colour is skin); hair patches come from
photos with hair masks (inside the mask). Only the *detail* of skin patches is used
(luminance relative to its local mean), so the phantom's own skin tone, lesions and
labels stay exact. Textures are read from the files given and never stored with the
project.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from ..datasets import CONVENTIONS, read_binary_mask
from ..errors import InputError, UsageError
from ..io import PathLike, read_image
from ._portable import opencv_baseline

logger = logging.getLogger(__name__)

_SRGB_TO_LINEAR = np.where(
    np.arange(256) / 255.0 <= 0.04045, np.arange(256) / 255.0 / 12.92, ((np.arange(256) / 255.0 + 0.055) / 1.055) ** 2.4
).astype(np.float32)


@dataclass(frozen=True)
class TextureBank:
    """Patches of real skin detail and real hair colour.

    Attributes
    ----------
    skin : tuple of (P, P) float32 ndarray
        Skin luminance relative to its local mean (about 1).
    hair : tuple of (P, P, 3) float32 ndarray
        Hair colours in linear RGB.
    sources : tuple of str
        The files the patches came from.
    """

    skin: tuple[np.ndarray, ...] = field(repr=False)
    hair: tuple[np.ndarray, ...] = field(repr=False)
    sources: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        digest = hashlib.sha256("\n".join(sorted(Path(s).name for s in self.sources)).encode()).hexdigest()[:16]
        return {"files": len(self.sources), "skin_patches": len(self.skin), "hair_patches": len(self.hair), "files_sha256_16": digest}

    def skin_detail(self, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray | None:
        """A canvas-sized map of real skin detail (about 1), or None (no patches, or not this time)."""
        use = rng.random() < 0.75
        if not self.skin or not use:
            return None
        detail = _quilt(rng, self.skin, shape)
        return np.clip(detail, 0.6, 1.4).astype(np.float32)

    def hair_colours(self, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray | None:
        """A canvas-sized map of real hair colours (linear RGB), or None."""
        use = rng.random() < 0.75
        if not self.hair or not use:
            return None
        return _quilt(rng, self.hair, shape)


def _quilt(rng: np.random.Generator, patches: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Cover ``shape`` with randomly placed, flipped and scaled patches, blended with soft weights."""
    h, w = shape
    p = patches[int(rng.integers(len(patches)))]
    scale = float(rng.uniform(0.7, 1.6))
    size = max(8, int(round(p.shape[0] * scale)))
    step = max(4, size // 2)
    chans = () if p.ndim == 2 else (p.shape[2],)
    acc = np.zeros((h + 2 * size, w + 2 * size) + chans, dtype=np.float32)
    wsum = np.zeros((h + 2 * size, w + 2 * size), dtype=np.float32)
    ramp = 1.0 - np.abs(np.linspace(-1.0, 1.0, size, dtype=np.float32))
    win = np.outer(ramp, ramp) + np.float32(1e-3)
    for y in range(0, h + size, step):
        for x in range(0, w + size, step):
            q = patches[int(rng.integers(len(patches)))]
            q = cv2.resize(q, (size, size), interpolation=cv2.INTER_LINEAR)
            k = int(rng.integers(4))
            q = np.rot90(q, k)
            if rng.random() < 0.5:
                q = q[:, ::-1]
            ww = win if not chans else win[..., None]
            acc[y : y + size, x : x + size] += q * ww
            wsum[y : y + size, x : x + size] += win
    off = size // 2
    out = acc[off : off + h, off : off + w] / (wsum[off : off + h, off : off + w] if not chans else wsum[off : off + h, off : off + w, None])
    return out.astype(np.float32)


def _windows(valid: np.ndarray, size: int, most: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    h, w = valid.shape
    if h < size or w < size:
        return []
    integral = cv2.integral(valid.astype(np.uint8))
    cands = []
    step = max(8, size // 3)
    for y in range(0, h - size + 1, step):
        for x in range(0, w - size + 1, step):
            n = integral[y + size, x + size] - integral[y, x + size] - integral[y + size, x] + integral[y, x]
            if n >= 0.97 * size * size:
                cands.append((y, x))
    if len(cands) > most:
        idx = rng.choice(len(cands), size=most, replace=False)
        cands = [cands[i] for i in sorted(idx)]
    return cands


@opencv_baseline()  # the same patches on any CPU (see _portable)
def load_texture_bank(paths: Sequence[PathLike], *, patch: int = 160, per_image: int = 4, seed: int = 0) -> TextureBank:
    """Cut skin and hair patches out of real photos.

    Parameters
    ----------
    paths : sequence of path-like
        Photo files (not folders: pass exactly the files that may be used, e.g. only a
        training split). Each photo's mask is found by the conventions of
        :mod:`imgtool.datasets`: a lesion mask gives healthy skin outside it, a hair
        mask gives hair inside it, no mask gives skin-coloured areas.
    patch : int
        Patch side in pixels (smaller photos give smaller patches).
    per_image : int
        Most patches taken from one photo for each kind.
    seed : int
        Which windows are taken when a photo offers more.

    Returns
    -------
    TextureBank

    Raises
    ------
    UsageError
        No paths, or a path that is a folder.
    InputError
        A photo or mask cannot be read, or no usable patch was found in any photo.
    """
    from ..segmentation.classical import skin_mask

    files = [Path(p) for p in paths]
    if not files:
        raise UsageError("no texture files given")
    rng = np.random.default_rng(seed)
    skin: list[np.ndarray] = []
    hair: list[np.ndarray] = []
    for f in files:
        if f.is_dir():
            raise UsageError(f"{f}: is a folder; give texture photo files (e.g. a training split's list)")
        img, _ = read_image(f)
        mask, cls = None, None
        for conv in CONVENTIONS:
            m = conv.mask_path(f)
            if m.is_file() and m != f and (conv.image_glob == "*" or f.match(conv.image_glob)):
                mask = read_binary_mask(m, conv.threshold, img.shape[:2], conv.mask_scale)
                cls = conv.mask_class
                break
        size = min(patch, min(img.shape[:2]) // 2)
        if size < 24:
            continue
        skin_like = skin_mask(img) & (img.max(axis=2) > 20)
        if cls == "hair":
            for y, x in _windows(mask, size, per_image, rng):
                hair.append(_SRGB_TO_LINEAR[img[y : y + size, x : x + size]])
            continue
        valid = skin_like if mask is None else (skin_like & ~cv2.dilate(mask.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool))
        for y, x in _windows(valid, size, per_image, rng):
            win = img[y : y + size, x : x + size].astype(np.float32)
            lum = win[..., 0] * np.float32(0.2126) + win[..., 1] * np.float32(0.7152) + win[..., 2] * np.float32(0.0722)
            local = cv2.GaussianBlur(lum, (0, 0), max(2.0, size / 10.0), borderType=cv2.BORDER_REFLECT)
            skin.append((lum / np.maximum(local, 1.0)).astype(np.float32))
    if not skin and not hair:
        raise InputError(f"no usable skin or hair patch found in {len(files)} texture photo(s)")
    logger.info("texture bank: %d skin and %d hair patches from %d photos", len(skin), len(hair), len(files))
    return TextureBank(tuple(skin), tuple(hair), tuple(str(f) for f in files))


def texture_files(folder: PathLike) -> list[Path]:
    """Photo files of a folder (masks and label maps left out), sorted, for ``--texture-dir``."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    exts = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
    out = [p for p in sorted(root.iterdir()) if p.suffix.lower() in exts and not p.stem.endswith(("_mask", "_hair", "-gt", "_labels"))]
    if not out:
        raise InputError(f"{root}: no photos found")
    return out

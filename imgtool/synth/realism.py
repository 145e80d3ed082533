"""How close phantoms are to real photos: colour and texture statistics side by side.

The same statistics are measured on regions of real photos (from their masks) and
on the same classes of phantom photos (from their exact labels):

* colour: CIELAB ``L*``, ``a*``, ``b*``, chroma and the individual typology angle
  (ITA, which grades skin tone) of the region's pixels;
* texture: fine detail (std of ``L*`` minus its 1.5-px blur), mid-scale texture
  (std of the 1.5-px minus the 6-px blur), median gradient magnitude, and for hair
  the orientation coherence of the structure tensor (strands are oriented);
* lesion contrast: ``a*`` and ``L*`` of a lesion minus those of the skin around it.

Texture depends on resolution, so every photo is resized to a long side of 400 px
before measuring, and phantoms are drawn in the same framing as the real set
(close-ups for the lesion sets, the hair views for the hair sets).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from ..datasets import detect_convention, find_pairs, read_binary_mask
from ..io import PathLike, read_image
from ..labels import HAIR, LESION, SKIN

logger = logging.getLogger(__name__)

_LONG_SIDE = 400
_RING = 15  # px at the measuring size


def _resize(img: np.ndarray, masks: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    h, w = img.shape[:2]
    s = _LONG_SIDE / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    out = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    return out, [cv2.resize(m.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool) for m in masks]


def _lab(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def region_stats(img: np.ndarray, mask: np.ndarray) -> dict[str, float] | None:
    """Colour and texture statistics of the pixels of ``mask`` in an RGB photo.

    Parameters
    ----------
    img : (H, W, 3) uint8 ndarray
        Photo (already at the measuring size).
    mask : (H, W) bool ndarray
        Region; eroded by 2 px so that borders do not count as texture.

    Returns
    -------
    dict or None
        None when fewer than 200 pixels remain.
    """
    m = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    if np.count_nonzero(m) < 200:
        return None
    lab = _lab(img)
    lum, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    b1 = cv2.GaussianBlur(lum, (0, 0), 1.5)
    b6 = cv2.GaussianBlur(lum, (0, 0), 6.0)
    gx = cv2.Sobel(cv2.GaussianBlur(lum, (0, 0), 0.7), cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(cv2.GaussianBlur(lum, (0, 0), 0.7), cv2.CV_32F, 0, 1, ksize=3) / 8.0
    # Structure-tensor coherence: 1 for perfectly oriented texture, 0 for isotropic.
    jxx = cv2.GaussianBlur(gx * gx, (0, 0), 2.0)
    jyy = cv2.GaussianBlur(gy * gy, (0, 0), 2.0)
    jxy = cv2.GaussianBlur(gx * gy, (0, 0), 2.0)
    coh = np.sqrt((jxx - jyy) ** 2 + 4 * jxy * jxy) / (jxx + jyy + 1e-3)
    ita = np.degrees(np.arctan2(float(np.median(lum[m])) - 50.0, float(np.median(b[m]))))
    return {
        "L": float(np.median(lum[m])),
        "a": float(np.median(a[m])),
        "b": float(np.median(b[m])),
        "chroma": float(np.median(np.sqrt(a[m] ** 2 + b[m] ** 2))),
        "ita_deg": float(ita),
        "L_spread": float(np.subtract(*np.percentile(lum[m], [90, 10]))),
        "fine_detail": float(np.std((lum - b1)[m])),
        "mid_texture": float(np.std((b1 - b6)[m])),
        "gradient": float(np.median(np.sqrt(gx * gx + gy * gy)[m])),
        "coherence": float(np.median(coh[m])),
    }


def lesion_contrast(img: np.ndarray, lesion: np.ndarray, skin: np.ndarray) -> dict[str, float] | None:
    """``a*`` and ``L*`` of a lesion minus those of the skin in a ring around it."""
    lab = _lab(img)
    ring = cv2.dilate(lesion.astype(np.uint8), np.ones((2 * _RING + 1, 2 * _RING + 1), np.uint8)).astype(bool) & ~lesion & skin
    inner = cv2.erode(lesion.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    if np.count_nonzero(ring) < 100 or np.count_nonzero(inner) < 50:
        return None
    return {
        "delta_a": float(np.median(lab[..., 1][inner]) - np.median(lab[..., 1][ring])),
        "delta_L": float(np.median(lab[..., 0][inner]) - np.median(lab[..., 0][ring])),
    }


def _summ(rows: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    if not rows:
        return out
    for k in rows[0]:
        v = np.array([r[k] for r in rows], dtype=np.float64)
        q10, q25, q50, q75, q90 = np.percentile(v, [10, 25, 50, 75, 90])
        out[k] = {"n": int(v.size), "median": float(q50), "q25": float(q25), "q75": float(q75), "q10": float(q10), "q90": float(q90)}
    return out


def _closeness(real: dict[str, dict[str, float]], ph: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per statistic: phantom median minus real median in units of the real IQR."""
    out = {}
    for k in real:
        if k not in ph:
            continue
        iqr = max(real[k]["q75"] - real[k]["q25"], 1e-6)
        out[k] = {"median_shift_iqr": (ph[k]["median"] - real[k]["median"]) / iqr}
    return out


def _measure(
    img: np.ndarray,
    cls: str,
    *,
    region: np.ndarray,
    skin: np.ndarray | None,
    lesion: np.ndarray,
    rows: list[dict[str, float]],
    contrast: list[dict[str, float]],
) -> None:
    """Append one photo's statistics: the hair region for hair sets; skin and lesion contrast otherwise."""
    if cls == "hair" or skin is None:
        st = region_stats(img, region)
        if st:
            rows.append(st)
        return
    st = region_stats(img, skin)
    if st:
        rows.append(st)
    c = lesion_contrast(img, lesion, skin)
    if c:
        contrast.append(c)


def _real_rows(folder: PathLike, limit: int = 60) -> tuple[str, list[dict[str, float]], list[dict[str, float]]]:
    """Region statistics of a real set: (class, region rows, lesion-contrast rows)."""
    from ..segmentation.classical import skin_mask

    conv = detect_convention(folder)
    cls = conv.mask_class or "lesion"
    rows, contrast = [], []
    for _, img_path, mask_path in find_pairs(folder, conv)[:limit]:
        img, _ = read_image(img_path)
        mask = read_binary_mask(mask_path, conv.threshold, img.shape[:2], conv.mask_scale)
        img_s, (mask_s,) = _resize(img, [mask])
        skin = None if cls == "hair" else skin_mask(img_s) & (img_s.max(axis=2) > 20) & ~mask_s
        _measure(img_s, cls, region=mask_s, skin=skin, lesion=mask_s, rows=rows, contrast=contrast)
    return cls, rows, contrast


def _phantom_rows(cls: str, seed: int, photos: int, fitzpatrick: tuple[int, ...]) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    from .core import SynthOptions, render_photo

    if cls == "hair":
        opts = SynthOptions(views=("scalp", "face"), fitzpatrick=fitzpatrick, hair_loss=(0.0, 0.4), close_up=0.5)
    else:
        opts = SynthOptions(close_up=1.0, fitzpatrick=fitzpatrick, lesions=(1, 4))
    rows, contrast = [], []
    for i in range(photos):
        img, lab = render_photo(seed + i, size=(512, 512), options=opts)
        img_s, (skin, les, hair) = _resize(img, [lab == SKIN, lab == LESION, lab == HAIR])
        _measure(img_s, cls, region=hair, skin=skin, lesion=les, rows=rows, contrast=contrast)
    return rows, contrast


def compare_stats(
    real_folders: Sequence[PathLike],
    *,
    seed: int = 0,
    photos: int = 60,
    fitzpatrick_for_lesion_sets: tuple[int, ...] = (1, 2, 3),
) -> dict[str, Any]:
    """Statistics of real sets next to those of matching phantoms.

    Parameters
    ----------
    real_folders : sequence of path-like
        Folders of real photos with masks (lesion or hair masks).
    seed : int
        First seed of the phantom photos.
    photos : int
        Phantom photos measured per comparison.
    fitzpatrick_for_lesion_sets : tuple of int
        Skin types of the phantoms compared with lesion sets (PAD-UFES-20 is mostly
        types I-III).

    Returns
    -------
    dict
        Per real folder: its class, the real and phantom summaries (median, quartiles,
        10th/90th percentiles) and the phantom median shift in units of the real IQR.
    """
    out: dict[str, Any] = {}
    phantom_cache: dict[str, tuple[list[dict[str, float]], list[dict[str, float]]]] = {}
    for folder in real_folders:
        cls, rows, contrast = _real_rows(folder)
        if cls not in phantom_cache:
            fz = fitzpatrick_for_lesion_sets if cls == "lesion" else (1, 2, 3, 4, 5, 6)
            phantom_cache[cls] = _phantom_rows(cls, seed, photos, fz)
        prow, pcon = phantom_cache[cls]
        real_s, ph_s = _summ(rows), _summ(prow)
        entry: dict[str, Any] = {
            "class": cls,
            "region": "hair (inside the hair mask)" if cls == "hair" else "healthy skin (skin-coloured, outside the lesion mask)",
            "real": real_s,
            "phantom": ph_s,
            "closeness": _closeness(real_s, ph_s),
        }
        if cls == "lesion":
            rc, pc = _summ(contrast), _summ(pcon)
            entry["lesion_contrast"] = {"real": rc, "phantom": pc, "closeness": _closeness(rc, pc)}
        out[Path(folder).name] = entry
    return out


def format_stats(stats: dict[str, Any]) -> str:
    """A plain-text table of :func:`compare_stats`' result."""
    lines = []
    for name, e in stats.items():
        lines.append(f"{name}: {e['region']}")
        lines.append(f"  {'statistic':<14}{'real median [IQR]':>26}{'phantom median [IQR]':>26}{'shift/IQR':>11}")

        def block(real: dict[str, Any], ph: dict[str, Any], clo: dict[str, Any]) -> None:
            for k in real:
                r = real[k]
                p = ph.get(k)
                rs = f"{r['median']:.2f} [{r['q25']:.2f}, {r['q75']:.2f}]"
                ps = "-" if p is None else f"{p['median']:.2f} [{p['q25']:.2f}, {p['q75']:.2f}]"
                cs = "-" if k not in clo else f"{clo[k]['median_shift_iqr']:+.2f}"
                lines.append(f"  {k:<14}{rs:>26}{ps:>26}{cs:>11}")

        block(e["real"], e["phantom"], e["closeness"])
        if "lesion_contrast" in e:
            lc = e["lesion_contrast"]
            block(lc["real"], lc["phantom"], lc["closeness"])
        lines.append("")
    return "\n".join(lines)

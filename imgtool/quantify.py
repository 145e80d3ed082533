"""Metrics on label maps: per-photo areas and fractions, and change on the aligned pair.

Everything here works on label maps (see :mod:`imgtool.labels`), so the metrics apply
equally to the CNN's output, the classical baseline's and a user's own masks.

Definitions (all areas in pixels of the photo they are measured in):

* ROI: the region of interest. A user's mask, else every pixel that is not background.
  All per-photo areas are counted inside the ROI.
* ``skin_area_px``: healthy skin + lesion pixels (hair-covered skin is hair).
* ``lesion_fraction``: lesion / skin area (None when there is no skin).
* ``hair_coverage``: hair / ROI (None when the ROI is empty).
* ``hairless_area_px``: ROI minus hair.

Change metrics compare BEFORE with AFTER aligned into BEFORE's frame, inside the
*common region*: pixels of BEFORE's frame that the AFTER photo covers (and that are in
the ROI when one is given). Counting inside the common region means that a change of
zoom or framing between the two photos never counts as a change of disease.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .labels import BACKGROUND, HAIR, LESION, SKIN, check_labels


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den > 0 else None


@dataclass(frozen=True)
class PhotoMetrics:
    """Areas and fractions of one photo's label map.

    Attributes
    ----------
    skin_area_px, lesion_area_px, roi_area_px, hair_area_px, hairless_area_px : int
        Pixel counts inside the ROI (see module docstring).
    lesion_fraction : float or None
        Lesion share of the skin area, 0..1.
    hair_coverage : float or None
        Hair share of the ROI, 0..1.
    pixel_size_mm : float or None
        Side of one pixel in millimetres, when known; adds ``*_mm2`` fields.
    """

    skin_area_px: int
    lesion_area_px: int
    lesion_fraction: float | None
    roi_area_px: int
    hair_area_px: int
    hair_coverage: float | None
    hairless_area_px: int
    pixel_size_mm: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "skin_area_px": self.skin_area_px,
            "lesion_area_px": self.lesion_area_px,
            "lesion_fraction": self.lesion_fraction,
            "roi_area_px": self.roi_area_px,
            "hair_area_px": self.hair_area_px,
            "hair_coverage": self.hair_coverage,
            "hairless_area_px": self.hairless_area_px,
            "pixel_size_mm": self.pixel_size_mm,
        }
        if self.pixel_size_mm is not None:
            a = self.pixel_size_mm**2
            for key in ("skin_area", "lesion_area", "roi_area", "hair_area", "hairless_area"):
                d[f"{key}_mm2"] = d[f"{key}_px"] * a
        return d


def default_roi(labels: np.ndarray) -> np.ndarray:
    """The default region of interest: every pixel that is not background."""
    return check_labels(labels) != BACKGROUND


def photo_metrics(
    labels: np.ndarray,
    *,
    roi: np.ndarray | None = None,
    pixel_size_mm: float | None = None,
) -> PhotoMetrics:
    """Per-photo areas and fractions of a label map.

    Parameters
    ----------
    labels : (H, W) uint8 ndarray
        Label map (0 background, 1 skin, 2 lesion, 3 hair).
    roi : (H, W) bool ndarray, optional
        Region of interest; default everything that is not background.
    pixel_size_mm : float, optional
        Pixel side in mm; when given, ``to_dict()`` adds ``*_mm2`` areas.

    Returns
    -------
    PhotoMetrics

    Raises
    ------
    ValueError
        If ``labels`` is not a label map, ``roi`` has another shape, or the pixel size
        is not positive.

    Examples
    --------
    >>> lab = np.array([[0, 1, 1], [2, 2, 3]], dtype=np.uint8)
    >>> m = photo_metrics(lab)
    >>> (m.skin_area_px, m.lesion_area_px, m.hair_area_px, m.roi_area_px)
    (4, 2, 1, 5)
    """
    lab = check_labels(labels)
    if roi is None:
        roi_mask = lab != BACKGROUND
    else:
        roi_mask = np.asarray(roi, dtype=bool)
        if roi_mask.shape != lab.shape:
            raise ValueError(f"roi must have the label map's shape {lab.shape}, got {roi_mask.shape}")
    if pixel_size_mm is not None and not pixel_size_mm > 0:
        raise ValueError(f"pixel_size_mm must be positive, got {pixel_size_mm}")
    # One bincount over the ROI gives every class count in a single pass.
    counts = np.bincount(lab[roi_mask].ravel(), minlength=4)
    skin = int(counts[SKIN] + counts[LESION])
    lesion = int(counts[LESION])
    hair = int(counts[HAIR])
    roi_area = int(roi_mask.sum())
    return PhotoMetrics(
        skin_area_px=skin,
        lesion_area_px=lesion,
        lesion_fraction=_ratio(lesion, skin),
        roi_area_px=roi_area,
        hair_area_px=hair,
        hair_coverage=_ratio(hair, roi_area),
        hairless_area_px=roi_area - hair,
        pixel_size_mm=None if pixel_size_mm is None else float(pixel_size_mm),
    )


@dataclass(frozen=True)
class ChangeMetrics:
    """Change between BEFORE and AFTER.

    The pixel fields are counted in BEFORE's frame inside the common region; they and
    ``lesion_area_change_rel`` are None when the pair could not be aligned.

    Attributes
    ----------
    lesion_area_change_rel : float or None
        (after - before) / before lesion area in the common region.
    lesion_fraction_change : float or None
        after - before lesion share of skin (fraction points; each photo on its own).
    hair_coverage_change : float or None
        after - before hair share of the ROI (fraction points).
    new_lesion_px, resolved_lesion_px, persistent_lesion_px : int or None
        Lesion in AFTER only, in BEFORE only, in both.
    regrown_hair_px, lost_hair_px : int or None
        Hair in AFTER only, in BEFORE only.
    common_area_px : int or None
        Size of the common region.
    lesion_area_before_common_px, lesion_area_after_common_px : int or None
        Lesion area of each photo inside the common region.
    pixel_size_mm : float or None
        BEFORE's pixel size; adds ``*_mm2`` twins of the pixel fields.
    """

    lesion_area_change_rel: float | None
    lesion_fraction_change: float | None
    hair_coverage_change: float | None
    new_lesion_px: int | None
    resolved_lesion_px: int | None
    persistent_lesion_px: int | None
    regrown_hair_px: int | None
    lost_hair_px: int | None
    common_area_px: int | None
    lesion_area_before_common_px: int | None
    lesion_area_after_common_px: int | None
    pixel_size_mm: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "lesion_area_change_rel": self.lesion_area_change_rel,
            "lesion_fraction_change": self.lesion_fraction_change,
            "hair_coverage_change": self.hair_coverage_change,
            "new_lesion_px": self.new_lesion_px,
            "resolved_lesion_px": self.resolved_lesion_px,
            "persistent_lesion_px": self.persistent_lesion_px,
            "regrown_hair_px": self.regrown_hair_px,
            "lost_hair_px": self.lost_hair_px,
            "common_area_px": self.common_area_px,
            "lesion_area_before_common_px": self.lesion_area_before_common_px,
            "lesion_area_after_common_px": self.lesion_area_after_common_px,
        }
        if self.pixel_size_mm is not None:
            a = self.pixel_size_mm**2
            for key in (
                "new_lesion",
                "resolved_lesion",
                "persistent_lesion",
                "regrown_hair",
                "lost_hair",
                "common_area",
            ):
                v = d[f"{key}_px"]
                d[f"{key}_mm2"] = None if v is None else v * a
        return d


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else float(b) - float(a)


def change_metrics(
    before: PhotoMetrics,
    after: PhotoMetrics,
    before_labels: np.ndarray,
    after_labels_aligned: np.ndarray | None,
    *,
    common: np.ndarray | None = None,
    roi: np.ndarray | None = None,
    pixel_size_mm: float | None = None,
) -> ChangeMetrics:
    """Change metrics between two photos of one view.

    Parameters
    ----------
    before, after : PhotoMetrics
        Each photo's own metrics (for the fraction changes, which need no alignment).
    before_labels : (H, W) uint8 ndarray
        BEFORE's label map.
    after_labels_aligned : (H, W) uint8 ndarray or None
        AFTER's label map warped into BEFORE's frame; None when the pair could not be
        aligned, which makes the alignment-based fields None.
    common : (H, W) bool ndarray, optional
        Pixels of BEFORE's frame that AFTER covers. Default: all.
    roi : (H, W) bool ndarray, optional
        A user's region of interest in BEFORE's frame; the common region is limited to it.
    pixel_size_mm : float, optional
        BEFORE's pixel size, for the ``*_mm2`` twins.

    Returns
    -------
    ChangeMetrics
    """
    lesion_fraction_change = _diff(before.lesion_fraction, after.lesion_fraction)
    hair_coverage_change = _diff(before.hair_coverage, after.hair_coverage)
    if after_labels_aligned is None:
        return ChangeMetrics(
            lesion_area_change_rel=None,
            lesion_fraction_change=lesion_fraction_change,
            hair_coverage_change=hair_coverage_change,
            new_lesion_px=None,
            resolved_lesion_px=None,
            persistent_lesion_px=None,
            regrown_hair_px=None,
            lost_hair_px=None,
            common_area_px=None,
            lesion_area_before_common_px=None,
            lesion_area_after_common_px=None,
            pixel_size_mm=pixel_size_mm,
        )
    b = check_labels(before_labels, "before_labels")
    a = check_labels(after_labels_aligned, "after_labels_aligned")
    if a.shape != b.shape:
        raise ValueError(f"aligned AFTER labels {a.shape} must have BEFORE's shape {b.shape}")
    region = np.ones(b.shape, dtype=bool) if common is None else np.asarray(common, dtype=bool)
    if roi is not None:
        region = region & np.asarray(roi, dtype=bool)
    # Joint histogram of (before class, after class) inside the common region:
    # every pixel-wise change count is one cell or a row/column sum of it.
    joint = np.bincount((b[region].astype(np.int64) * 4 + a[region]).ravel(), minlength=16).reshape(4, 4)
    les_b = int(joint[LESION, :].sum())
    les_a = int(joint[:, LESION].sum())
    persistent = int(joint[LESION, LESION])
    hair_b = int(joint[HAIR, :].sum())
    hair_a = int(joint[:, HAIR].sum())
    hair_both = int(joint[HAIR, HAIR])
    rel = (les_a - les_b) / les_b if les_b > 0 else None
    return ChangeMetrics(
        lesion_area_change_rel=rel,
        lesion_fraction_change=lesion_fraction_change,
        hair_coverage_change=hair_coverage_change,
        new_lesion_px=les_a - persistent,
        resolved_lesion_px=les_b - persistent,
        persistent_lesion_px=persistent,
        regrown_hair_px=hair_a - hair_both,
        lost_hair_px=hair_b - hair_both,
        common_area_px=int(region.sum()),
        lesion_area_before_common_px=les_b,
        lesion_area_after_common_px=les_a,
        pixel_size_mm=pixel_size_mm,
    )

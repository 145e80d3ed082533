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
* ``body_area_px``: skin + lesion + hair inside the ROI (the body surface in view).
* ``lesion_share_of_body``: lesion / body area, the share of the region involved
  that the EASI area score bins (:func:`easi_area_score`).
* ``hair_loss_percent``: 100 x hairless / ROI, SALT style (give the scalp as the ROI);
  four scalp views combine into the weighted SALT score with :func:`salt_score`.

Lesions as objects (connected components of the lesion label, count, area, centroid)
and their fate on the aligned pair (resolved, persistent, new) are in
:func:`find_lesions` and :func:`lesion_fates`; redness of lesions relative to nearby
healthy skin (CIELAB a* and the erythema index) in :func:`redness`.
Wherever a pixel size is known, areas also come in mm² and cm².

Change metrics compare BEFORE with AFTER aligned into BEFORE's frame, inside the
*common region*: pixels of BEFORE's frame that the AFTER photo covers (and that are in
the ROI when one is given). Counting inside the common region means that a change of
zoom or framing between the two photos never counts as a change of disease.

Before the change metrics, the pipeline reconciles the aligned pair's lesion labels with
the photos' colours (:func:`reconcile_lesion_labels`): a lesion-label disagreement only
counts as change where the colour changed too, so that segmentation noise on an unchanged
lesion does not read as disease change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from ._filters import normalised_blur
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
        Side of one pixel in millimetres, when known; adds ``*_mm2`` and ``*_cm2`` fields.
    body_area_px : int or None
        Skin + lesion + hair inside the ROI: the body surface in view.
    lesion_share_of_body : float or None
        Lesion share of the body area, 0..1 (None without body area).
    easi_area_score : int or None
        EASI area score 0..6 of ``easi_share_of_body`` (see :func:`easi_area_score`).
    hair_loss_percent : float or None
        Percentage of the ROI without hair, 0..100 (SALT style; None for an empty ROI).
    easi_share_of_body : float or None
        The share the EASI score bins: lesion in connected lesions of at least
        ``easi_min_lesion_area_px`` pixels, over the body area. Equal to
        ``lesion_share_of_body`` when no minimum was given.
    easi_min_lesion_area_px : int or None
        That minimum (None: every lesion pixel counts).
    """

    skin_area_px: int
    lesion_area_px: int
    lesion_fraction: float | None
    roi_area_px: int
    hair_area_px: int
    hair_coverage: float | None
    hairless_area_px: int
    pixel_size_mm: float | None = None
    body_area_px: int | None = None
    lesion_share_of_body: float | None = None
    easi_area_score: int | None = None
    hair_loss_percent: float | None = None
    easi_share_of_body: float | None = None
    easi_min_lesion_area_px: int | None = None

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
            "body_area_px": self.body_area_px,
            "lesion_share_of_body": self.lesion_share_of_body,
            "easi_area_score": self.easi_area_score,
            "hair_loss_percent": self.hair_loss_percent,
            "easi_share_of_body": self.easi_share_of_body,
            "easi_min_lesion_area_px": self.easi_min_lesion_area_px,
        }
        keys = ("skin_area", "lesion_area", "roi_area", "hair_area", "hairless_area", "body_area")
        d.update(_physical_areas(d, keys, self.pixel_size_mm))
        return d


def _physical_areas(d: dict[str, Any], keys: tuple[str, ...], pixel_size_mm: float | None) -> dict[str, Any]:
    """``<key>_mm2`` and ``<key>_cm2`` twins of the ``<key>_px`` entries of ``d`` (none without a pixel size)."""
    if pixel_size_mm is None:
        return {}
    a = pixel_size_mm**2
    out: dict[str, Any] = {}
    for key in keys:
        v = d.get(f"{key}_px")
        out[f"{key}_mm2"] = None if v is None else v * a
    for key in keys:
        v = out[f"{key}_mm2"]
        out[f"{key}_cm2"] = None if v is None else v / 100.0
    return out


def default_roi(labels: np.ndarray) -> np.ndarray:
    """The default region of interest: every pixel that is not background."""
    return check_labels(labels) != BACKGROUND


def photo_metrics(
    labels: np.ndarray,
    *,
    roi: np.ndarray | None = None,
    pixel_size_mm: float | None = None,
    min_lesion_area_px: int | None = None,
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
    min_lesion_area_px : int, optional
        Smallest connected lesion (8-connected, inside the ROI) that counts as
        involvement for the EASI area score; smaller specks are segmentation noise, not
        eczema a clinician would score, so a photo whose only "lesion" is a few specks
        scores 0. The area fields always count every lesion pixel. Default: every
        lesion pixel counts for EASI too.

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
    if min_lesion_area_px is not None and min_lesion_area_px < 0:
        raise ValueError(f"min_lesion_area_px must be 0 or more, got {min_lesion_area_px}")
    # One bincount over the ROI gives every class count in a single pass.
    counts = np.bincount(lab[roi_mask].ravel(), minlength=4)
    skin = int(counts[SKIN] + counts[LESION])
    lesion = int(counts[LESION])
    hair = int(counts[HAIR])
    roi_area = int(roi_mask.sum())
    body = skin + hair
    share = _ratio(lesion, body)
    hair_cov = _ratio(hair, roi_area)
    counted = lesion
    if min_lesion_area_px is not None and min_lesion_area_px > 1 and lesion > 0:
        # Only the areas are needed here, not find_lesions' relabelled full-size map.
        _, _, stats, _ = _lesion_components((lab == LESION) & roi_mask)
        counted = int(stats[_kept_components(stats, min_lesion_area_px), cv2.CC_STAT_AREA].sum())
    easi_share = _ratio(counted, body)
    return PhotoMetrics(
        skin_area_px=skin,
        lesion_area_px=lesion,
        lesion_fraction=_ratio(lesion, skin),
        roi_area_px=roi_area,
        hair_area_px=hair,
        hair_coverage=hair_cov,
        hairless_area_px=roi_area - hair,
        pixel_size_mm=None if pixel_size_mm is None else float(pixel_size_mm),
        body_area_px=body,
        lesion_share_of_body=share,
        easi_area_score=easi_area_score(easi_share),
        hair_loss_percent=None if roi_area == 0 else 100.0 * (roi_area - hair) / roi_area,
        easi_share_of_body=easi_share,
        easi_min_lesion_area_px=None if min_lesion_area_px is None else int(min_lesion_area_px),
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
        BEFORE's pixel size; adds ``*_mm2`` and ``*_cm2`` twins of the pixel fields.
    hair_coverage_before_common, hair_coverage_after_common : float or None
        Hair share of the same area in both photos: the common region (inside the ROI;
        without a user ROI, the pixels that are body in either photo). Unlike the
        per-photo ``hair_coverage``, a change of framing does not move it.
    hair_coverage_change_common : float or None
        after - before of the above (fraction points).
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
    hair_coverage_before_common: float | None = None
    hair_coverage_after_common: float | None = None
    hair_coverage_change_common: float | None = None

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
            "hair_coverage_before_common": self.hair_coverage_before_common,
            "hair_coverage_after_common": self.hair_coverage_after_common,
            "hair_coverage_change_common": self.hair_coverage_change_common,
        }
        keys = ("new_lesion", "resolved_lesion", "persistent_lesion", "regrown_hair", "lost_hair", "common_area")
        d.update(_physical_areas(d, keys, self.pixel_size_mm))
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
    # The same area for both photos: the ROI's common part, or where either photo sees body.
    area = int(region.sum()) if roi is not None else int(joint.sum() - joint[BACKGROUND, BACKGROUND])
    cov_b, cov_a = _ratio(hair_b, area), _ratio(hair_a, area)
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
        hair_coverage_before_common=cov_b,
        hair_coverage_after_common=cov_a,
        hair_coverage_change_common=_diff(cov_b, cov_a),
    )


# --------------------------------------------------------------------------- EASI area score

#: Upper bounds (exclusive) of the EASI area score bins 1..5, as shares of the region;
#: 0 is no involvement and 6 is 90 % to 100 %.
EASI_AREA_BOUNDS: tuple[float, ...] = (0.10, 0.30, 0.50, 0.70, 0.90)


def easi_area_score(share: float | None) -> int | None:
    """EASI area score of the share of a body region involved by eczema.

    The Eczema Area and Severity Index bins the involved share of each region:
    0 none, 1 under 10 %, 2 10-29 %, 3 30-49 %, 4 50-69 %, 5 70-89 %, 6 90-100 %.
    A share on a bin edge belongs to the upper bin (10 % exactly scores 2).

    Parameters
    ----------
    share : float or None
        Involved share of the region, 0..1 (e.g. ``PhotoMetrics.lesion_share_of_body``).

    Returns
    -------
    int or None
        The score 0..6; None when ``share`` is None (no region to score).

    Raises
    ------
    ValueError
        If ``share`` is outside 0..1 or not a number.

    Examples
    --------
    >>> [easi_area_score(s) for s in (0.0, 0.05, 0.1, 0.29, 0.3, 0.9, 1.0)]
    [0, 1, 2, 2, 3, 6, 6]
    """
    if share is None:
        return None
    s = float(share)
    if not (0.0 <= s <= 1.0):
        raise ValueError(f"involved share must be within 0..1, got {share}")
    if s == 0.0:
        return 0
    return 1 + sum(s >= bound for bound in EASI_AREA_BOUNDS)


# --------------------------------------------------------------------------- SALT

#: Weights of the four standard scalp views in the Severity of Alopecia Tool (SALT):
#: top 40 %, back 24 %, left and right side 18 % each (Olsen et al. 2004).
SALT_WEIGHTS: dict[str, float] = {"top": 0.40, "back": 0.24, "left": 0.18, "right": 0.18}


@dataclass(frozen=True)
class SaltScore:
    """The weighted SALT score of a four-view scalp set.

    Attributes
    ----------
    score : float
        SALT score, 0 (no hair loss) .. 100 (total scalp hair loss): the weighted sum
        of the views' hair-loss percentages.
    hair_loss_percent : dict of str to float
        Each view's percentage of scalp without hair, 0..100.
    weights : dict of str to float
        Each view's weight (:data:`SALT_WEIGHTS`).
    """

    score: float
    hair_loss_percent: dict[str, float]
    weights: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "salt_score": self.score,
            "views": {
                v: {"hair_loss_percent": self.hair_loss_percent[v], "weight": self.weights[v]} for v in SALT_WEIGHTS
            },
        }


def salt_score(hair_loss_percent: dict[str, float | None]) -> SaltScore:
    """Combine the four scalp views' hair-loss percentages into the SALT score.

    Parameters
    ----------
    hair_loss_percent : dict of str to float
        Percentage of scalp without hair (0..100) for each of ``"top"``, ``"back"``,
        ``"left"`` and ``"right"`` (e.g. ``photo_metrics(labels, roi=scalp).hair_loss_percent``).

    Returns
    -------
    SaltScore

    Raises
    ------
    ValueError
        If a view is missing, unknown, None or outside 0..100.

    Examples
    --------
    >>> salt_score({"top": 50.0, "back": 0.0, "left": 100.0, "right": 0.0}).score
    38.0
    """
    views = set(hair_loss_percent)
    if views != set(SALT_WEIGHTS):
        missing = sorted(set(SALT_WEIGHTS) - views)
        extra = sorted(views - set(SALT_WEIGHTS))
        raise ValueError(f"SALT needs exactly the views top, back, left, right (missing {missing}, unknown {extra})")
    values: dict[str, float] = {}
    for view in SALT_WEIGHTS:
        v = hair_loss_percent[view]
        if v is None or not (0.0 <= float(v) <= 100.0):
            raise ValueError(f"hair loss of the {view} view must be a percentage 0..100, got {v}")
        values[view] = float(v)
    score = sum(SALT_WEIGHTS[v] * values[v] for v in SALT_WEIGHTS)
    return SaltScore(score=float(score), hair_loss_percent=values, weights=dict(SALT_WEIGHTS))


# --------------------------------------------------------------------------- lesions as objects


@dataclass(frozen=True)
class Lesion:
    """One lesion: a connected component of the lesion label.

    Attributes
    ----------
    id : int
        1-based number, largest lesion first.
    area_px : int
        Pixels of the component.
    centroid_x, centroid_y : float
        Centre of mass in pixel coordinates (x right, y down).
    bbox : (x, y, width, height)
        Bounding box in pixels.
    """

    id: int
    area_px: int
    centroid_x: float
    centroid_y: float
    bbox: tuple[int, int, int, int]

    def to_dict(self, pixel_size_mm: float | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "area_px": self.area_px,
            "centroid_x": self.centroid_x,
            "centroid_y": self.centroid_y,
            "bbox": list(self.bbox),
        }
        d.update(_physical_areas(d, ("area",), pixel_size_mm))
        return d


@dataclass(frozen=True)
class Lesions:
    """The lesions of one label map (inside a region), each a connected component.

    Attributes
    ----------
    components : (H, W) int32 ndarray
        0 where there is no (kept) lesion, ``k`` on the pixels of lesion ``k``.
    items : tuple of Lesion
        The lesions, largest first (``items[k - 1].id == k``).
    min_area_px : int
        Components smaller than this were dropped (and are 0 in ``components``).
    pixel_size_mm : float or None
        Pixel side in mm, for ``*_mm2``/``*_cm2`` areas in :meth:`to_dict`.
    """

    components: np.ndarray = field(compare=False, repr=False)
    items: tuple[Lesion, ...]
    min_area_px: int
    pixel_size_mm: float | None = None

    @property
    def count(self) -> int:
        """Number of lesions."""
        return len(self.items)

    @property
    def total_area_px(self) -> int:
        """Summed area of the lesions in pixels."""
        return int(sum(les.area_px for les in self.items))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"count": self.count, "total_area_px": self.total_area_px, "min_area_px": self.min_area_px}
        d.update(_physical_areas(d, ("total_area",), self.pixel_size_mm))
        d["items"] = [les.to_dict(self.pixel_size_mm) for les in self.items]
        return d


def _lesion_components(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """8-connected components of a lesion mask: count (with the background), map, stats, centroids."""
    return cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)


def _kept_components(stats: np.ndarray, min_area_px: int) -> np.ndarray:
    """Ids (1-based, OpenCV's order) of the components a lesion count keeps: at least ``min_area_px`` pixels.

    The one rule for every lesion count (:func:`find_lesions`, and the EASI share of
    :func:`photo_metrics`), so the score and the lesion list never disagree on a speck.
    """
    return np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] >= max(int(min_area_px), 1)) + 1


def find_lesions(
    labels: np.ndarray,
    *,
    roi: np.ndarray | None = None,
    min_area_px: int = 0,
    pixel_size_mm: float | None = None,
) -> Lesions:
    """Lesions of a label map as objects: 8-connected components of the lesion label.

    Parameters
    ----------
    labels : (H, W) uint8 ndarray
        Label map.
    roi : (H, W) bool ndarray, optional
        Only lesion pixels inside it count (a lesion cut by its edge is the part inside).
    min_area_px : int, optional
        Components with fewer pixels are dropped (segmentation specks). Default 0 keeps all.
    pixel_size_mm : float, optional
        Pixel side in mm, for physical areas in ``to_dict()``.

    Returns
    -------
    Lesions
        Component map and lesions, largest first.

    Raises
    ------
    ValueError
        If ``labels`` is not a label map, ``roi`` has another shape or ``min_area_px`` < 0.
    """
    lab = check_labels(labels)
    if min_area_px < 0:
        raise ValueError(f"min_area_px must be >= 0, got {min_area_px}")
    mask = lab == LESION
    if roi is not None:
        roi_mask = np.asarray(roi, dtype=bool)
        if roi_mask.shape != lab.shape:
            raise ValueError(f"roi must have the label map's shape {lab.shape}, got {roi_mask.shape}")
        mask &= roi_mask
    n, comp, stats, centroids = _lesion_components(mask)
    kept = [int(k) for k in _kept_components(stats, min_area_px)]
    # Largest first; ties in raster order of the component's first pixel (OpenCV's order).
    kept.sort(key=lambda k: (-int(stats[k, cv2.CC_STAT_AREA]), k))
    relabel = np.zeros(n, dtype=np.int32)
    items = []
    for new_id, k in enumerate(kept, start=1):
        relabel[k] = new_id
        x, y, w, h, area = (int(v) for v in stats[k])
        items.append(Lesion(new_id, area, float(centroids[k, 0]), float(centroids[k, 1]), (x, y, w, h)))
    return Lesions(
        components=relabel[comp],
        items=tuple(items),
        min_area_px=int(min_area_px),
        pixel_size_mm=None if pixel_size_mm is None else float(pixel_size_mm),
    )


FATE_RESOLVED = "resolved"
FATE_PERSISTENT = "persistent"
FATE_NEW = "new"


@dataclass(frozen=True)
class LesionFate:
    """What became of one lesion between BEFORE and AFTER (in BEFORE's frame).

    Attributes
    ----------
    fate : str
        ``"resolved"`` (a BEFORE lesion no AFTER lesion overlaps), ``"persistent"``
        (a BEFORE lesion that AFTER lesions overlap) or ``"new"`` (an AFTER lesion that
        overlaps no BEFORE lesion).
    before_id : int or None
        Id of the BEFORE lesion (None for a new lesion).
    after_ids : tuple of int
        Ids of the overlapping AFTER lesions (of the aligned AFTER map).
    area_before_px : int
        BEFORE area (0 for a new lesion).
    area_after_px : float
        AFTER area (0 for a resolved lesion). An AFTER lesion that overlaps several
        BEFORE lesions (they merged) is shared among them in proportion to the overlaps.
    area_change_rel : float or None
        (after - before) / before; None for a new lesion.
    centroid_x, centroid_y : float
        Where the lesion is, in BEFORE's frame (the BEFORE lesion's centre, or the new one's).
    """

    fate: str
    before_id: int | None
    after_ids: tuple[int, ...]
    area_before_px: int
    area_after_px: float
    area_change_rel: float | None
    centroid_x: float
    centroid_y: float

    def to_dict(self, pixel_size_mm: float | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {
            "fate": self.fate,
            "before_id": self.before_id,
            "after_ids": list(self.after_ids),
            "area_before_px": self.area_before_px,
            "area_after_px": self.area_after_px,
            "area_change_rel": self.area_change_rel,
            "centroid_x": self.centroid_x,
            "centroid_y": self.centroid_y,
        }
        d.update(_physical_areas(d, ("area_before", "area_after"), pixel_size_mm))
        return d


@dataclass(frozen=True)
class LesionFates:
    """Lesion-by-lesion change on the aligned pair, inside the common region.

    Attributes
    ----------
    before, after : Lesions
        Lesions of BEFORE and of the aligned AFTER map, both in BEFORE's frame and
        inside the common region.
    items : tuple of LesionFate
        BEFORE lesions in id order (resolved or persistent), then new AFTER lesions.
    min_overlap : float
        A BEFORE and an AFTER lesion are the same lesion when they share at least this
        share of the smaller one's area.
    pixel_size_mm : float or None
        BEFORE's pixel side in mm, for physical areas.
    """

    before: Lesions
    after: Lesions
    items: tuple[LesionFate, ...]
    min_overlap: float
    pixel_size_mm: float | None = None

    def count(self, fate: str) -> int:
        """Number of lesions with this fate."""
        return sum(f.fate == fate for f in self.items)

    def to_dict(self) -> dict[str, Any]:
        return {
            "count_before": self.before.count,
            "count_after": self.after.count,
            "resolved": self.count(FATE_RESOLVED),
            "persistent": self.count(FATE_PERSISTENT),
            "new": self.count(FATE_NEW),
            "min_area_px": self.before.min_area_px,
            "min_overlap": self.min_overlap,
            "items": [f.to_dict(self.pixel_size_mm) for f in self.items],
        }


def _links(les_b: Lesions, les_a: Lesions, min_overlap: float) -> tuple[np.ndarray, np.ndarray]:
    """Which BEFORE and AFTER lesions are the same lesion, and their overlaps in pixels.

    Returns
    -------
    linked : (n_before, n_after) bool ndarray
    overlap : (n_before, n_after) int64 ndarray
    """
    nb, na = les_b.count, les_a.count
    both = (les_b.components > 0) & (les_a.components > 0)
    pairs = les_b.components[both].astype(np.int64) * (na + 1) + les_a.components[both]
    overlap = np.bincount(pairs, minlength=(nb + 1) * (na + 1)).reshape(nb + 1, na + 1)[1:, 1:]
    area_b = np.array([les.area_px for les in les_b.items], dtype=np.float64)
    area_a = np.array([les.area_px for les in les_a.items], dtype=np.float64)
    smaller = np.minimum(area_b[:, None], area_a[None, :])
    return (overlap > 0) & (overlap >= min_overlap * smaller), overlap


def _groups_with_full_size(les_b: Lesions, les_a: Lesions, linked: np.ndarray, min_area_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the BEFORE and AFTER lesions whose overlap group holds a lesion of ``min_area_px`` or more."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    nb, na = linked.shape
    if nb + na == 0:
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=bool)
    rows, cols = np.nonzero(linked)
    graph = coo_matrix((np.ones(rows.size), (rows, nb + cols)), shape=(nb + na, nb + na))
    _, group = connected_components(graph, directed=False)
    full = np.array([les.area_px >= min_area_px for les in (*les_b.items, *les_a.items)], dtype=bool)
    kept = np.zeros(group.max() + 1, dtype=bool)
    kept[group[full]] = True
    return kept[group[:nb]], kept[group[nb:]]


def _keep(lesions: Lesions, keep: np.ndarray, min_area_px: int) -> Lesions:
    """The lesions where ``keep`` is True, renumbered (largest first, as before)."""
    relabel = np.zeros(lesions.count + 1, dtype=np.int32)
    items = []
    for les, k in zip(lesions.items, keep):
        if k:
            relabel[les.id] = len(items) + 1
            items.append(Lesion(len(items) + 1, les.area_px, les.centroid_x, les.centroid_y, les.bbox))
    return Lesions(relabel[lesions.components], tuple(items), int(min_area_px), lesions.pixel_size_mm)


def lesion_fates(
    before_labels: np.ndarray,
    after_labels_aligned: np.ndarray,
    *,
    common: np.ndarray | None = None,
    roi: np.ndarray | None = None,
    min_area_px: int = 0,
    min_overlap: float = 0.1,
    pixel_size_mm: float | None = None,
) -> LesionFates:
    """Match BEFORE's lesions with the aligned AFTER's: resolved, persistent, new.

    Both label maps are in BEFORE's frame; only the common region counts (as for
    :func:`change_metrics`), so a lesion that left the picture is not "resolved".
    A BEFORE lesion and an AFTER lesion are linked when their overlap is at least
    ``min_overlap`` of the smaller one's area; this survives a lesion shrinking inside
    its old outline and a registration error of a few pixels, and does not link a new
    lesion that merely touches an old one.

    Parameters
    ----------
    before_labels, after_labels_aligned : (H, W) uint8 ndarray
        BEFORE's label map and AFTER's warped into BEFORE's frame.
    common : (H, W) bool ndarray, optional
        Pixels of BEFORE's frame that AFTER covers; default all.
    roi : (H, W) bool ndarray, optional
        A region of interest in BEFORE's frame; the common region is limited to it.
    min_area_px : int, optional
        Smallest lesion, in BEFORE pixels, with hysteresis: a lesion counts when it
        reaches ``min_area_px`` in either photo; its partner in the other photo then
        counts from half that size. So a lesion just above the threshold in one photo
        and just below it in the other is persistent, not resolved or new; specks under
        half the threshold are ignored.
    min_overlap : float, optional
        Share of the smaller lesion's area that must overlap to link two lesions (0..1].
    pixel_size_mm : float, optional
        BEFORE's pixel side in mm.

    Returns
    -------
    LesionFates

    Raises
    ------
    ValueError
        If the maps differ in shape or ``min_overlap`` is outside (0, 1].
    """
    b = check_labels(before_labels, "before_labels")
    a = check_labels(after_labels_aligned, "after_labels_aligned")
    if a.shape != b.shape:
        raise ValueError(f"aligned AFTER labels {a.shape} must have BEFORE's shape {b.shape}")
    if not (0.0 < min_overlap <= 1.0):
        raise ValueError(f"min_overlap must be within (0, 1], got {min_overlap}")
    region = np.ones(b.shape, dtype=bool) if common is None else np.asarray(common, dtype=bool)
    if roi is not None:
        region = region & np.asarray(roi, dtype=bool)
    low = (min_area_px + 1) // 2
    les_b = find_lesions(b, roi=region, min_area_px=low, pixel_size_mm=pixel_size_mm)
    les_a = find_lesions(a, roi=region, min_area_px=low, pixel_size_mm=pixel_size_mm)
    linked, overlap = _links(les_b, les_a, min_overlap)
    # Hysteresis: keep every lesion of an overlap group in which one lesion is full size.
    keep_b, keep_a = _groups_with_full_size(les_b, les_a, linked, min_area_px)
    les_b, les_a = _keep(les_b, keep_b, min_area_px), _keep(les_a, keep_a, min_area_px)
    linked, overlap = linked[np.ix_(keep_b, keep_a)], overlap[np.ix_(keep_b, keep_a)]
    area_a = np.array([les.area_px for les in les_a.items], dtype=np.float64)
    # An AFTER lesion linked to several BEFORE lesions is shared in proportion to overlap.
    linked_overlap = np.where(linked, overlap, 0).astype(np.float64)
    col_sum = linked_overlap.sum(axis=0)
    share = np.divide(linked_overlap, col_sum[None, :], out=np.zeros_like(linked_overlap), where=col_sum[None, :] > 0)
    items: list[LesionFate] = []
    for i, les in enumerate(les_b.items):
        js = np.flatnonzero(linked[i])
        after_area = float((share[i, js] * area_a[js]).sum())
        items.append(
            LesionFate(
                fate=FATE_PERSISTENT if js.size else FATE_RESOLVED,
                before_id=les.id,
                after_ids=tuple(int(les_a.items[j].id) for j in js),
                area_before_px=les.area_px,
                area_after_px=after_area,
                area_change_rel=(after_area - les.area_px) / les.area_px,
                centroid_x=les.centroid_x,
                centroid_y=les.centroid_y,
            )
        )
    for j, les in enumerate(les_a.items):
        if not linked[:, j].any():
            items.append(
                LesionFate(
                    fate=FATE_NEW,
                    before_id=None,
                    after_ids=(les.id,),
                    area_before_px=0,
                    area_after_px=float(les.area_px),
                    area_change_rel=None,
                    centroid_x=les.centroid_x,
                    centroid_y=les.centroid_y,
                )
            )
    return LesionFates(
        before=les_b,
        after=les_a,
        items=tuple(items),
        min_overlap=float(min_overlap),
        pixel_size_mm=None if pixel_size_mm is None else float(pixel_size_mm),
    )


# --------------------------------------------------------------------------- redness


@dataclass(frozen=True)
class Redness:
    """Redness of lesion pixels relative to the healthy skin around them, in one photo.

    Attributes
    ----------
    lesion_px, reference_px : int
        Pixels measured: the lesions, and the ring of healthy skin around them.
    lesion_a, reference_a : float or None
        Mean CIELAB a* (D65, sRGB) of the lesions and of the reference ring.
    delta_a : float or None
        ``lesion_a - reference_a``: how much redder the lesions are than nearby skin.
    lesion_ei, reference_ei, delta_ei : float or None
        The same for the erythema index ``100 log10(R / G)`` of linear sRGB
        (Dawson et al. 1980, for RGB cameras).
    """

    lesion_px: int
    reference_px: int
    lesion_a: float | None
    reference_a: float | None
    delta_a: float | None
    lesion_ei: float | None
    reference_ei: float | None
    delta_ei: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "lesion_px": self.lesion_px,
            "reference_px": self.reference_px,
            "lesion_a": self.lesion_a,
            "reference_a": self.reference_a,
            "delta_a": self.delta_a,
            "lesion_ei": self.lesion_ei,
            "reference_ei": self.reference_ei,
            "delta_ei": self.delta_ei,
        }


#: Linear sRGB of each 8-bit level (IEC 61966-2-1), for the erythema index.
_SRGB_LINEAR: np.ndarray = np.where(
    np.arange(256) / 255.0 <= 0.04045, np.arange(256) / 255.0 / 12.92, ((np.arange(256) / 255.0 + 0.055) / 1.055) ** 2.4
)


def _a_star_and_ei(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CIELAB a* and erythema index of ``(N, 3) uint8`` RGB pixels."""
    a_star = cv2.cvtColor(pixels.reshape(-1, 1, 3).astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)[:, 0, 1]
    floor = 1.0 / (255.0 * 12.92)  # linear value of the first non-zero level
    lin_r = np.maximum(_SRGB_LINEAR[pixels[:, 0]], floor)
    lin_g = np.maximum(_SRGB_LINEAR[pixels[:, 1]], floor)
    return a_star.astype(np.float64), 100.0 * np.log10(lin_r / lin_g)


def redness(
    image: np.ndarray,
    lesion: np.ndarray,
    healthy: np.ndarray,
    *,
    ring_px: int | None = None,
    gap_px: int | None = None,
) -> Redness:
    """Mean a* and erythema index of ``lesion`` pixels relative to nearby healthy skin.

    The reference is the healthy skin in a ring around the lesions: farther than
    ``gap_px`` (to skip the blurred border) and at most ``gap_px + ring_px`` away.
    Measuring relative to skin of the same photo and place cancels most of a global
    white-balance or exposure change and the patient's own skin tone.

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
        RGB photo (sRGB).
    lesion : (H, W) bool ndarray
        Pixels to measure.
    healthy : (H, W) bool ndarray
        Pixels that may serve as reference (healthy skin).
    ring_px, gap_px : int, optional
        Ring width and gap in pixels; default 3 % and 0.5 % of the image's long side.

    Returns
    -------
    Redness
        Values are None where there are no lesion or no reference pixels.

    Raises
    ------
    ValueError
        If the shapes disagree or the image is not ``(H, W, 3) uint8``.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {img.shape} {img.dtype}")
    les = np.asarray(lesion, dtype=bool)
    ok = np.asarray(healthy, dtype=bool)
    if les.shape != img.shape[:2] or ok.shape != img.shape[:2]:
        raise ValueError(f"masks must have the image's shape {img.shape[:2]}, got {les.shape} and {ok.shape}")
    long_side = max(img.shape[:2])
    ring = max(2, round(0.03 * long_side)) if ring_px is None else int(ring_px)
    gap = max(1, round(0.005 * long_side)) if gap_px is None else int(gap_px)
    ys, xs = np.nonzero(les)
    n_les = int(ys.size)
    if n_les == 0:
        return Redness(0, 0, None, None, None, None, None, None)
    # Work in the lesions' bounding box grown by the ring: the rest cannot be reference.
    m = gap + ring + 2
    y0, y1 = max(0, int(ys.min()) - m), min(img.shape[0], int(ys.max()) + m + 1)
    x0, x1 = max(0, int(xs.min()) - m), min(img.shape[1], int(xs.max()) + m + 1)
    les_box = les[y0:y1, x0:x1]
    dist = cv2.distanceTransform((~les_box).astype(np.uint8), cv2.DIST_L2, 5)
    ref = ok[y0:y1, x0:x1] & ~les_box & (dist > gap) & (dist <= gap + ring)
    box = img[y0:y1, x0:x1]
    a_les, ei_les = _a_star_and_ei(box[les_box])
    la, le = float(a_les.mean()), float(ei_les.mean())
    n_ref = int(ref.sum())
    if n_ref == 0:
        return Redness(n_les, 0, la, None, None, le, None, None)
    a_ref, ei_ref = _a_star_and_ei(box[ref])
    ra, re = float(a_ref.mean()), float(ei_ref.mean())
    return Redness(n_les, n_ref, la, ra, la - ra, le, re, le - re)


def lesion_redness(image: np.ndarray, labels: np.ndarray, *, roi: np.ndarray | None = None) -> Redness:
    """:func:`redness` of a photo's own lesions against its own healthy skin.

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
        RGB photo.
    labels : (H, W) uint8 ndarray
        Its label map.
    roi : (H, W) bool ndarray, optional
        Only lesion and skin pixels inside it count.

    Returns
    -------
    Redness
    """
    lab = check_labels(labels)
    inside = np.ones(lab.shape, dtype=bool) if roi is None else np.asarray(roi, dtype=bool)
    return redness(image, (lab == LESION) & inside, (lab == SKIN) & inside)


@dataclass(frozen=True)
class RednessChange:
    """Lesion redness before and after.

    Attributes
    ----------
    before, after : Redness
        Each photo's own lesions against its own nearby healthy skin (own frame).
    sites_before, sites_after : Redness or None
        The sites of BEFORE's lesions (inside the common region) in BEFORE and in the
        aligned AFTER photo, against the skin around them that is healthy in both
        photos: how red the month-0 lesion sites are now, whatever the segmenter
        calls them. None when the pair is not aligned.
    after_colour : str
        Which AFTER colours were measured: ``"normalised"`` (photometrically
        normalised to BEFORE) or ``"as photographed"``.
    """

    before: Redness
    after: Redness
    sites_before: Redness | None
    sites_after: Redness | None
    after_colour: str

    def to_dict(self) -> dict[str, Any]:
        s_b, s_a = self.sites_before, self.sites_after
        return {
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "sites_before": None if s_b is None else s_b.to_dict(),
            "sites_after": None if s_a is None else s_a.to_dict(),
            "delta_a_change": _diff(self.before.delta_a, self.after.delta_a),
            "delta_ei_change": _diff(self.before.delta_ei, self.after.delta_ei),
            "site_delta_a_change": None if s_b is None or s_a is None else _diff(s_b.delta_a, s_a.delta_a),
            "site_delta_ei_change": None if s_b is None or s_a is None else _diff(s_b.delta_ei, s_a.delta_ei),
            "after_colour": self.after_colour,
        }


def redness_change(
    before_image: np.ndarray,
    before_labels: np.ndarray,
    after_image: np.ndarray,
    after_labels: np.ndarray,
    *,
    after_aligned: np.ndarray | None = None,
    after_labels_aligned: np.ndarray | None = None,
    common: np.ndarray | None = None,
    roi_before: np.ndarray | None = None,
    roi_after: np.ndarray | None = None,
    normalised: bool = False,
) -> RednessChange:
    """Lesion redness of a pair: each photo's lesions, and BEFORE's lesion sites in both.

    Parameters
    ----------
    before_image, after_image : (H, W, 3) uint8 ndarray
        The photos in their own frames. ``after_image`` should be the photometrically
        normalised AFTER when the pipeline has one.
    before_labels, after_labels : (H, W) uint8 ndarray
        Their label maps.
    after_aligned : (H_b, W_b, 3) uint8 ndarray, optional
        AFTER warped into BEFORE's frame (normalised when available); enables the site
        measurements.
    after_labels_aligned : (H_b, W_b) uint8 ndarray, optional
        AFTER's labels warped into BEFORE's frame.
    common : (H_b, W_b) bool ndarray, optional
        Pixels of BEFORE's frame that AFTER covers.
    roi_before, roi_after : bool ndarray, optional
        Regions of interest in each frame.
    normalised : bool
        Whether the AFTER colours given are photometrically normalised (recorded).

    Returns
    -------
    RednessChange
    """
    before = lesion_redness(before_image, before_labels, roi=roi_before)
    after = lesion_redness(after_image, after_labels, roi=roi_after)
    sites_b = sites_a = None
    if after_aligned is not None and after_labels_aligned is not None:
        b = check_labels(before_labels, "before_labels")
        a = check_labels(after_labels_aligned, "after_labels_aligned")
        region = np.ones(b.shape, dtype=bool) if common is None else np.asarray(common, dtype=bool)
        if roi_before is not None:
            region = region & np.asarray(roi_before, dtype=bool)
        sites = (b == LESION) & region
        healthy_both = (b == SKIN) & (a == SKIN) & region
        sites_b = redness(before_image, sites, healthy_both)
        sites_a = redness(after_aligned, sites, healthy_both)
    return RednessChange(before, after, sites_b, sites_a, "normalised" if normalised else "as photographed")


# --------------------------------------------------------------------------- lesions of a pair

#: Default smallest lesion, as a share of BEFORE's pixel count (1e-4: about 190 pixels,
#: a 4 mm spot, on a 1600 x 1200 photo of the back).
DEFAULT_MIN_LESION_SHARE: float = 1e-4


def default_min_lesion_area_px(shape: tuple[int, int]) -> int:
    """The default smallest lesion in pixels for a photo of ``shape`` (H, W)."""
    return max(1, round(DEFAULT_MIN_LESION_SHARE * shape[0] * shape[1]))


@dataclass(frozen=True)
class LesionMetrics:
    """Lesions as objects in each photo and their fates on the aligned pair.

    Attributes
    ----------
    before : Lesions
        BEFORE's lesions in its frame, inside its ROI.
    after : Lesions
        AFTER's lesions in its own frame, inside its ROI; the smallest-lesion threshold
        is converted to AFTER's pixels with the registration scale.
    fates : LesionFates or None
        Resolved, persistent and new lesions in BEFORE's frame inside the common
        region; None when the pair could not be aligned.
    min_area_px : int
        Smallest lesion counted, in BEFORE's pixels.
    """

    before: Lesions
    after: Lesions
    fates: LesionFates | None
    min_area_px: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "min_area_px": self.min_area_px,
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "fates": None if self.fates is None else self.fates.to_dict(),
        }


def lesion_metrics(
    before_labels: np.ndarray,
    after_labels: np.ndarray,
    after_labels_aligned: np.ndarray | None = None,
    *,
    before_labels_pair: np.ndarray | None = None,
    common: np.ndarray | None = None,
    roi_before: np.ndarray | None = None,
    roi_after: np.ndarray | None = None,
    min_area_px: int = 0,
    after_scale: float = 1.0,
    min_overlap: float = 0.1,
    pixel_size_mm: float | None = None,
    after_pixel_size_mm: float | None = None,
) -> LesionMetrics:
    """Count and measure the lesions of a pair and follow each one.

    Parameters
    ----------
    before_labels, after_labels : (H, W) uint8 ndarray
        Label maps in their own frames.
    after_labels_aligned : (H_b, W_b) uint8 ndarray, optional
        AFTER's labels in BEFORE's frame; without it there are no fates.
    before_labels_pair : (H_b, W_b) uint8 ndarray, optional
        BEFORE's labels as reconciled for the pair
        (:attr:`Reconciliation.before_labels`), which the fates follow; default
        ``before_labels``. BEFORE's own lesion list always uses ``before_labels``.
    common : (H_b, W_b) bool ndarray, optional
        Pixels of BEFORE's frame that AFTER covers.
    roi_before, roi_after : bool ndarray, optional
        Regions of interest in each frame.
    min_area_px : int
        Smallest lesion, in BEFORE's pixels.
    after_scale : float
        Length of one AFTER pixel in BEFORE pixels (:func:`imgtool.registration.local_scale`).
    min_overlap : float
        See :func:`lesion_fates`.
    pixel_size_mm, after_pixel_size_mm : float, optional
        Pixel sides in mm of BEFORE and AFTER.

    Returns
    -------
    LesionMetrics
    """
    if not after_scale > 0:
        raise ValueError(f"after_scale must be positive, got {after_scale}")
    min_after = round(min_area_px / after_scale**2)
    fates = None
    if after_labels_aligned is not None:
        fates = lesion_fates(
            before_labels if before_labels_pair is None else before_labels_pair,
            after_labels_aligned,
            common=common,
            roi=roi_before,
            min_area_px=min_area_px,
            min_overlap=min_overlap,
            pixel_size_mm=pixel_size_mm,
        )
    return LesionMetrics(
        before=find_lesions(before_labels, roi=roi_before, min_area_px=min_area_px, pixel_size_mm=pixel_size_mm),
        after=find_lesions(after_labels, roi=roi_after, min_area_px=min_after, pixel_size_mm=after_pixel_size_mm),
        fates=fates,
        min_area_px=int(min_area_px),
    )


# --------------------------------------------------------------------------- reconciling the aligned pair

#: Long side (px) at which the photos' colours are compared; the label maps keep their size.
RECONCILE_LONG_SIDE = 1024
#: A disagreement is a change when its colour moved by at least this share of the lesion's contrast.
RECONCILE_RATIO = 0.7
#: ... and by more than this many times the pair's colour residual on skin healthy in both.
RECONCILE_NOISE_FACTOR = 1.5
#: For hair: the share of the hair's contrast against nearby skin. Lower than for lesions,
#: because fine regrowth moves the colour less than its contrast suggests and a real
#: regrowth or loss reverted is worse than some noise kept (docs/metrics.md).
RECONCILE_HAIR_RATIO = 0.35


@dataclass(frozen=True)
class Reconciliation:
    """How the aligned pair's lesion labels were reconciled with the photos' colours.

    Attributes
    ----------
    labels : (H, W) uint8 ndarray
        AFTER's aligned labels, reconciled: where the photos did not change, made to
        agree with BEFORE's.
    before_labels : (H, W) uint8 ndarray
        BEFORE's labels for the pair's change metrics. The same as BEFORE's own labels
        unless the segmenter's evidence decided unchanged regions (``evidence``); then a
        region may be lesion, or not lesion, in both.
    residual_delta_e : float or None
        Median CIELAB colour difference (ΔE*ab) between BEFORE and the aligned AFTER on
        skin that both label healthy: the pair's colour residual after normalisation
        (None when no such skin exists; then nothing is reconciled).
    ratio, noise_factor : float
        The decision's parameters (see :func:`reconcile_lesion_labels`).
    evidence : bool
        Whether both photos' lesion evidence decided the label of unchanged regions
        (else BEFORE's label is kept there).
    local_light : bool
        Whether a region's colour change also counted net of the change of the healthy
        skin around it (see :func:`reconcile_lesion_labels`).
    new_kept_px, new_reverted_px : int
        Pixels that AFTER calls lesion and BEFORE anything else (healthy skin, hair or
        background): kept as new lesion, or made to agree because the photo did not
        change there.
    resolved_kept_px, resolved_reverted_px : int
        Pixels that BEFORE calls lesion and AFTER anything else: kept as resolved, or
        made to agree because the photo did not change there.
    agreed_lesion_px, agreed_other_px : int
        Of the pixels made to agree, those labelled lesion in both photos and those
        labelled not lesion in both (without evidence: the resolved and the new ones).
    """

    labels: np.ndarray = field(repr=False, compare=False)
    before_labels: np.ndarray = field(repr=False, compare=False)
    residual_delta_e: float | None
    ratio: float
    noise_factor: float
    evidence: bool
    local_light: bool
    new_kept_px: int
    new_reverted_px: int
    resolved_kept_px: int
    resolved_reverted_px: int
    agreed_lesion_px: int
    agreed_other_px: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "residual_delta_e": self.residual_delta_e,
            "ratio": self.ratio,
            "noise_factor": self.noise_factor,
            "evidence": self.evidence,
            "local_light": self.local_light,
            "new_kept_px": self.new_kept_px,
            "new_reverted_px": self.new_reverted_px,
            "resolved_kept_px": self.resolved_kept_px,
            "resolved_reverted_px": self.resolved_reverted_px,
            "agreed_lesion_px": self.agreed_lesion_px,
            "agreed_other_px": self.agreed_other_px,
        }


def _lab_small(image: np.ndarray, size: tuple[int, int], sigma: float) -> np.ndarray:
    """CIELAB (L* 0..100) of an RGB image resized to ``size`` (w, h) and lightly smoothed."""
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA) if (image.shape[1], image.shape[0]) != size else image
    lab = cv2.cvtColor(small.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    return cv2.GaussianBlur(lab, (0, 0), sigma)


def _local_mean(lab: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-weighted mean colour of the masked pixels around every pixel.

    Computed on a grid coarse enough that the Gaussian spans a few cells (the mean
    varies slowly), then resized back. Where no masked pixel is near, the mask's global
    mean stands in.
    """
    h, w = mask.shape
    f = min(1.0, 4.0 / max(sigma, 1e-6))
    size = (max(1, round(w * f)), max(1, round(h * f)))
    m = mask.astype(np.float32)
    # Area resampling of the masked colours and of the mask keeps their sums: the
    # normalised blur of the two is a weighted mean of masked pixels only.
    num = cv2.resize(lab * m[..., None], size, interpolation=cv2.INTER_AREA)
    den = cv2.resize(m, size, interpolation=cv2.INTER_AREA)
    out = normalised_blur(num, den, sigma * f)
    return cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)


def _check_reconcile_inputs(
    before_image: np.ndarray,
    after_aligned: np.ndarray,
    before_labels: np.ndarray,
    after_labels_aligned: np.ndarray,
    common: np.ndarray | None,
    before_evidence: np.ndarray | None,
    after_evidence_aligned: np.ndarray | None,
    ratio: float,
    noise_factor: float,
    what: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated label maps of a reconciliation and its region (``common`` or everything)."""
    b = check_labels(before_labels, "before_labels")
    a = check_labels(after_labels_aligned, "after_labels_aligned")
    if a.shape != b.shape or before_image.shape[:2] != b.shape or after_aligned.shape[:2] != b.shape:
        raise ValueError(
            f"images {before_image.shape[:2]}, {after_aligned.shape[:2]} and labels {b.shape}, {a.shape} must share BEFORE's shape"
        )
    if not (0.0 <= ratio <= 1.0 and noise_factor >= 0.0):
        raise ValueError(f"ratio must be in [0, 1] and noise_factor >= 0, got {ratio} and {noise_factor}")
    if (before_evidence is None) != (after_evidence_aligned is None):
        raise ValueError(f"give the {what} evidence of both photos or of neither")
    for name, ev in (("before_evidence", before_evidence), ("after_evidence_aligned", after_evidence_aligned)):
        if ev is not None and (np.ndim(ev) != 2 or min(np.shape(ev)) < 1):
            raise ValueError(f"{name} must be a 2-D map, got shape {np.shape(ev)}")
    region = np.ones(b.shape, dtype=bool) if common is None else np.asarray(common, dtype=bool)
    return b, a, region


def _reconcile_class(
    cls: int,
    before_image: np.ndarray,
    after_aligned: np.ndarray,
    b: np.ndarray,
    a: np.ndarray,
    region: np.ndarray,
    new: np.ndarray,
    gone: np.ndarray,
    before_evidence: np.ndarray | None,
    after_evidence_aligned: np.ndarray | None,
    ratio: float,
    noise_factor: float,
    local_light: bool = False,
) -> tuple[np.ndarray, np.ndarray, float | None, dict[str, int]]:
    """Make the label disagreements about ``cls`` that the photos' colours do not support agree.

    ``new`` are the candidate pixels AFTER calls ``cls`` and BEFORE not, ``gone`` the
    reverse (both inside ``region``). With ``local_light``, a region's colour change is
    also measured net of the change of the skin healthy in both photos nearby (raw where
    the other photo calls the pixel hair), and the smaller of the two counts. Returns
    BEFORE's and AFTER's reconciled labels, the pair's colour residual and the pixel
    counts ``new_kept``, ``new_reverted``,
    ``gone_kept``, ``gone_reverted``, ``agreed_class`` and ``agreed_other``.
    """
    # Colours are compared at a bounded resolution (memory stays small for 24-MP photos);
    # the decision is per region of disagreement, and those stay at full resolution.
    h, w = b.shape
    k = min(1.0, RECONCILE_LONG_SIDE / max(h, w))
    size = (max(1, round(w * k)), max(1, round(h * k)))
    lab_b = _lab_small(before_image, size, 1.0)
    lab_a = _lab_small(after_aligned, size, 1.0)

    def small(mask: np.ndarray) -> np.ndarray:
        return cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)

    joint_ev = None
    if before_evidence is not None and after_evidence_aligned is not None:
        # Both photos' log-odds, averaged: the evidence of two looks at the same skin.
        joint_ev = 0.5 * (
            cv2.resize(np.asarray(before_evidence, np.float32), size, interpolation=cv2.INTER_LINEAR)
            + cv2.resize(np.asarray(after_evidence_aligned, np.float32), size, interpolation=cv2.INTER_LINEAR)
        )

    healthy_both = small(region & (b == SKIN) & (a == SKIN))
    delta = lab_a - lab_b
    diff = np.linalg.norm(delta, axis=2)
    residual = float(np.median(diff[healthy_both])) if healthy_both.any() else None
    out_a = a.copy()
    out_b = b.copy()
    counts = dict.fromkeys(("new_kept", "new_reverted", "gone_kept", "gone_reverted", "agreed_class", "agreed_other"), 0)
    if residual is None or not (new.any() or gone.any()):
        return out_b, out_a, residual, counts
    sigma_ref = max(size) / 25.0  # "nearby": a few percent of the view
    # Light that changed locally (a lamp moved over a curved body: shading no global or
    # quadratic colour map undoes) moves the healthy skin around a region as much as the
    # region; net of that, an unchanged region's colour change is noise again.
    diff_net = np.linalg.norm(delta - _local_mean(delta, healthy_both, sigma_ref), axis=2) if local_light else None
    for name, cand, lab, own in (
        ("new", new, lab_a, small(region & (a == SKIN))),
        ("gone", gone, lab_b, small(region & (b == SKIN))),
    ):
        if not cand.any():
            continue
        contrast = np.linalg.norm(lab - _local_mean(lab, own, sigma_ref), axis=2)
        n, comp = cv2.connectedComponents(cand.astype(np.uint8), connectivity=8)
        # Only the candidate pixels are looked at: their colours are read from the
        # comparison grid, so no full-resolution float map is ever made.
        ys, xs = np.nonzero(cand)
        ids = comp[ys, xs]
        sy = np.minimum((ys * (size[1] / h)).astype(np.intp), size[1] - 1)
        sx = np.minimum((xs * (size[0] / w)).astype(np.intp), size[0] - 1)
        px = np.bincount(ids, minlength=n).astype(np.float64)
        mean_diff = np.bincount(ids, diff[sy, sx], n) / np.maximum(px, 1)
        if diff_net is not None:
            # Not where the other photo calls the pixel hair: hair that regrew there moved
            # the skin around it too, and netting that out would hide it.
            other_label = b[ys, xs] if name == "new" else a[ys, xs]
            net = np.where(other_label == HAIR, diff[sy, sx], diff_net[sy, sx])
            mean_diff = np.minimum(mean_diff, np.bincount(ids, net, n) / np.maximum(px, 1))
        mean_contrast = np.bincount(ids, contrast[sy, sx], n) / np.maximum(px, 1)
        unchanged = mean_diff < np.maximum(ratio * mean_contrast, noise_factor * residual)
        unchanged[0] = False  # label 0 is "not a candidate"
        if joint_ev is None:
            as_cls = np.full(n, name == "gone")  # BEFORE's label
        else:
            as_cls = np.bincount(ids, joint_ev[sy, sx], n) / np.maximum(px, 1) > 0.0
        agree = unchanged[ids]
        to_cls = agree & as_cls[ids]
        to_other = agree & ~as_cls[ids]
        yl, xl = ys[to_cls], xs[to_cls]
        out_a[yl, xl] = cls
        out_b[yl, xl] = cls
        # "The other label": the one of the photo that did not call ``cls``.
        yo, xo = ys[to_other], xs[to_other]
        other = b[yo, xo] if name == "new" else a[yo, xo]
        out_a[yo, xo] = other
        out_b[yo, xo] = other
        n_agree = int(agree.sum())
        counts[f"{name}_kept"] = int(ids.size) - n_agree
        counts[f"{name}_reverted"] = n_agree
        counts["agreed_class"] += int(to_cls.sum())
        counts["agreed_other"] += int(to_other.sum())
    return out_b, out_a, residual, counts


def reconcile_lesion_labels(
    before_image: np.ndarray,
    after_aligned: np.ndarray,
    before_labels: np.ndarray,
    after_labels_aligned: np.ndarray,
    *,
    common: np.ndarray | None = None,
    before_evidence: np.ndarray | None = None,
    after_evidence_aligned: np.ndarray | None = None,
    ratio: float = RECONCILE_RATIO,
    noise_factor: float = RECONCILE_NOISE_FACTOR,
    local_light: bool = True,
) -> Reconciliation:
    """Keep only the lesion changes that the photos themselves show.

    Two segmentations of the same skin disagree at the edges of faint lesions even when
    nothing changed (a different light, pose or noise moves the decision boundary), and
    on an unchanged pair that noise alone can move the lesion area by tens of percent.
    Change detection in imaging meets this by asking the images as well as the labels:
    a pixel whose label went to lesion or away from it only changed if its colour changed
    too. Each connected region of disagreement is tested as a whole (averaging over it
    beats pixel noise):

    * *new* (AFTER lesion, BEFORE anything else): its mean colour difference between the
      aligned photos is compared with its mean contrast, in AFTER, against AFTER's healthy
      skin nearby (what a new lesion must have added);
    * *resolved* (BEFORE lesion, AFTER anything else): against its contrast, in BEFORE,
      to BEFORE's healthy skin nearby (what a resolved lesion must have lost).

    "Anything else" is healthy skin, hair or background: the segmenter also trades lesion
    for hair at the edges of hair and for background at the body's outline and on
    reddish fabric, and on unchanged phantom pairs those trades moved the lesion area as
    much as the lesion/skin ones (docs/metrics.md). Real regrowth of hair over a lesion,
    or a body outline that moved, changes the colour a lot and is kept.

    The region is a change when its colour moved by at least ``ratio`` of that contrast
    and by more than ``noise_factor`` times the pair's colour residual (the median
    difference on skin healthy in both photos). Otherwise the photos show the same skin
    and the two labels are made to agree:

    * with both photos' lesion evidence (the segmenter's log-odds of lesion, e.g.
      :func:`imgtool.segmentation.segment_labels_with_evidence`), by the two photos
      together: lesion in both where the region's mean evidence, averaged over the two
      photos, is positive, else the other photo's label in both. Two looks at unchanged
      skin are better than one, and a month-0 false positive that the month-10 photo
      does not confirm then leaves both photos instead of staying as "persistent";
    * without evidence (users' masks, the classical method), AFTER's label is reset to
      BEFORE's.

    Light that changed locally, which the photometric normalisation's global colour map
    and quadratic shading cannot undo (a lamp moved over a curved body, a shadow), moves
    a region's colour without any change of the skin. With ``local_light`` (the
    default), the region's colour change is also measured net of the mean change of
    the skin healthy in both photos nearby, and the smaller of the two is compared with
    the thresholds. It is not applied where the other photo calls the pixel hair, nor in
    the hair reconciliation: the "healthy" skin nearby may carry fine regrowth the
    segmenter does not call hair, and netting out its change erased real widespread
    regrowth (docs/report.md).

    Disagreements between labels other than lesion, and everything outside ``common``,
    are left alone.

    Parameters
    ----------
    before_image : (H, W, 3) uint8 ndarray
        BEFORE's photo.
    after_aligned : (H, W, 3) uint8 ndarray
        AFTER warped into BEFORE's frame, photometrically normalised to BEFORE where
        registration fitted a correction (the residual absorbs what it did not).
    before_labels, after_labels_aligned : (H, W) uint8 ndarray
        BEFORE's labels and AFTER's labels in BEFORE's frame.
    common : (H, W) bool ndarray, optional
        Pixels of BEFORE's frame that AFTER covers. Default: all.
    before_evidence, after_evidence_aligned : (h, w) float ndarray, optional
        Lesion evidence of BEFORE and of AFTER warped into BEFORE's frame, both covering
        BEFORE's frame at any resolution (resized here); positive means lesion. Give both
        or neither.
    ratio : float
        Share of the lesion contrast the colour must move by (0..1).
    noise_factor : float
        Multiple of the pair's colour residual the colour must move by.
    local_light : bool
        Also measure each region's colour change net of the change of the healthy skin
        around it, and use the smaller one.

    Returns
    -------
    Reconciliation
        The reconciled labels of both photos and what was kept and made to agree.

    Raises
    ------
    ValueError
        If the arrays' shapes disagree, a label map is invalid, or only one evidence
        map is given.
    """
    b, a, region = _check_reconcile_inputs(
        before_image, after_aligned, before_labels, after_labels_aligned, common, before_evidence, after_evidence_aligned, ratio, noise_factor, "lesion"
    )
    new = region & (b != LESION) & (a == LESION)
    resolved = region & (b == LESION) & (a != LESION)
    out_b, out_a, residual, counts = _reconcile_class(
        LESION, before_image, after_aligned, b, a, region, new, resolved, before_evidence, after_evidence_aligned, ratio, noise_factor, local_light
    )
    return Reconciliation(
        labels=out_a,
        before_labels=out_b,
        residual_delta_e=residual,
        ratio=float(ratio),
        noise_factor=float(noise_factor),
        evidence=before_evidence is not None,
        local_light=bool(local_light),
        new_kept_px=counts["new_kept"],
        new_reverted_px=counts["new_reverted"],
        resolved_kept_px=counts["gone_kept"],
        resolved_reverted_px=counts["gone_reverted"],
        agreed_lesion_px=counts["agreed_class"],
        agreed_other_px=counts["agreed_other"],
    )


@dataclass(frozen=True)
class HairReconciliation:
    """How the aligned pair's hair labels were reconciled with the photos' colours.

    The same rule as :func:`reconcile_lesion_labels`, for the hair label: see
    :func:`reconcile_hair_labels`.

    Attributes
    ----------
    labels, before_labels : (H, W) uint8 ndarray
        AFTER's aligned labels and BEFORE's labels for the pair, reconciled.
    residual_delta_e : float or None
        Median CIELAB colour difference on skin healthy in both photos (None: nothing
        was reconciled).
    ratio, noise_factor : float
        The decision's parameters.
    evidence : bool
        Whether both photos' hair evidence decided the label of unchanged regions.
    regrown_kept_px, regrown_reverted_px : int
        Pixels AFTER calls hair and BEFORE healthy skin or background: kept as regrown,
        or made to agree because the photo did not change there.
    lost_kept_px, lost_reverted_px : int
        Pixels BEFORE calls hair and AFTER healthy skin or background: kept as lost, or
        made to agree.
    agreed_hair_px, agreed_other_px : int
        Of the pixels made to agree, those labelled hair in both photos and those
        labelled not hair in both.
    """

    labels: np.ndarray = field(repr=False, compare=False)
    before_labels: np.ndarray = field(repr=False, compare=False)
    residual_delta_e: float | None
    ratio: float
    noise_factor: float
    evidence: bool
    regrown_kept_px: int
    regrown_reverted_px: int
    lost_kept_px: int
    lost_reverted_px: int
    agreed_hair_px: int
    agreed_other_px: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "residual_delta_e": self.residual_delta_e,
            "ratio": self.ratio,
            "noise_factor": self.noise_factor,
            "evidence": self.evidence,
            "regrown_kept_px": self.regrown_kept_px,
            "regrown_reverted_px": self.regrown_reverted_px,
            "lost_kept_px": self.lost_kept_px,
            "lost_reverted_px": self.lost_reverted_px,
            "agreed_hair_px": self.agreed_hair_px,
            "agreed_other_px": self.agreed_other_px,
        }


def reconcile_hair_labels(
    before_image: np.ndarray,
    after_aligned: np.ndarray,
    before_labels: np.ndarray,
    after_labels_aligned: np.ndarray,
    *,
    common: np.ndarray | None = None,
    before_evidence: np.ndarray | None = None,
    after_evidence_aligned: np.ndarray | None = None,
    ratio: float = RECONCILE_HAIR_RATIO,
    noise_factor: float = RECONCILE_NOISE_FACTOR,
) -> HairReconciliation:
    """Keep only the hair changes that the photos themselves show.

    The hair twin of :func:`reconcile_lesion_labels`: two segmentations of the same
    unchanged scalp or body hair disagree where hair is sparse or fine, and on unchanged
    phantom pairs that moved the hair coverage of the common region by up to 14
    fraction points (docs/report.md). A region whose label went to hair (*regrown*) or
    away from it (*lost*) is a change when its mean colour moved by at least ``ratio``
    of the hair's mean contrast against nearby healthy skin (in the photo that calls it
    hair) and by more than ``noise_factor`` times the pair's colour residual. Otherwise
    the two labels are made to agree: by both photos' hair evidence when given (hair in
    both where its mean, averaged over the photos, is positive, else the other photo's
    label in both), else AFTER's label is reset to BEFORE's.

    Only trades between hair and healthy skin or background are judged here: hair
    against lesion is :func:`reconcile_lesion_labels`' business, so run that first and
    pass its labels.

    Parameters
    ----------
    before_image, after_aligned : (H, W, 3) uint8 ndarray
        BEFORE's photo and AFTER warped into BEFORE's frame (photometrically normalised).
    before_labels, after_labels_aligned : (H, W) uint8 ndarray
        BEFORE's labels for the pair and AFTER's labels in BEFORE's frame (for example a
        :class:`Reconciliation`'s ``before_labels`` and ``labels``).
    common : (H, W) bool ndarray, optional
        Pixels of BEFORE's frame that AFTER covers. Default: all.
    before_evidence, after_evidence_aligned : (h, w) float ndarray, optional
        Hair evidence (log-odds of hair against the strongest other class) of BEFORE and
        of AFTER warped into BEFORE's frame, at any resolution. Give both or neither.
    ratio : float
        Share of the hair's contrast the colour must move by (0..1).
    noise_factor : float
        Multiple of the pair's colour residual the colour must move by.

    Returns
    -------
    HairReconciliation

    Raises
    ------
    ValueError
        If the arrays' shapes disagree, a label map is invalid, or only one evidence
        map is given.
    """
    b, a, region = _check_reconcile_inputs(
        before_image, after_aligned, before_labels, after_labels_aligned, common, before_evidence, after_evidence_aligned, ratio, noise_factor, "hair"
    )
    regrown = region & (a == HAIR) & (b != HAIR) & (b != LESION)
    lost = region & (b == HAIR) & (a != HAIR) & (a != LESION)
    out_b, out_a, residual, counts = _reconcile_class(
        HAIR, before_image, after_aligned, b, a, region, regrown, lost, before_evidence, after_evidence_aligned, ratio, noise_factor
    )
    return HairReconciliation(
        labels=out_a,
        before_labels=out_b,
        residual_delta_e=residual,
        ratio=float(ratio),
        noise_factor=float(noise_factor),
        evidence=before_evidence is not None,
        regrown_kept_px=counts["new_kept"],
        regrown_reverted_px=counts["new_reverted"],
        lost_kept_px=counts["gone_kept"],
        lost_reverted_px=counts["gone_reverted"],
        agreed_hair_px=counts["agreed_class"],
        agreed_other_px=counts["agreed_other"],
    )

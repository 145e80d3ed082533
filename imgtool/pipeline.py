"""The whole analysis of a before/after pair: read, register, segment, quantify.

:func:`analyze_pair` is what ``imgtool analyze`` runs; :func:`imgtool.report.write_analysis`
writes its outputs. Everything is computed in memory first, so bad input never leaves
a partial output folder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._version import __version__
from .errors import UsageError
from .io import DEFAULT_MAX_PIXELS, ImageInfo, ImageSource, as_image, read_mask
from .labels import HAIR, LESION
from .quantify import ChangeMetrics, PhotoMetrics, change_metrics, photo_metrics
from .quantify import (
    HairReconciliation,
    LesionMetrics,
    Reconciliation,
    RednessChange,
    default_min_lesion_area_px,
    lesion_metrics,
    reconcile_hair_labels,
    reconcile_lesion_labels,
    redness_change,
)
from .registration import (
    Displacement,
    Registration,
    RegistrationOptions,
    apply_photometric,
    coverage_mask,
    local_scale,
    register,
    warp_map_to_before,
    warp_to_after,
    warp_to_before,
)
from .segmentation import DEFAULT_METHOD, SegmentationModel, check_method, model_info, prepare_model, segment_labels_with_evidence
from .segmentation.inference import EVIDENCE_CLASSES

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
#: Where ``write_analysis`` puts the non-rigid displacement field (``--nonrigid``).
DISPLACEMENT_FILE = "displacement.npz"


@dataclass(frozen=True)
class AnalysisOptions:
    """Settings of :func:`analyze_pair`.

    Attributes
    ----------
    method : str
        Segmentation method.
    pixel_size_mm : float or None
        BEFORE's pixel side in mm; enables ``*_mm2`` fields.
    after_pixel_size_mm : float or None
        AFTER's pixel side; by default derived from BEFORE's and the registration scale.
    max_pixels : int
        Refuse larger images (checked from the header).
    registration : RegistrationOptions
        Registration settings.
    min_lesion_area_px : int or None
        Smallest lesion counted as an object, in BEFORE's pixels; None: 1e-4 of
        BEFORE's pixel count (:func:`imgtool.quantify.default_min_lesion_area_px`).
    view : str or None
        Body view shown in the report ("back", "scalp top", ...); None: guessed from
        BEFORE's file name.
    augment : bool
        CNN test-time augmentation (mirror images averaged; four times the network's
        work). Recorded in result.json's ``model`` entry.
    reconcile : bool
        Reconcile the aligned pair's lesion and hair labels with the photos' colours
        before the change metrics and lesion fates
        (:func:`imgtool.quantify.reconcile_lesion_labels`, then
        :func:`imgtool.quantify.reconcile_hair_labels`): a lesion or hair pixel only
        changed if its colour changed too; with the CNN, both photos' evidence labels
        the regions that did not change. Default True.
    local_light : bool
        In that lesion reconciliation, also judge each region's colour change net of
        the change of the healthy skin around it (local changes of light; see
        :func:`imgtool.quantify.reconcile_lesion_labels`). Default True; False keeps
        the rule before 2026-12-07, which counts more false change on unchanged pairs
        and under-counts real change a little less (docs/report.md).
    """

    method: str = DEFAULT_METHOD
    pixel_size_mm: float | None = None
    after_pixel_size_mm: float | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    registration: RegistrationOptions = field(default_factory=RegistrationOptions)
    min_lesion_area_px: int | None = None
    view: str | None = None
    augment: bool = False
    reconcile: bool = True
    local_light: bool = True

    def __post_init__(self) -> None:
        check_method(self.method)
        if self.min_lesion_area_px is not None and self.min_lesion_area_px < 0:
            raise UsageError(f"min-lesion-area must be 0 or more pixels, got {self.min_lesion_area_px}")
        for name in ("pixel_size_mm", "after_pixel_size_mm"):
            v = getattr(self, name)
            if v is not None and not (np.isfinite(v) and v > 0):
                raise UsageError(f"{name.replace('_', '-')} must be a positive number, got {v}")
        if self.max_pixels <= 0:
            raise UsageError(f"max-pixels must be positive, got {self.max_pixels}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "pixel_size_mm": self.pixel_size_mm,
            "after_pixel_size_mm": self.after_pixel_size_mm,
            "max_pixels": self.max_pixels,
            "min_lesion_area_px": self.min_lesion_area_px,
            "view": self.view,
            "augment": self.augment,
            "reconcile": self.reconcile,
            "local_light": self.local_light,
            "registration": self.registration.to_dict(),
        }


@dataclass(frozen=True)
class PairAnalysis:
    """Everything ``imgtool analyze`` reports on one pair.

    The arrays are kept for writing outputs; :meth:`to_dict` is result.json.
    """

    before: ImageInfo
    after: ImageInfo
    options: AnalysisOptions
    registration: Registration
    model: dict[str, Any]
    metrics_before: PhotoMetrics
    metrics_after: PhotoMetrics
    change: ChangeMetrics
    roi_path: str | None
    warnings: tuple[str, ...]
    before_image: np.ndarray = field(compare=False, repr=False)
    after_image: np.ndarray = field(compare=False, repr=False)
    before_labels: np.ndarray = field(compare=False, repr=False)
    after_labels: np.ndarray = field(compare=False, repr=False)
    after_aligned: np.ndarray | None = field(compare=False, repr=False)
    after_labels_aligned: np.ndarray | None = field(compare=False, repr=False)
    common: np.ndarray | None = field(compare=False, repr=False)
    lesions: LesionMetrics | None = None
    redness: RednessChange | None = None
    change_homography_only: ChangeMetrics | None = None
    reconciliation: Reconciliation | None = None
    before_labels_pair: np.ndarray | None = field(default=None, compare=False, repr=False)
    hair_reconciliation: HairReconciliation | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {
            "schema_version": SCHEMA_VERSION,
            "imgtool_version": __version__,
            "model": self.model,
            "settings": {**self.options.to_dict(), "roi": self.roi_path},
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "registration": self.registration.to_dict(),
            "metrics": {
                "before": self.metrics_before.to_dict(),
                "after": self.metrics_after.to_dict(),
                "change": self.change.to_dict(),
                "lesions": None if self.lesions is None else self.lesions.to_dict(),
                "redness": None if self.redness is None else self.redness.to_dict(),
                "reconciliation": None if self.reconciliation is None else self.reconciliation.to_dict(),
                "reconciliation_hair": None if self.hair_reconciliation is None else self.hair_reconciliation.to_dict(),
            },
            "warnings": list(self.warnings),
        }
        if self.options.registration.nonrigid:
            d["nonrigid"] = _nonrigid_entry(self.registration, self.change, self.change_homography_only)
        return d


def _nonrigid_entry(reg: Registration, change: ChangeMetrics, rigid: ChangeMetrics | None) -> dict[str, Any]:
    """result.json's account of the non-rigid refinement: where the field is, and its effect on the change metrics.

    ``change_effect`` is ``metrics.change`` (with the field) minus ``change_homography_only``.
    Without a field (registration failed) every value is null, in the same shape.
    """
    with_field = change.to_dict()
    if reg.displacement is None or rigid is None:
        empty = {k: None for k in with_field}
        return {"displacement_file": None, "change_homography_only": empty, "change_effect": dict(empty)}
    without = rigid.to_dict()
    effect = {
        k: (with_field[k] - without[k] if isinstance(with_field[k], (int, float)) and isinstance(without[k], (int, float)) else None)
        for k in with_field
    }
    return {
        "displacement_file": DISPLACEMENT_FILE,
        "change_homography_only": without,
        "change_effect": effect,
    }


def analyze_pair(
    before: ImageSource,
    after: ImageSource,
    *,
    roi: ImageSource | None = None,
    options: AnalysisOptions | None = None,
    model: SegmentationModel | None = None,
    device: str = "auto",
    batch_size: int | None = None,
) -> PairAnalysis:
    """Analyse a month-0 / follow-up pair of photos of one body view.

    Parameters
    ----------
    before, after : path-like or (H, W, 3) uint8 ndarray
        The BEFORE (reference) and AFTER (follow-up) photos.
    roi : path-like or (H, W) bool ndarray, optional
        Region of interest in BEFORE's frame; default everything that is not background.
    options : AnalysisOptions, optional
        Method, pixel sizes, limits and registration settings.
    model : SegmentationModel, optional
        The CNN (method ``"cnn"``); default: the shipped model, loaded on ``device``.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"`` for the CNN when ``model`` is None.
    batch_size : int, optional
        Tiles per CNN forward pass (default 1 on the CPU, 16 on CUDA); it changes
        speed and memory, not the labels.

    Returns
    -------
    PairAnalysis
        Registration, label maps, per-photo metrics and change metrics. When the
        registration fails, the alignment-based change fields are None and a warning
        says so; the per-photo metrics are still there. With the non-rigid option
        (``options.registration.nonrigid``) the change metrics use the displacement
        field, and ``change_homography_only`` holds them without it.

    Raises
    ------
    InputError
        An image or the ROI cannot be read, or the ROI's size is not BEFORE's.
    UsageError
        Bad options, or CUDA asked for without one.
    ModelError
        The CNN's weights are missing or corrupt.
    """
    opts = options or AnalysisOptions()
    model = prepare_model(opts.method, model, device, augment=opts.augment)
    loaded = load_pair(before, after, roi=roi, options=opts)
    (labels_b, labels_a), evidence = segment_labels_with_evidence(
        [loaded.before_image, loaded.after_image], method=opts.method, model=model, batch_size=batch_size
    )
    return finish_pair(loaded, labels_b, labels_a, options=opts, model=model_entry(opts.method, model), evidence=(evidence[0], evidence[1]))


@dataclass(frozen=True)
class LoadedPair:
    """A pair's photos and ROI, read and checked: the first stage of :func:`analyze_pair`.

    Attributes
    ----------
    before_image, after_image : (H, W, 3) uint8 ndarray
        The photos, EXIF-oriented RGB.
    before_info, after_info : ImageInfo
        Where they came from.
    roi : (H_b, W_b) bool ndarray or None
        Region of interest in BEFORE's frame.
    roi_path : str or None
        The ROI's file, for result.json.
    """

    before_image: np.ndarray = field(repr=False)
    after_image: np.ndarray = field(repr=False)
    before_info: ImageInfo
    after_info: ImageInfo
    roi: np.ndarray | None = field(repr=False)
    roi_path: str | None


def load_pair(
    before: ImageSource,
    after: ImageSource,
    *,
    roi: ImageSource | None = None,
    options: AnalysisOptions | None = None,
) -> LoadedPair:
    """Read a pair's photos and ROI (the CPU stage before segmentation).

    Parameters
    ----------
    before, after : path-like or (H, W, 3) uint8 ndarray
        The BEFORE and AFTER photos.
    roi : path-like or (H, W) bool ndarray, optional
        Region of interest in BEFORE's frame.
    options : AnalysisOptions, optional
        Only ``max_pixels`` is used.

    Returns
    -------
    LoadedPair

    Raises
    ------
    InputError
        An image or the ROI cannot be read, or the ROI's size is not BEFORE's.
    """
    opts = options or AnalysisOptions()
    img_b, info_b = as_image(before, max_pixels=opts.max_pixels)
    img_a, info_a = as_image(after, max_pixels=opts.max_pixels)
    roi_b = None if roi is None else read_mask(roi, shape=img_b.shape[:2], name="ROI")
    return LoadedPair(
        before_image=img_b,
        after_image=img_a,
        before_info=info_b,
        after_info=info_a,
        roi=roi_b,
        roi_path=None if roi is None or isinstance(roi, np.ndarray) else str(roi),
    )


def finish_pair(
    loaded: LoadedPair,
    labels_b: np.ndarray,
    labels_a: np.ndarray,
    *,
    options: AnalysisOptions,
    model: dict[str, Any],
    evidence: tuple[np.ndarray | None, np.ndarray | None] | None = None,
) -> PairAnalysis:
    """Register, warp and quantify a segmented pair (the CPU stage after segmentation).

    Parameters
    ----------
    loaded : LoadedPair
        What :func:`load_pair` returned.
    labels_b, labels_a : (H, W) uint8 ndarray
        Label maps of BEFORE and AFTER (label contract), at their photos' sizes.
    options : AnalysisOptions
        The analysis settings.
    model : dict
        result.json's ``model`` entry (``{"name", "sha256", ...}``).
    evidence : (ndarray or None, ndarray or None), optional
        The CNN's lesion evidence of BEFORE and AFTER, each over its own photo at any
        resolution (:func:`imgtool.segmentation.segment_labels_with_evidence`); with
        both, reconciliation labels unchanged regions by the two photos together.

    Returns
    -------
    PairAnalysis
        As :func:`analyze_pair` returns it.
    """
    opts = options
    img_b, img_a, roi_b = loaded.before_image, loaded.after_image, loaded.roi
    info_b, info_a = loaded.before_info, loaded.after_info
    warnings: list[str] = []

    # The labels tell registration where the skin changes by design (lesions, hair).
    reg = register(img_b, img_a, options=opts.registration, before_labels=labels_b, after_labels=labels_a)
    if not reg.aligned:
        warnings.append(f"registration failed ({reg.reason}); change metrics that need alignment are null")
    elif reg.status != "ok":
        warnings.append(f"registration has low confidence ({reg.reason}); check the aligned pair")

    h = reg.homography if reg.aligned else None
    roi_a = None
    if roi_b is not None:
        if h is not None:
            roi_a = warp_to_after(roi_b, h, img_a.shape[:2], nearest=True)
        else:
            warnings.append("ROI cannot be mapped into AFTER's frame without registration; AFTER uses its whole non-background area")

    px_b = opts.pixel_size_mm
    px_a = opts.after_pixel_size_mm
    if px_a is None and px_b is not None and h is not None:
        centre = ((img_a.shape[1] - 1) / 2, (img_a.shape[0] - 1) / 2)
        px_a = px_b * local_scale(h, centre)
    # The EASI score counts the lesions the pair follows as objects: the minimum is in
    # BEFORE's pixels, and AFTER's is the same share of its own photo.
    min_lesion = opts.min_lesion_area_px if opts.min_lesion_area_px is not None else default_min_lesion_area_px(img_b.shape[:2])
    min_lesion_a = round(min_lesion * (img_a.shape[0] * img_a.shape[1]) / (img_b.shape[0] * img_b.shape[1]))
    m_b = photo_metrics(labels_b, roi=roi_b, pixel_size_mm=px_b, min_lesion_area_px=min_lesion)
    m_a = photo_metrics(labels_a, roi=roi_a, pixel_size_mm=px_a, min_lesion_area_px=min_lesion_a)

    aligned_img = aligned_labels = common = None
    rigid = None
    reconciliation = hair_reconciliation = None
    pair_labels_b = labels_b  # BEFORE's labels as the pair's change metrics see them
    ev_b, ev_a = evidence if evidence is not None else (None, None)
    use_evidence = ev_b is not None and ev_a is not None
    disp = reg.displacement
    if h is not None:
        # Colour-corrected to BEFORE (fitted on unchanged pixels only) for display.
        aligned_img = apply_photometric(warp_to_before(img_a, h, img_b.shape[:2], displacement=disp), reg)
        aligned_labels = warp_to_before(labels_a, h, img_b.shape[:2], nearest=True, displacement=disp)
        common = coverage_mask(h, img_a.shape[:2], img_b.shape[:2], displacement=disp)
        if opts.reconcile:
            # Label disagreements that the photos' colours do not support are segmentation
            # noise, not disease change (docs/report.md, repeatability).
            ev = _evidence_args(ev_b, ev_a, h, img_a.shape, img_b.shape, disp, use_evidence)
            reconciliation, hair_reconciliation = _reconcile(img_b, aligned_img, labels_b, aligned_labels, common, ev, opts.local_light)
            aligned_labels = hair_reconciliation.labels
            pair_labels_b = hair_reconciliation.before_labels
        if disp is not None:
            rigid_labels = warp_to_before(labels_a, h, img_b.shape[:2], nearest=True)
            rigid_common = coverage_mask(h, img_a.shape[:2], img_b.shape[:2])
            rigid_b = labels_b
            if opts.reconcile:
                rigid_img = apply_photometric(warp_to_before(img_a, h, img_b.shape[:2]), reg)
                ev = _evidence_args(ev_b, ev_a, h, img_a.shape, img_b.shape, None, use_evidence)
                _, rigid_hair = _reconcile(img_b, rigid_img, labels_b, rigid_labels, rigid_common, ev, opts.local_light)
                rigid_labels, rigid_b = rigid_hair.labels, rigid_hair.before_labels
            rigid = change_metrics(m_b, m_a, rigid_b, rigid_labels, common=rigid_common, roi=roi_b, pixel_size_mm=px_b)
    change = change_metrics(m_b, m_a, pair_labels_b, aligned_labels, common=common, roi=roi_b, pixel_size_mm=px_b)
    lesions = lesion_metrics(
        labels_b,
        labels_a,
        aligned_labels,
        before_labels_pair=pair_labels_b,
        common=common,
        roi_before=roi_b,
        roi_after=roi_a,
        min_area_px=min_lesion,
        after_scale=1.0 if h is None else local_scale(h, ((img_a.shape[1] - 1) / 2, (img_a.shape[0] - 1) / 2)),
        pixel_size_mm=px_b,
        after_pixel_size_mm=px_a,
    )
    # Redness is measured on the aligned AFTER as written to after_aligned.png (the
    # photometrically normalised one once registration provides it) and, for AFTER's
    # own lesions, against AFTER's own nearby skin, which cancels a global colour cast.
    normalised = h is not None and reg.photometric is not None
    redness = redness_change(
        img_b,
        labels_b,
        apply_photometric(img_a, reg, frame="after") if normalised else img_a,
        labels_a,
        after_aligned=aligned_img,
        after_labels_aligned=aligned_labels,
        common=common,
        roi_before=roi_b,
        roi_after=roi_a,
        normalised=normalised,
    )

    for w in warnings:
        logger.warning(w)
    return PairAnalysis(
        before=info_b,
        after=info_a,
        options=opts,
        registration=reg,
        model=dict(model),
        metrics_before=m_b,
        metrics_after=m_a,
        change=change,
        roi_path=loaded.roi_path,
        warnings=tuple(warnings),
        before_image=img_b,
        after_image=img_a,
        before_labels=labels_b,
        after_labels=labels_a,
        after_aligned=aligned_img,
        after_labels_aligned=aligned_labels,
        common=common,
        lesions=lesions,
        redness=redness,
        change_homography_only=rigid,
        reconciliation=reconciliation,
        before_labels_pair=None if aligned_labels is None else pair_labels_b,
        hair_reconciliation=hair_reconciliation,
    )


def _evidence_args(
    ev_b: np.ndarray | None,
    ev_a: np.ndarray | None,
    h: np.ndarray,
    shape_a: tuple[int, ...],
    shape_b: tuple[int, ...],
    disp: Displacement | None,
    use: bool,
) -> tuple[np.ndarray, np.ndarray] | None:
    """BEFORE's evidence maps, and AFTER's warped onto the same grid (None without evidence)."""
    if not use or ev_b is None or ev_a is None:
        return None
    return ev_b, warp_map_to_before(ev_a, h, shape_a[:2], shape_b[:2], ev_b.shape[:2], displacement=disp)


def _reconcile(
    img_b: np.ndarray,
    aligned_img: np.ndarray,
    labels_b: np.ndarray,
    aligned_labels: np.ndarray,
    common: np.ndarray,
    evidence: tuple[np.ndarray, np.ndarray] | None,
    local_light: bool,
) -> tuple[Reconciliation, HairReconciliation]:
    """Lesion, then hair reconciliation of an aligned pair; the hair one holds the final labels."""
    ev_l = ev_h = {}
    if evidence is not None:
        li, hi = EVIDENCE_CLASSES.index(LESION), EVIDENCE_CLASSES.index(HAIR)
        ev_l = {"before_evidence": evidence[0][..., li], "after_evidence_aligned": evidence[1][..., li]}
        ev_h = {"before_evidence": evidence[0][..., hi], "after_evidence_aligned": evidence[1][..., hi]}
    lesion = reconcile_lesion_labels(img_b, aligned_img, labels_b, aligned_labels, common=common, local_light=local_light, **ev_l)
    hair = reconcile_hair_labels(img_b, aligned_img, lesion.before_labels, lesion.labels, common=common, **ev_h)
    return lesion, hair


def model_entry(method: str, model: SegmentationModel | None) -> dict[str, Any]:
    """result.json's ``model`` entry: the CNN's ``{"name", "sha256", "device"}``, or ``{"name": method, "sha256": None}``."""
    info = model_info(method, model)
    if info is None:
        return {"name": method, "sha256": None}
    return dict(info)

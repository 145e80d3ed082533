"""SALT scoring of a four-view scalp set (top, back, left, right).

The Severity of Alopecia Tool (Olsen et al. 2004) weighs the percentage of scalp
without hair in four standard views: top 40 %, back 24 %, left 18 %, right 18 %.
:func:`score_salt_views` takes the four photos (segmented here) or their label maps,
optionally a scalp mask per view (the ROI: hair loss is counted inside it), and
returns the score with every view's numbers. The arithmetic is
:func:`imgtool.quantify.salt_score`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ._version import __version__
from .errors import InputError, UsageError
from .io import DEFAULT_MAX_PIXELS, ImageInfo, ImageSource, as_image, read_labels, read_mask
from .quantify import SALT_WEIGHTS, PhotoMetrics, SaltScore, photo_metrics, salt_score
from .segmentation import DEFAULT_METHOD, SegmentationModel, check_method, model_info, prepare_model, segment_labels

logger = logging.getLogger(__name__)

#: The views of a SALT set, in the order the command line takes them.
SALT_VIEWS: tuple[str, ...] = tuple(SALT_WEIGHTS)


@dataclass(frozen=True)
class SaltAnalysis:
    """The SALT score of a four-view set and what it was computed from.

    Attributes
    ----------
    salt : SaltScore
        The weighted score and each view's hair-loss percentage.
    images : dict of str to ImageInfo
        Each view's photo or label map.
    metrics : dict of str to PhotoMetrics
        Each view's areas inside its scalp mask (or non-background area).
    method : str
        ``"labels"`` when label maps were given, else the segmentation method.
    scalp_masks : dict of str to str or None
        Path of each view's scalp mask, when given as a file.
    model : dict or None
        ``{"name", "sha256", ...}`` of the CNN that segmented the photos.
    """

    salt: SaltScore
    images: dict[str, ImageInfo]
    metrics: dict[str, PhotoMetrics]
    method: str
    scalp_masks: dict[str, str | None]
    model: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = self.salt.to_dict()
        for view in SALT_VIEWS:
            d["views"][view]["image"] = self.images[view].to_dict()
            d["views"][view]["scalp_mask"] = self.scalp_masks[view]
            d["views"][view]["metrics"] = self.metrics[view].to_dict()
        return {"schema_version": 1, "imgtool_version": __version__, "method": self.method, "model": self.model, **d}


def score_salt_views(
    views: Mapping[str, ImageSource],
    *,
    scalp_masks: Mapping[str, ImageSource] | None = None,
    labels_given: bool = False,
    method: str = DEFAULT_METHOD,
    model: SegmentationModel | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    augment: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> SaltAnalysis:
    """SALT score of four scalp views.

    Parameters
    ----------
    views : dict of str to path-like or ndarray
        Photos (or label maps with ``labels_given``) for ``"top"``, ``"back"``,
        ``"left"`` and ``"right"``.
    scalp_masks : dict of str to path-like or (H, W) bool ndarray, optional
        Scalp area of each view (non-zero = scalp); hair loss is counted inside it.
        Without one, a view's whole non-background area is its scalp: photograph the
        scalp only, or give masks.
    labels_given : bool
        ``views`` are label maps, not photos: no segmentation.
    method : str
        Segmentation method for photos.
    model : SegmentationModel, optional
        The CNN to use (method ``"cnn"``); default the shipped model, loaded on ``device``.
    device : str
        Where the CNN runs (``"auto"``, ``"cpu"``, ``"cuda"``).
    batch_size : int, optional
        Tiles per CNN forward pass.
    augment : bool
        CNN test-time augmentation (mirror images).
    max_pixels : int
        Refuse larger photos.

    Returns
    -------
    SaltAnalysis

    Raises
    ------
    UsageError
        Views missing or unknown, or an unknown method.
    InputError
        An unreadable photo, label map or mask, or a mask of another size.
    """
    if set(views) != set(SALT_VIEWS):
        raise UsageError(f"SALT needs the four views {', '.join(SALT_VIEWS)}; got {', '.join(sorted(views)) or 'none'}")
    masks = dict(scalp_masks or {})
    unknown = set(masks) - set(SALT_VIEWS)
    if unknown:
        raise UsageError(f"scalp masks for unknown views: {', '.join(sorted(unknown))}")
    used_model = None
    if labels_given:
        loaded = {v: read_labels(views[v], name=f"{v} label map") for v in SALT_VIEWS}
        label_maps = {v: loaded[v][0] for v in SALT_VIEWS}
        infos = {v: loaded[v][1] for v in SALT_VIEWS}
        used = "labels"
    else:
        check_method(method)
        photos = {v: as_image(views[v], max_pixels=max_pixels) for v in SALT_VIEWS}
        net = prepare_model(method, model, device, augment=augment)
        maps = segment_labels([photos[v][0] for v in SALT_VIEWS], method=method, model=net, batch_size=batch_size)
        label_maps = dict(zip(SALT_VIEWS, maps))
        infos = {v: photos[v][1] for v in SALT_VIEWS}
        used = method
        used_model = model_info(method, net)
    metrics: dict[str, PhotoMetrics] = {}
    for v in SALT_VIEWS:
        roi = None if v not in masks else read_mask(masks[v], shape=label_maps[v].shape, name=f"{v} scalp mask")
        metrics[v] = photo_metrics(label_maps[v], roi=roi)
        if metrics[v].hair_loss_percent is None:
            raise InputError(f"{v} view: empty scalp area (no scalp mask pixels or an all-background label map)")
    score = salt_score({v: metrics[v].hair_loss_percent for v in SALT_VIEWS})
    logger.info("SALT %.1f (%s)", score.score, ", ".join(f"{v} {score.hair_loss_percent[v]:.1f} %" for v in SALT_VIEWS))
    mask_paths = {v: (None if v not in masks or isinstance(masks[v], np.ndarray) else str(masks[v])) for v in SALT_VIEWS}
    return SaltAnalysis(salt=score, images=infos, metrics=metrics, method=used, scalp_masks=mask_paths, model=used_model)

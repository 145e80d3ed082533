"""imgtool: measure eczema area and hair coverage on before/after photos of one body view.

The public API mirrors the command line:

>>> import imgtool
>>> result = imgtool.analyze_pair("back_month00.png", "back_month10.png")  # doctest: +SKIP
>>> result.change.lesion_area_change_rel  # doctest: +SKIP
>>> imgtool.write_analysis(result, "out/")  # doctest: +SKIP
"""

from ._version import __version__
from .errors import ImgtoolError, InputError, ModelError, OutputError, RegistrationError, UsageError
from .io import ImageInfo, read_image
from .pipeline import AnalysisOptions, PairAnalysis, analyze_pair
from .quantify import ChangeMetrics, PhotoMetrics, change_metrics, photo_metrics
from .quantify import easi_area_score, find_lesions, lesion_fates, reconcile_hair_labels, reconcile_lesion_labels, redness, salt_score
from .salt import score_salt_views
from .registration import Registration, RegistrationOptions, register
from .registration import Displacement, PhotometricCorrection, apply_photometric
from .report import write_analysis, write_segmentation
from .segmentation import SegmentResult, segment, segment_many
from .segmentation import SegmentationModel, load_model, segment_labels, segment_labels_with_evidence
from .evaluate import Evaluation, evaluate_masks, evaluate_phantoms
from .synth import DiseaseChange, PhantomPair, SynthOptions, render_pair, render_photo
from .batch import BatchOptions, BatchSummary, run_batch

__all__ = [
    "__version__",
    "Displacement",
    "PhotometricCorrection",
    "apply_photometric",
    "AnalysisOptions",
    "ChangeMetrics",
    "DiseaseChange",
    "Evaluation",
    "ImageInfo",
    "ImgtoolError",
    "InputError",
    "ModelError",
    "OutputError",
    "PairAnalysis",
    "PhantomPair",
    "PhotoMetrics",
    "Registration",
    "RegistrationError",
    "RegistrationOptions",
    "SegmentResult",
    "SegmentationModel",
    "SynthOptions",
    "UsageError",
    "analyze_pair",
    "change_metrics",
    "easi_area_score",
    "evaluate_masks",
    "evaluate_phantoms",
    "find_lesions",
    "lesion_fates",
    "load_model",
    "reconcile_hair_labels",
    "reconcile_lesion_labels",
    "redness",
    "salt_score",
    "score_salt_views",
    "photo_metrics",
    "read_image",
    "register",
    "render_pair",
    "render_photo",
    "segment",
    "segment_many",
    "segment_labels",
    "segment_labels_with_evidence",
    "write_analysis",
    "write_segmentation",
    "BatchOptions",
    "BatchSummary",
    "run_batch",
]

"""The shipped default model: loads strictly with its hash, fits the budget, is the default, and segments.

The golden checks run the shipped CNN on ``sample_images/`` (when present) and compare
with their exact truth label maps; the floors sit a little below the measured values
written in docs/segmentation.md, so a regression in the weights, the preprocessing or
the tiling shows, while float noise across machines does not.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import imgtool
from imgtool.evaluate import overlap_scores
from imgtool.io import read_image, read_labels
from imgtool.labels import HAIR, LESION, SKIN
from imgtool.segmentation import DEFAULT_METHOD, load_model, segment_labels
from imgtool.segmentation.model import DEFAULT_MODEL_NAME, shipped_models_dir
from imgtool.segmentation.network import count_flops, count_parameters

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_images"

#: Class fractions (background, skin, lesion, hair) of unet_s_v5 on :func:`_fixture_photo`.
GOLDEN_FRACTIONS = np.array([0.3539, 0.3436, 0.0229, 0.2795])
#: Floors a little below what unet_s_v5 measured on sample_images/ against the exact truth
#: (pixel accuracy - 0.03; Dice - 0.05 for the classes it finds at all).
GOLDEN_SAMPLE_FLOORS = {
    "back_month00": {"accuracy": 0.90, "skin": 0.90, "lesion": 0.49},
    "back_month10": {"accuracy": 0.88, "skin": 0.82, "hair": 0.84},
    "scalp_month00": {"accuracy": 0.90, "skin": 0.86, "lesion": 0.71},
    "scalp_month10": {"accuracy": 0.93, "skin": 0.84, "hair": 0.91},
}


@pytest.fixture(scope="module")
def shipped():
    return load_model(None, device="cpu")


def test_cnn_is_the_default_and_the_files_ship(shipped) -> None:
    assert DEFAULT_METHOD == "cnn"
    assert (shipped_models_dir() / f"{DEFAULT_MODEL_NAME}.safetensors").is_file()
    assert shipped.name == DEFAULT_MODEL_NAME
    assert (shipped_models_dir() / f"{DEFAULT_MODEL_NAME}.safetensors").stat().st_size < 8_000_000


def test_budget_and_card(shipped) -> None:
    card = shipped.card
    params = count_parameters(shipped.network)  # batch norm folded: the conv biases replace its affine terms
    assert card["parameters"] <= 3_000_000 and params <= 3_000_000
    gflop_mp = count_flops(shipped.network, 1024, 1024) / (1024 * 1024 / 1e6) / 1e9
    assert card["gflop_per_megapixel"] <= 10 and gflop_mp <= 10
    for key in ("architecture_args", "classes", "input", "training", "metrics", "weights"):
        assert key in card
    assert card["weights"]["sha256"] == shipped.sha256
    # The card's split: no held-out id was used for training.
    for s in card["training"]["config"]["real_sets"]:
        assert not set(s["train"]) & set(s["test"])


def _fixture_photo() -> np.ndarray:
    """A deterministic 480x640 test photo built from integer arithmetic only (same bytes on any machine).

    A wall, an ellipse of skin with a red patch and dark strands, and an integer-hash
    texture with a shading ramp: the CNN reads texture, and calls a flat-coloured
    cartoon background.
    """
    yy, xx = np.mgrid[0:480, 0:640]
    img = np.empty((480, 640, 3), np.int32)
    img[:] = (70, 90, 120)  # blue-grey wall
    body = ((xx - 320) ** 2) * 9 + ((yy - 300) ** 2) * 4 < 200**2 * 9  # an ellipse of skin
    img[body] = (214, 170, 140)
    patch = ((xx - 260) ** 2 + (yy - 280) ** 2) < 45**2  # a red, eczema-like patch on it
    img[patch] = (190, 95, 85)
    stripes = body & (yy < 200) & ((xx // 3) % 3 == 0)  # dark strands at the top of the body
    img[stripes] = (45, 30, 25)
    fine = (xx * 73856093 ^ yy * 19349663) % 1000  # pixel grain
    coarse = ((xx // 6) * 73856093 ^ (yy // 6) * 19349663) % 1000  # blotches of 6 px
    texture = (fine * 20) // 1000 + (coarse * 20) // 1000 - 20 + (yy * 40) // 480 - 20
    return np.clip(img + texture[..., None], 0, 255).astype(np.uint8)


def test_golden_output_on_a_generated_photo(shipped) -> None:
    labels = segment_labels([_fixture_photo()], model=shipped)[0]
    fractions = np.bincount(labels.ravel(), minlength=4) / labels.size
    np.testing.assert_allclose(fractions, GOLDEN_FRACTIONS, atol=0.01)


@pytest.mark.parametrize("stem", ["back_month00", "back_month10", "scalp_month00", "scalp_month10"])
def test_golden_sample_images_against_their_truth(shipped, stem: str) -> None:
    photo, truth_path = SAMPLES / f"{stem}.jpg", SAMPLES / "truth" / f"{stem}_labels.png"
    if not photo.is_file() or not truth_path.is_file():
        pytest.skip("sample_images/ not present")
    img, _ = read_image(photo)
    truth = read_labels(truth_path)[0]
    labels = segment_labels([img], model=shipped)[0]
    assert labels.shape == truth.shape
    floors = GOLDEN_SAMPLE_FLOORS[stem]
    assert np.mean(labels == truth) >= floors["accuracy"]
    for name, k in (("skin", SKIN), ("lesion", LESION), ("hair", HAIR)):
        if name in floors:
            assert overlap_scores(labels == k, truth == k)["dice"] >= floors[name], name


@pytest.mark.parametrize("view", ["back", "scalp"])
def test_sample_pairs_keep_the_case_reports_changes(shipped, view: str) -> None:
    """The pipeline's change fields on the sample pairs stay near their truth.

    These pairs are the case report's claims: eczema that cleared and hair that regrew
    over the whole view. A reconciliation that judges change against surroundings that
    changed too (widespread regrowth the segmenter labels skin in both photos beside the
    hair it does call) read the back's regrowth as 0.08 instead of 0.42 and the scalp's
    as 0.16 instead of 0.76; this test fails on it.
    """
    before, after = SAMPLES / f"{view}_month00.jpg", SAMPLES / f"{view}_month10.jpg"
    truth_path = SAMPLES / "truth" / f"{view}_truth.json"
    if not (before.is_file() and after.is_file() and truth_path.is_file()):
        pytest.skip("sample_images/ not present")
    truth = json.loads(truth_path.read_text())["metrics"]["change"]
    ch = imgtool.analyze_pair(before, after, model=shipped).change
    assert ch.regrown_hair_px is not None and ch.regrown_hair_px >= 0.75 * truth["regrown_hair_px"]
    assert ch.hair_coverage_change_common == pytest.approx(truth["hair_coverage_change_common"], abs=0.1)
    assert ch.lesion_area_change_rel == pytest.approx(truth["lesion_area_change_rel"], abs=0.06)

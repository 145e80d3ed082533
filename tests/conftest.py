"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """The folder of real public image sets, or None when it is not here.

    ``IMGTOOL_SHARED_DATA`` names it; by default it is ``../shared/data`` beside the
    project checkout (never inside it: the sets may not be redistributed).
    """
    env = os.environ.get("IMGTOOL_SHARED_DATA")
    candidates = [Path(env)] if env else [REPO.parent / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ``../shared/data``; the test is skipped when it is absent."""
    d = shared_data_dir()
    if d is None:
        pytest.skip("real image sets (../shared/data) not available")
    return d


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator, so every test sees the same numbers."""
    return np.random.default_rng(12345)


def textured_scene(rng: np.random.Generator, shape: tuple[int, int] = (300, 400)) -> np.ndarray:
    """A small skin-like scene: a body-coloured ellipse with texture, red patches and
    dark hair-like strokes on a grey-blue background. For IO/CLI/contract tests that
    need a photo, not for accuracy claims (the phantom generator is for those)."""
    import cv2

    h, w = shape
    img = np.zeros((h, w, 3), np.float32)
    img[:] = (70, 80, 95)
    body = np.zeros((h, w), np.uint8)
    cv2.ellipse(body, (w // 2, h // 2), (int(w * 0.38), int(h * 0.42)), 0, 0, 360, 1, -1)
    img[body > 0] = (205, 160, 138)
    tex = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 2.0)
    img += (tex / tex.std() * 10)[..., None]
    for _ in range(6):
        c = (int(rng.integers(w * 0.3, w * 0.7)), int(rng.integers(h * 0.3, h * 0.7)))
        patch = np.zeros((h, w), np.uint8)
        cv2.circle(patch, c, int(rng.integers(8, 22)), 1, -1)
        img[patch > 0] = img[patch > 0] * 0.55 + np.array([205, 70, 75], np.float32) * 0.45
    for _ in range(40):
        x0, y0 = int(rng.integers(w * 0.25, w * 0.45)), int(rng.integers(h * 0.15, h * 0.3))
        cv2.line(img, (x0, y0), (x0 + int(rng.integers(-6, 7)), y0 + 14), (45, 35, 30), 1, cv2.LINE_AA)
    return np.clip(cv2.GaussianBlur(img, (0, 0), 0.7), 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def scene_pair(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """BEFORE/AFTER PNG files of one scene, AFTER = BEFORE seen through a known
    homography (AFTER -> BEFORE matrix ``H``)."""
    import cv2

    from imgtool.io import write_png

    gen = np.random.default_rng(7)
    before = textured_scene(gen)
    h_true = np.array([[0.96, 0.06, 14.0], [-0.05, 0.98, 9.0], [2e-5, -1e-5, 1.0]])
    after = cv2.warpPerspective(before, np.linalg.inv(h_true), (before.shape[1], before.shape[0]), flags=cv2.INTER_LINEAR)
    d = tmp_path_factory.mktemp("pair")
    write_png(d / "before.png", before)
    write_png(d / "after.png", after)
    return {"before": d / "before.png", "after": d / "after.png", "H": h_true, "dir": d}

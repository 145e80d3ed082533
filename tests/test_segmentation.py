"""CNN inference: full-resolution strips, batching, device paths, OOM fallback, API and CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from imgtool.cli import main
from imgtool.errors import ModelError
from imgtool.io import write_png
from imgtool.segmentation import METHODS, model_info, segment, segment_labels, segment_labels_with_evidence
from imgtool.segmentation import inference as inf
from imgtool.segmentation.model import InputSpec, load_model, save_model
from imgtool.segmentation.network import NetworkConfig, SmallUNet


@pytest.fixture
def tiny_model(tmp_path: Path):
    torch.manual_seed(3)
    net = SmallUNet(NetworkConfig(widths=(4, 8, 8))).eval()
    save_model(net, tmp_path / "tiny", input_spec=InputSpec(working_long_side=200, tile_size=96, overlap=24))
    return load_model(tmp_path / "tiny.safetensors", device="cpu")


def _photo(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth random photo (so labels form regions, not noise)."""
    small = rng.integers(0, 256, size=(max(2, h // 16), max(2, w // 16), 3)).astype(np.uint8)
    import cv2

    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


@pytest.mark.parametrize("shape", [(37, 53), (300, 410), (97, 2000)])
def test_strip_upsampling_equals_whole_interpolation(shape: tuple[int, int], rng: np.random.Generator) -> None:
    logits = torch.from_numpy(rng.normal(size=(4, 23, 31)).astype(np.float32))
    logits = F.avg_pool2d(logits[None], 3, 1, 1)[0]  # smooth, like real class scores
    ref = F.interpolate(logits[None], size=shape, mode="bilinear", align_corners=False)[0]
    ref_lab = ref.argmax(0).numpy()
    torch_lab = inf.upsample_argmax_torch(logits, shape, strip_rows=16)
    cv2_lab = inf.upsample_argmax_cv2(logits.permute(1, 2, 0).contiguous().numpy(), shape, strip_rows=16)
    # Exact but for near-ties (OpenCV interpolates with 1/32-pixel fixed-point weights).
    top2 = ref.topk(2, dim=0).values
    clear = (top2[0] - top2[1] > 1e-2).numpy()
    assert np.array_equal(torch_lab[clear], ref_lab[clear])
    assert np.array_equal(cv2_lab[clear], ref_lab[clear])
    assert clear.mean() > 0.9


def test_working_resolution_is_downscale_only() -> None:
    assert inf.working_size((3000, 4000), 1024) == (768, 1024)
    assert inf.working_size((300, 400), 1024) == (300, 400)
    assert inf.working_size((6000, 4000), 1024) == (1024, 683)


def test_labels_at_full_size_and_batching_changes_nothing(tiny_model, rng: np.random.Generator) -> None:
    imgs = [_photo(rng, 150, 210), _photo(rng, 480, 333), _photo(rng, 80, 96)]
    one_by_one = [inf.predict_labels([im], tiny_model, batch_size=1)[0] for im in imgs]
    together = inf.predict_labels(imgs, tiny_model, batch_size=5)
    for im, a, b in zip(imgs, one_by_one, together):
        assert a.shape == im.shape[:2] and a.dtype == np.uint8
        assert np.array_equal(a, b)
        assert a.max() <= 3


@pytest.mark.parametrize("cls", [2, 3])
def test_class_evidence_is_positive_exactly_where_the_class_wins(cls: int, rng: np.random.Generator) -> None:
    logits = torch.from_numpy(rng.normal(size=(4, 20, 30)).astype(np.float32))
    ev = inf.class_evidence(logits, cls)
    assert ev.shape == (20, 30) and ev.dtype == np.float32
    np.testing.assert_array_equal(ev > 0, logits.argmax(0).numpy() == cls)
    others = np.delete(logits.numpy(), cls, axis=0).max(0)
    np.testing.assert_allclose(ev, logits.numpy()[cls] - others, rtol=1e-6)
    # The same with log-probabilities (test-time augmentation blends those).
    np.testing.assert_allclose(inf.class_evidence(torch.log_softmax(logits, 0), cls), ev, atol=1e-5)
    if cls == 2:
        np.testing.assert_array_equal(inf.lesion_evidence(logits), ev)


def test_segment_labels_with_evidence_gives_lesion_and_hair_channels(tiny_model, rng: np.random.Generator) -> None:
    # The labels are segment_labels', the evidence at working size, one channel per EVIDENCE_CLASSES.
    assert inf.EVIDENCE_CLASSES == (2, 3)
    imgs = [_photo(rng, 150, 210), _photo(rng, 480, 333)]
    labels, evidence = segment_labels_with_evidence(imgs, model=tiny_model)
    for im, lab, ref, e in zip(imgs, labels, segment_labels(imgs, model=tiny_model), evidence):
        np.testing.assert_array_equal(lab, ref)
        assert e is not None and e.shape == (*inf.working_size(im.shape[:2], 200), 2) and e.dtype == np.float32
        logits = next(inf.predict_logits([im], tiny_model))[1]
        np.testing.assert_allclose(e[..., 0], inf.class_evidence(logits, 2), atol=1e-5)
        np.testing.assert_allclose(e[..., 1], inf.class_evidence(logits, 3), atol=1e-5)
    labels, evidence = segment_labels_with_evidence(imgs, method="classical")
    assert evidence == [None, None] and labels[0].shape == (150, 210)


def test_tiled_equals_untiled_when_the_image_fits_one_tile(tiny_model, rng: np.random.Generator) -> None:
    img = _photo(rng, 90, 95)  # below working size and tile size: one tile
    logits = next(inf.predict_logits([img], tiny_model))[1]
    x = inf.normalise(img, tiny_model.input_spec, torch.device("cpu"))
    with torch.inference_mode():
        direct = tiny_model.network(x[None].contiguous(memory_format=torch.channels_last))[0]
    assert torch.equal(logits, direct)


def test_tiled_seams_small_on_a_multi_tile_image(tiny_model, rng: np.random.Generator) -> None:
    img = _photo(rng, 190, 200)  # working size 190x200, tiles 96 with overlap 24: 3x3 tiles
    tiled = next(inf.predict_logits([img], tiny_model))[1]
    x = inf.normalise(img, tiny_model.input_spec, torch.device("cpu"))
    with torch.inference_mode():
        whole = tiny_model.network(x[None].contiguous(memory_format=torch.channels_last))[0]
    # Seams: within 1 % of the output range of the untiled output (tile 96, overlap 24).
    assert float((tiled - whole).abs().max()) < 1e-2 * float(whole.max() - whole.min())


class _FakeOOMNet(torch.nn.Module):
    """Raises CUDA's out-of-memory error for batches larger than ``limit``."""

    def __init__(self, inner: torch.nn.Module, limit: int) -> None:
        super().__init__()
        self.inner, self.limit, self.batches = inner, limit, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner(x)


def test_out_of_memory_halves_the_batch(tiny_model, rng: np.random.Generator) -> None:
    inputs = [torch.randn(3, 32, 32) for _ in range(7)]
    fake = _FakeOOMNet(tiny_model.network, limit=2)
    with torch.inference_mode():
        got = dict(inf.run_batches(fake, inputs, 8, torch.device("cpu")))
        ref = dict(inf.run_batches(tiny_model.network, inputs, 1, torch.device("cpu")))
    assert sorted(got) == list(range(7))
    assert fake.batches[:3] == [7, 4, 2]  # 8 -> 4 -> 2, then batches of two
    for k in ref:
        torch.testing.assert_close(got[k], ref[k])
    with pytest.raises(ModelError, match="out of memory"):
        list(inf.run_batches(_FakeOOMNet(tiny_model.network, limit=0), inputs, 4, torch.device("cpu")))
    # Other errors are not swallowed.
    assert not inf.is_out_of_memory(RuntimeError("shape mismatch"))


def test_device_paths_run_on_cpu(tiny_model) -> None:
    assert inf.autocast_dtype(torch.device("cpu")) is None
    if not torch.cuda.is_available():
        assert inf.DEFAULT_BATCH_CUDA > inf.DEFAULT_BATCH_CPU


def test_segment_labels_api(tiny_model, rng: np.random.Generator) -> None:
    assert METHODS == ("cnn", "classical")
    imgs = [_photo(rng, 120, 160)]
    labels = segment_labels(imgs, method="cnn", model=tiny_model)
    assert labels[0].shape == (120, 160)
    assert model_info("cnn", tiny_model) == {"name": "tiny", "sha256": tiny_model.sha256, "device": "cpu", "augment": False}
    assert model_info("classical") is None
    res = segment(imgs[0], method="cnn", model=tiny_model)
    assert res.model["sha256"] == tiny_model.sha256
    assert res.to_dict()["model"]["name"] == "tiny"


def test_mirror_averaging_is_the_mean_of_four_flips_and_flip_equivariant(tiny_model, rng: np.random.Generator) -> None:
    net = tiny_model.network
    x = torch.from_numpy(rng.normal(size=(2, 3, 64, 80)).astype(np.float32))
    with torch.inference_mode():
        out = inf.mirror_averaged(net)(x)
        probs = [net(x).softmax(1), net(x.flip(3)).softmax(1).flip(3), net(x.flip(2)).softmax(1).flip(2), net(x.flip(2, 3)).softmax(1).flip(2, 3)]
        expect = (sum(probs) / 4).log()
        assert out.shape == (2, 4, 64, 80)
        torch.testing.assert_close(out, expect, atol=1e-5, rtol=1e-4)
        # Averaging over the mirror group makes the output commute with the flips.
        torch.testing.assert_close(inf.mirror_averaged(net)(x.flip(3)), out.flip(3), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(inf.mirror_averaged(net)(x.flip(2)), out.flip(2), atol=1e-5, rtol=1e-4)
        # Not a no-op: the plain network is not flip-equivariant.
        assert (net(x.flip(3)).flip(3) - net(x)).abs().max() > 1e-3


def test_augment_is_used_recorded_and_passed_through(tiny_model, rng: np.random.Generator, tmp_path: Path) -> None:
    import dataclasses
    import json

    from imgtool.segmentation import prepare_model

    img = _photo(rng, 80, 96)  # one tile at the working size: mirror images map back exactly
    aug = dataclasses.replace(tiny_model, augment=True)

    def logits(model, image):
        ((_, out),) = list(inf.predict_logits([np.ascontiguousarray(image)], model))
        return out

    torch.testing.assert_close(logits(aug, img[:, ::-1]).flip(2), logits(aug, img), atol=1e-5, rtol=1e-4)
    assert (logits(tiny_model, img[:, ::-1]).flip(2) - logits(tiny_model, img)).abs().max() > 1e-3
    labels = segment_labels([img], model=aug)[0]
    assert labels.shape == (80, 96) and labels.dtype == np.uint8
    assert model_info("cnn", aug)["augment"] is True
    assert prepare_model("cnn", tiny_model, "cpu", augment=True).augment
    assert prepare_model("cnn", aug, "cpu").augment  # a given augmented model stays so
    assert prepare_model("classical", None, "cpu", augment=True) is None
    # CLI: the flag reaches the shipped model and result.json records it.
    write_png(tmp_path / "a.png", img)
    assert main(["segment", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--method", "cnn", "--device", "cpu", "--augment"]) == 0
    doc = json.loads((tmp_path / "out" / "a.json").read_text())
    assert doc["model"]["augment"] is True


def test_cli_cuda_without_gpu_is_a_usage_error(tmp_path: Path, rng: np.random.Generator, capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    write_png(tmp_path / "a.png", _photo(rng, 80, 90))
    code = main(["segment", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--method", "cnn", "--device", "cuda"])
    err = capsys.readouterr().err
    assert code == 2
    assert "no CUDA" in err and len(err.strip().splitlines()) == 1

"""Training: masked per-set losses, seeded batches, resume, and a tiny run that learns."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from imgtool.errors import UsageError
from imgtool.io import write_png
from imgtool.labels import HAIR, LESION
from imgtool.segmentation.augment import IGNORE, AugmentOptions, augment_sample
from imgtool.segmentation.model import load_model, load_network
from imgtool.segmentation.network import NetworkConfig
from imgtool.segmentation.train import (
    KIND_ALL,
    RealSetConfig,
    TrainConfig,
    load_train_config,
    make_batch,
    masked_loss,
    train,
)


def test_one_class_loss_ignores_what_the_set_does_not_know(rng: np.random.Generator) -> None:
    logits = torch.from_numpy(rng.normal(size=(1, 4, 8, 8)).astype(np.float32))
    target = torch.from_numpy(rng.integers(0, 2, size=(1, 8, 8)))
    kinds = torch.tensor([LESION])
    base, parts = masked_loss(logits, target, kinds)
    assert set(parts) == {"bce_lesion", "dice_lesion"}
    # Moving probability between background, skin and hair (keeping their sum) changes nothing.
    shuffled = logits.clone()
    shuffled[:, [0, 1, 3]] = logits[:, [3, 0, 1]]
    assert float(masked_loss(shuffled, target, kinds)[0]) == pytest.approx(float(base), rel=1e-6)
    # Moving it into or out of the lesion class does change the loss.
    more = logits.clone()
    more[:, LESION] += 1.0
    assert float(masked_loss(more, target, kinds)[0]) != pytest.approx(float(base), rel=1e-3)


def test_ignored_pixels_do_not_count(rng: np.random.Generator) -> None:
    logits = torch.from_numpy(rng.normal(size=(2, 4, 6, 6)).astype(np.float32))
    target = torch.from_numpy(rng.integers(0, 4, size=(2, 6, 6)))
    kinds = torch.tensor([KIND_ALL, KIND_ALL])
    masked = target.clone()
    masked[:, :3] = IGNORE
    changed = logits.clone()
    changed[:, :, :3] = torch.randn(2, 4, 3, 6)  # only where the target is ignored
    assert float(masked_loss(changed, masked, kinds)[0]) == pytest.approx(float(masked_loss(logits, masked, kinds)[0]), rel=1e-6)


def test_perfect_prediction_has_low_loss() -> None:
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[:, 2:6, 2:6] = HAIR
    logits = torch.nn.functional.one_hot(target, 4).permute(0, 3, 1, 2).float() * 20
    loss, _ = masked_loss(logits, target, torch.tensor([KIND_ALL]))
    assert float(loss) < 0.05


def test_augment_moves_image_and_target_together(rng: np.random.Generator) -> None:
    img = np.zeros((200, 200, 3), np.uint8)
    tgt = np.zeros((200, 200), np.uint8)
    cv2.circle(img, (100, 100), 40, (255, 255, 255), -1)
    cv2.circle(tgt, (100, 100), 40, 1, -1)
    opts = AugmentOptions(exposure=0, contrast=0, gamma=0, white_balance=0, saturation=0, hue_deg=0, blur_p=0, noise_p=0, jpeg_p=0)
    for _ in range(5):
        a, t = augment_sample(img, tgt, 96, rng, opts)
        inside = t != IGNORE
        bright = a[..., 0] > 127
        assert np.mean(bright[inside] == (t[inside] == 1)) > 0.97


def _lesion_folder(root: Path, n: int, seed: int) -> list[str]:
    """A tiny real-set lookalike: reddish blobs (lesion masks) on beige skin."""
    r = np.random.default_rng(seed)
    d = root / "blobs"
    d.mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(n):
        img = np.empty((96, 96, 3), np.uint8)
        img[:] = (205, 170, 150)
        mask = np.zeros((96, 96), np.uint8)
        for _ in range(2):
            c = tuple(int(v) for v in r.integers(15, 81, 2))
            rad = int(r.integers(8, 20))
            cv2.circle(img, c, rad, (190, 80, 80), -1)
            cv2.circle(mask, c, rad, 255, -1)
        img = np.clip(img + r.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
        write_png(d / f"b{i}.png", img)
        write_png(d / f"b{i}_mask.png", mask)
        ids.append(f"b{i}")
    return ids


def _tiny_config(root: Path, ids: list[str], steps: int) -> TrainConfig:
    return TrainConfig(
        name="tiny",
        seed=5,
        steps=steps,
        batch_size=4,
        crop_size=64,
        lr=2e-2,
        phantom_share=0.0,
        log_every=5,
        checkpoint_every=4,
        threads=1,
        network=NetworkConfig(widths=(8, 16)),
        augment=AugmentOptions(scale=(0.8, 1.25), jpeg_p=0.0, noise_p=0.0, blur_p=0.0),
        real_sets=(RealSetConfig(name="blobs", cls="lesion", train=tuple(ids[:-2]), test=tuple(ids[-2:])),),
        data_root=str(root),
    )


def test_config_round_trip_and_relative_data_root(tmp_path: Path) -> None:
    cfg = _tiny_config(tmp_path / "data", ["a", "b", "c"], 3)
    d = cfg.to_dict()
    d["data_root"] = "data"
    (tmp_path / "cfg.json").write_text(json.dumps(d))
    back = load_train_config(tmp_path / "cfg.json")
    assert back == replace(cfg, data_root="data")
    assert back.data_dir() == (tmp_path / "data").resolve()
    assert back.to_dict()["data_root"] == "data"  # recorded as written, not as resolved here
    with pytest.raises(ValueError, match="both train and test"):
        RealSetConfig(name="x", cls="hair", train=("a",), test=("a",))


def test_batches_are_seeded_by_step(tmp_path: Path) -> None:
    from imgtool.segmentation.train import load_real_samples

    ids = _lesion_folder(tmp_path, 4, seed=1)
    cfg = _tiny_config(tmp_path, ids, 3)
    real = load_real_samples(cfg)
    assert len(real["blobs"]) == 2  # training ids only
    a = make_batch(7, cfg, [], real)
    b = make_batch(7, cfg, [], real)
    c = make_batch(8, cfg, [], real)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert a[0].shape == (4, 3, 64, 64) and set(a[2].tolist()) == {LESION}


def test_tiny_run_lowers_the_loss_and_resumes_exactly(tmp_path: Path) -> None:
    ids = _lesion_folder(tmp_path / "data", 8, seed=2)
    cfg = _tiny_config(tmp_path / "data", ids, 40)
    res = train(cfg, tmp_path / "run")
    assert res.last_loss < 0.7 * res.first_loss
    model = load_model(res.weights, device="cpu")
    assert model.card["training"]["config"]["real_sets"][0]["test"] == ids[-2:]
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(5, 41, 5))

    # Stop after step 10 (checkpoint at 8), resume: the same weights as an uninterrupted run.
    short = replace(cfg, steps=12)
    whole = train(short, tmp_path / "whole")

    def stop(step: int, _loss: float) -> None:
        if step == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(short, tmp_path / "parts", progress=stop)
    resumed = train(short, tmp_path / "parts", resume=True)
    a = load_model(whole.weights, device="cpu").network.state_dict()
    b = load_model(resumed.weights, device="cpu").network.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-3)


def _assert_same_weights(path_a: Path, path_b: Path, atol: float) -> None:
    """The two models' (batch-norm folded) parameters agree within ``atol``."""
    a = load_model(path_a, device="cpu").network.state_dict()
    b = load_model(path_b, device="cpu").network.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol)


def test_loader_workers_change_nothing_but_speed(tmp_path: Path) -> None:
    ids = _lesion_folder(tmp_path / "data", 6, seed=3)
    cfg = _tiny_config(tmp_path / "data", ids, 6)
    thread = train(cfg, tmp_path / "thread")
    procs = train(cfg, tmp_path / "procs", loader_threads=3)
    _assert_same_weights(thread.weights, procs.weights, atol=0)
    assert load_model(procs.weights, device="cpu").card["training"]["loader_threads"] == 3
    with pytest.raises(UsageError, match="loader threads"):
        train(cfg, tmp_path / "bad", loader_threads=0)


def test_stop_after_then_resume_is_the_whole_run(tmp_path: Path) -> None:
    ids = _lesion_folder(tmp_path / "data", 6, seed=5)
    cfg = _tiny_config(tmp_path / "data", ids, 9)
    whole = train(cfg, tmp_path / "whole")
    part = train(cfg, tmp_path / "parts", stop_after=5)
    assert part.steps == 5
    assert load_model(part.weights, device="cpu").card["training"]["steps_done"] == 5
    rest = train(cfg, tmp_path / "parts", resume=True)
    assert rest.steps == 9
    _assert_same_weights(whole.weights, rest.weights, atol=1e-3)
    with pytest.raises(UsageError, match="stop after"):
        train(cfg, tmp_path / "bad", stop_after=10)


def test_init_weights_start_where_the_parent_ended(tmp_path: Path) -> None:
    ids = _lesion_folder(tmp_path / "data", 6, seed=4)
    cfg = _tiny_config(tmp_path / "data", ids, 8)
    parent = train(cfg, tmp_path / "parent")
    # A learning rate of zero: the child's weights must be the parent's, bit for bit
    # (batch-norm statistics still move with the batches, so only parameters are compared).
    child_cfg = replace(cfg, name="child", lr=0.0, weight_decay=0.0, steps=2, init_weights=str(parent.weights))
    child = train(child_cfg, tmp_path / "child")
    a, _, a_sha = load_network(parent.weights)
    b, b_card, _ = load_network(child.weights)
    b_params = dict(b.named_parameters())
    for k, v in a.named_parameters():
        torch.testing.assert_close(v, b_params[k], rtol=0, atol=0)
    assert b_card["training"]["init_weights"]["sha256"] == a_sha
    other = replace(child_cfg, network=NetworkConfig(widths=(8, 16, 16)))
    with pytest.raises(UsageError, match="another architecture"):
        train(other, tmp_path / "other")


def test_tiny_run_on_phantoms_lowers_the_loss(tmp_path: Path) -> None:
    pytest.importorskip("imgtool.synth", reason="the phantom generator is not installed")
    from imgtool.segmentation.train import PhantomConfig

    cfg = replace(
        _tiny_config(tmp_path, ["unused_a", "unused_b"], 30),
        name="tiny_phantoms",
        crop_size=96,
        lr=1e-2,
        phantom_share=1.0,
        network=NetworkConfig(widths=(8, 16, 16)),
        phantoms=PhantomConfig(count=4, sizes=((160, 120), (128, 160)), seed_start=11, workers=1),
        real_sets=(),
    )
    res = train(cfg, tmp_path / "run")
    assert res.last_loss < 0.9 * res.first_loss


def test_phantom_cache_is_reused_and_matches_fresh_rendering(tmp_path: Path) -> None:
    pytest.importorskip("imgtool.synth", reason="the phantom generator is not installed")
    from imgtool.segmentation.train import PhantomConfig, phantom_cache_dir, phantom_recipe, render_phantoms

    cfg = PhantomConfig(count=3, sizes=((200, 150), (120, 160)), seed_start=21, workers=2)
    fresh = render_phantoms(replace(cfg, workers=1), 128)
    # Rendered at their own size, then downscaled to the working long side as inference does.
    assert [s.image.shape[:2] for s in fresh] == [(96, 128), (128, 96), (96, 128)]
    assert all(s.kind == KIND_ALL and s.target.max() <= 3 for s in fresh)
    cached = render_phantoms(cfg, 128, cache=tmp_path)  # two worker processes, written to the cache
    folder = phantom_cache_dir(tmp_path, phantom_recipe(cfg, 128, ()))
    assert sorted(p.name for p in folder.glob("*.png")) == sorted(f"{s}{x}.png" for s in (21, 22, 23) for x in ("", "_labels"))
    (folder / "22.png").write_bytes(b"")  # a broken cache file is rendered again
    again = render_phantoms(replace(cfg, count=4), 128, cache=tmp_path)  # one more seed: only it and 22 are new
    for a, b, c in zip(fresh, cached, again):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.target, c.target)
        np.testing.assert_array_equal(a.image, c.image)
    assert len(again) == 4 and (folder / "24.png").is_file()
    # Another working resolution is another recipe, so another folder.
    assert phantom_cache_dir(tmp_path, phantom_recipe(cfg, 96, ())) != folder


def test_average_stage_is_the_weighted_mean_of_its_parents(tmp_path: Path) -> None:
    from imgtool.segmentation.train import run_config

    ids = _lesion_folder(tmp_path / "data", 6, seed=6)
    cfg = _tiny_config(tmp_path / "data", ids, 4)
    a = train(cfg, tmp_path / "a")
    b = train(replace(cfg, name="tiny_b", seed=9, lr=5e-2), tmp_path / "b")
    (tmp_path / "soup.json").write_text(json.dumps({"name": "soup", "average": {"models": ["a/tiny.safetensors", "b/tiny_b.safetensors"], "weights": [0.25, 0.75]}}))
    soup = run_config(tmp_path / "soup.json", tmp_path / "out")
    na, _, sha_a = load_network(a.weights)
    nb, _, sha_b = load_network(b.weights)
    ns, card, _ = load_network(soup.weights)
    sa, sb = na.state_dict(), nb.state_dict()
    moved = 0
    for k, v in ns.state_dict().items():
        if v.is_floating_point():
            want = 0.25 * sa[k].float() + 0.75 * sb[k].float()
            torch.testing.assert_close(v.float(), want, rtol=0, atol=2e-3 * (1 + float(want.abs().max())))  # stored as float16
            moved += int(not torch.equal(sa[k], sb[k]))
        else:
            assert torch.equal(v, sa[k])
    assert moved > 10  # the parents really differ, so the mean is not one of them
    parents = card["training"]["average"]["parents"]
    assert [(p["sha256"], p["weight"]) for p in parents] == [(sha_a, 0.25), (sha_b, 0.75)]
    assert card["training"]["config"]["real_sets"][0]["test"] == ids[-2:] and soup.steps == 8
    assert load_model(soup.weights, device="cpu").name == "soup"
    # Resume and stop-after do not apply; shares must sum to 1; the parents must match.
    with pytest.raises(UsageError, match="no steps"):
        run_config(tmp_path / "soup.json", tmp_path / "out", resume=True)
    (tmp_path / "bad.json").write_text(json.dumps({"name": "soup", "average": {"models": ["a/tiny.safetensors", "b/tiny_b.safetensors"], "weights": [0.5, 0.6]}}))
    with pytest.raises(UsageError, match="sum to 1"):
        run_config(tmp_path / "bad.json", tmp_path / "out")
    other = train(replace(cfg, name="tiny_c", network=NetworkConfig(widths=(8, 8))), tmp_path / "c")
    (tmp_path / "arch.json").write_text(json.dumps({"name": "soup", "average": {"models": ["a/tiny.safetensors", str(other.weights)], "weights": [0.5, 0.5]}}))
    with pytest.raises(UsageError, match="architecture args differ"):
        run_config(tmp_path / "arch.json", tmp_path / "out")
    split = train(replace(cfg, name="tiny_d", real_sets=(RealSetConfig(name="blobs", cls="lesion", train=tuple(ids[1:]), test=tuple(ids[:1])),)), tmp_path / "d")
    (tmp_path / "split.json").write_text(json.dumps({"name": "soup", "average": {"models": ["a/tiny.safetensors", str(split.weights)], "weights": [0.5, 0.5]}}))
    with pytest.raises(UsageError, match="splits differ"):
        run_config(tmp_path / "split.json", tmp_path / "out")
    # The same stage from the command line.
    from imgtool.cli import main

    assert main(["train", str(tmp_path / "soup.json"), "-o", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "soup.safetensors").read_bytes() == soup.weights.read_bytes()
    assert main(["train", str(tmp_path / "bad.json"), "-o", str(tmp_path / "cli")]) != 0

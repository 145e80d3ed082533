"""Network budget, weights round trip, hash check, strict loading, device choice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from imgtool.errors import ModelError, UsageError
from imgtool.segmentation.model import InputSpec, load_model, resolve_device, save_model
from imgtool.segmentation.network import NetworkConfig, SmallUNet, count_flops, count_parameters, fold_batchnorm

TINY = NetworkConfig(widths=(4, 8, 8))


def _trained_like(config: NetworkConfig = TINY) -> SmallUNet:
    """A network whose batch-norm statistics are not the defaults (as after training)."""
    torch.manual_seed(1)
    net = SmallUNet(config)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(2, 3, 64, 64) * 2 + 0.5)
    return net.eval()


@pytest.fixture
def tiny_model_path(tmp_path: Path) -> Path:
    save_model(_trained_like(), tmp_path / "tiny", input_spec=InputSpec(working_long_side=256, tile_size=128, overlap=32))
    return tmp_path / "tiny.safetensors"


def test_flop_count_matches_hand_count() -> None:
    # One 3x3 conv 3->4 (stride 2) on 64x64: 32*32*4 outputs, 27 MACs each, no bias.
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False))
    assert count_flops(net, 64, 64) == 32 * 32 * 4 * 2 * 27
    assert count_parameters(net) == 4 * 27


def test_default_architecture_is_within_budget() -> None:
    net = SmallUNet(NetworkConfig(widths=(12, 24, 48, 96, 160, 256)))
    assert count_parameters(net) <= 3_000_000
    assert count_flops(net, 1024, 1024) / (1024 * 1024 / 1e6) <= 10e9


def test_network_any_input_size() -> None:
    net = SmallUNet(TINY).eval()
    with torch.inference_mode():
        assert net(torch.zeros(2, 3, 37, 53)).shape == (2, 4, 37, 53)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(torch.zeros(1, 4, 32, 32))


def test_fold_batchnorm_keeps_the_function() -> None:
    net = _trained_like()
    x = torch.randn(1, 3, 48, 40)
    with torch.inference_mode():
        before = net(x)
        after = fold_batchnorm(net)(x)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def test_round_trip_same_outputs(tiny_model_path: Path) -> None:
    ref = _trained_like()
    model = load_model(tiny_model_path, device="cpu")
    assert model.name == "tiny" and len(model.sha256) == 64
    assert model.card["architecture_args"]["widths"] == [4, 8, 8]
    assert model.input_spec.tile_size == 128
    assert model.info() == {"name": "tiny", "sha256": model.sha256, "device": "cpu", "augment": False}
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(model.network(x), ref(x), rtol=0, atol=2e-2)  # float16 storage
    # The .json path loads the same model.
    assert load_model(tiny_model_path.with_suffix(".json"), device="cpu").sha256 == model.sha256


def test_changed_weights_fail_the_hash_check(tiny_model_path: Path) -> None:
    data = bytearray(tiny_model_path.read_bytes())
    data[-1] ^= 0xFF
    tiny_model_path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        load_model(tiny_model_path, device="cpu")


def test_missing_files_give_clear_errors(tiny_model_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "nothing.safetensors", device="cpu")
    tiny_model_path.unlink()
    with pytest.raises(ModelError, match="weights .* not found"):
        load_model(tiny_model_path, device="cpu")


def test_corrupt_card_and_wrong_architecture(tiny_model_path: Path) -> None:
    card_path = tiny_model_path.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card_path.write_text("{not json")
    with pytest.raises(ModelError, match="JSON"):
        load_model(tiny_model_path, device="cpu")
    # Right hash, wrong architecture: strict loading refuses it.
    card["architecture_args"]["widths"] = [4, 8, 16]
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelError, match="do not fit"):
        load_model(tiny_model_path, device="cpu")


def test_weights_without_pickle(tiny_model_path: Path) -> None:
    # A safetensors file starts with a little-endian header length and a JSON header.
    data = tiny_model_path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    assert header["__metadata__"]["format"] == "imgtool-segmentation-model"
    assert all(v["dtype"] in ("F16", "I64") for k, v in header.items() if k != "__metadata__")


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UsageError, match="unknown device"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.gpu
def test_cuda_matches_cpu(tiny_model_path: Path) -> None:
    from imgtool.segmentation.inference import predict_labels

    img = (np.random.default_rng(0).random((300, 400, 3)) * 255).astype(np.uint8)
    cpu = predict_labels([img], load_model(tiny_model_path, device="cpu"))[0]
    gpu = predict_labels([img], load_model(tiny_model_path, device="cuda"))[0]
    assert np.mean(cpu == gpu) > 0.99  # autocast on GPU: rare flips at near-ties

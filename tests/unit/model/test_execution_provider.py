"""Where ONNX Runtime runs a bundle: the `model.device` setting (cpu, cuda, auto) and its one-line refusal."""

from __future__ import annotations

import onnxruntime as ort
import pytest

from model.bundle import BundleError, load_bundle, providers
from stream.app import load_checked_bundle
from stream.errors import StartupError
from stream.settings import Settings

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


def test_cpu_is_the_default_and_auto_falls_back_to_it_without_a_gpu() -> None:
    assert Settings().model.device == "cpu"
    assert providers("cpu") == ["CPUExecutionProvider"]
    expected = ["CUDAExecutionProvider", "CPUExecutionProvider"] if HAS_CUDA else ["CPUExecutionProvider"]
    assert providers("auto") == expected
    assert load_bundle(device="auto").execution_provider == expected[0]
    with pytest.raises(BundleError, match="device must be one of"):
        providers("tpu")


@pytest.mark.skipif(HAS_CUDA, reason="this onnxruntime has the CUDA provider")
def test_cuda_without_onnxruntime_gpu_refuses_the_worker_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANOMALYBERT_MODEL__DEVICE", "cuda")
    with pytest.raises(StartupError) as e:
        load_checked_bundle(Settings())
    assert "onnxruntime-gpu" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu and a GPU")
def test_cuda_scores_as_the_cpu_does() -> None:  # pragma: no cover - only where a GPU is
    import numpy as np

    cpu, gpu = load_bundle(device="cpu"), load_bundle(device="cuda")
    assert gpu.execution_provider == "CUDAExecutionProvider"
    x = np.random.default_rng(0).normal(size=(8, cpu.window_size, cpu.input_channels))
    np.testing.assert_allclose(gpu.score_windows(x), cpu.score_windows(x), atol=1e-4)

"""Which backend and device the model runs on, from DML_EMBED_BACKEND and DML_DEVICE, and
the batch size from the hardware; impossible combinations refused with what to set."""

from __future__ import annotations

import builtins

import pytest

from knowledge.errors import ConfigError
from knowledge.search import CPU_BACKEND, Runtime
from knowledge.search import embedding as embedding_module
from knowledge.settings import Settings


@pytest.fixture
def gpu(monkeypatch):
    def set_gpu(present: bool):
        monkeypatch.setattr(embedding_module, "_torch_sees_a_gpu", lambda: present)
    return set_gpu


@pytest.mark.parametrize(("backend", "device", "present", "expected"), [
    ("auto", "auto", False, (CPU_BACKEND, "cpu")),
    ("auto", "auto", True, ("torch", "cuda")),
    ("auto", "cpu", True, (CPU_BACKEND, "cpu")),
    ("torch", "auto", False, ("torch", "cpu")),
    ("torch", "auto", True, ("torch", "cuda")),
    ("torch", "cpu", True, ("torch", "cpu")),
    ("torch", "cuda", True, ("torch", "cuda")),
    ("onnx", "auto", True, ("onnx", "cpu")),  # chosen by name: runs where it can, the CPU
    ("onnx-int8", "cpu", False, ("onnx-int8", "cpu")),
])
def test_the_backend_and_device_that_run(gpu, backend, device, present, expected):
    gpu(present)
    assert Runtime(backend=backend, device=device).resolve() == expected


def test_cuda_without_a_gpu_is_refused_with_what_to_set(gpu):
    gpu(False)
    with pytest.raises(ConfigError, match="DML_DEVICE=cuda, but torch sees no GPU.*DML_DEVICE=cpu"):
        Runtime(backend="torch", device="cuda").resolve()


def test_an_exported_backend_on_cuda_is_refused(gpu):
    gpu(True)
    with pytest.raises(ConfigError, match="DML_EMBED_BACKEND=onnx-int8 runs on the CPU"):
        Runtime(backend="onnx-int8", device="cuda").resolve()


def test_auto_falls_back_to_onnx_when_openvino_is_not_installed(gpu, monkeypatch):
    gpu(False)
    monkeypatch.setattr(embedding_module, "CPU_BACKEND", "openvino-int8")
    real_import = builtins.__import__

    def no_openvino(name, *args, **kwargs):
        if name in ("openvino", "nncf"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    assert Runtime(backend="auto", device="cpu").resolve() == ("onnx-int8", "cpu")


def test_batch_size_follows_the_device_unless_set():
    assert Runtime().batch_size("cpu") == 32 and Runtime().batch_size("cuda") == 128
    assert Runtime(batch=7).batch_size("cuda") == 7


def test_the_runtime_comes_from_the_settings(tmp_path):
    settings = Settings(data_dir=tmp_path, embed_backend="onnx", device="cpu", embed_threads=3,
                        embed_batch=16)
    assert Runtime.from_settings(settings) == Runtime(
        backend="onnx", device="cpu", threads=3, batch=16,
        export_dir=tmp_path / "models" / "exported")
    shared = Settings(data_dir=tmp_path, export_dir=tmp_path / "shared")
    assert Runtime.from_settings(shared).export_dir == tmp_path / "shared"

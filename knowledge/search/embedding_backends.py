"""The embedding model on ONNX Runtime or OpenVINO: exported once from the local weights.

sentence-transformers' own ONNX and OpenVINO backends need ``optimum-onnx`` /
``optimum-intel``, which pin transformers below the version this project uses; so the
model is exported here with ``torch.onnx`` (from the same local weights, never a
download), quantised with onnxruntime's dynamic int8 quantisation or NNCF's (OpenVINO),
and run with the runtime and the ``tokenizers`` library directly.

Backends (``DML_EMBED_BACKEND``): ``torch`` (sentence-transformers itself), ``onnx``,
``onnx-int8``, ``openvino``, ``openvino-int8`` (OpenVINO is an optional extra).

The export lives in the data directory, one folder per model weights (named by their
SHA-256), beside a manifest of each file's checksum. A file that is missing, half
written or altered is rebuilt before it is loaded; files are written to a temporary name
and renamed, so a reader never sees half of one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError

__all__ = ["BACKENDS", "EXPORTED", "ExportCache", "OnnxEncoder", "OpenVinoEncoder", "available_cores",
           "encoder_for"]

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx", "onnx-int8", "openvino", "openvino-int8")
# What each exported backend loads: its files in the cache folder, the first one opened.
EXPORTED = {
    "onnx": ("model.onnx",),
    "onnx-int8": ("model-int8.onnx",),
    "openvino": ("model.onnx",),  # OpenVINO reads the ONNX export itself
    "openvino-int8": ("openvino-int8.xml", "openvino-int8.bin"),
}
OPSET = 17
_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
_MANIFEST = "manifest.json"
_MANIFEST_VERSION = 2  # 2: int8 from the fused graph, exported with eager attention


def available_cores() -> int:
    """The cores this process may run on (a container's CPU set, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _weights_file(model_dir: Path) -> Path:
    for name in _WEIGHTS:
        if (model_dir / name).is_file():
            return model_dir / name
    raise ConfigError(f"no model weights ({' or '.join(_WEIGHTS)}) in {model_dir}")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class ModelLayout:
    """What a sentence-transformers folder says about running it outside sentence-transformers:
    its pooling, whether it normalises, its longest input. Only the plain Transformer →
    Pooling (→ Normalize) stack is supported; anything else is refused by name."""

    def __init__(self, model_dir: Path):
        self.model_dir = model_dir
        modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8")) \
            if (model_dir / "modules.json").is_file() else []
        kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
        if kinds[:2] != ["Transformer", "Pooling"] or any(k != "Normalize" for k in kinds[2:]):
            raise ConfigError(
                f"the ONNX backend runs Transformer → Pooling (→ Normalize) models; {model_dir} "
                f"is {' → '.join(kinds) or 'not a sentence-transformers folder'}: "
                "use DML_EMBED_BACKEND=torch for it")
        self.normalize = "Normalize" in kinds
        pooling_dir = model_dir / (modules[1].get("path") or "1_Pooling")
        pooling = _read_json(pooling_dir / "config.json")
        if pooling.get("pooling_mode_cls_token"):
            self.pooling = "cls"
        elif pooling.get("pooling_mode_mean_tokens", True):
            self.pooling = "mean"
        else:
            raise ConfigError(f"the ONNX backend pools by mean or CLS token; {pooling_dir} "
                              "asks for another pooling: use DML_EMBED_BACKEND=torch")
        self.max_tokens = int(_read_json(model_dir / "sentence_bert_config.json")
                              .get("max_seq_length") or 256)
        self.tokenizer_file = model_dir / "tokenizer.json"
        if not self.tokenizer_file.is_file():
            raise ConfigError(f"no tokenizer.json in {model_dir}: the ONNX backend needs the "
                              "fast tokenizer's file; use DML_EMBED_BACKEND=torch")


class ExportCache:
    """``<root>/<weights sha256[:16]>/``: each exported backend's files and a manifest of
    their checksums. The weights' hash names the folder, so a tuned model or new weights
    never load an export of other weights."""

    def __init__(self, *, model_dir: Path, root: Path):
        self.model_dir = Path(model_dir)
        self.layout = ModelLayout(self.model_dir)
        self.source_sha = sha256_of(_weights_file(self.model_dir))
        self.folder = Path(root) / self.source_sha[:16]
        self._lock = threading.Lock()

    @staticmethod
    def files(backend: str) -> tuple[str, ...]:
        if backend not in EXPORTED:
            raise ConfigError(f"unknown exported backend {backend!r}: one of {', '.join(EXPORTED)}")
        return EXPORTED[backend]

    def path(self, backend: str) -> Path:
        """The verified model file of ``backend``, built (or rebuilt) first if any of its
        files is missing, half written or altered."""
        names = self.files(backend)
        with self._lock:
            if not all(self._sound(name) for name in names):
                self._build(backend)
            return self.folder / names[0]

    def _manifest(self) -> dict:
        manifest = _read_json(self.folder / _MANIFEST)
        if manifest.get("version") != _MANIFEST_VERSION or manifest.get("source") != self.source_sha:
            return {"version": _MANIFEST_VERSION, "source": self.source_sha, "files": {}}
        return manifest

    def _sound(self, name: str) -> bool:
        target = self.folder / name
        expected = self._manifest().get("files", {}).get(name)
        if not expected or not target.is_file():
            return False
        if sha256_of(target) != expected:
            log.warning("the exported model %s does not match its checksum: rebuilding it", target)
            return False
        return True

    def _build(self, backend: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        onnx = self.folder / "model.onnx"
        if backend in ("onnx", "openvino") or not self._sound(onnx.name):
            log.info("exporting %s to ONNX (once; cached in %s)", self.model_dir, self.folder)
            self._write({onnx.name: lambda tmp: _export_onnx(self.model_dir, tmp)})
        if backend == "onnx-int8":
            log.info("quantising the ONNX export to int8 (onnxruntime)")
            self._write({"model-int8.onnx":
                         lambda tmp: _quantise_onnx(onnx, tmp, model_dir=self.model_dir)})
        elif backend == "openvino-int8":
            log.info("quantising the ONNX export to int8 (OpenVINO, NNCF)")
            self._write_openvino_int8(onnx)

    def _write(self, makers: dict) -> None:
        """Each file made under a temporary name, checksummed, renamed into place; then the
        manifest (also replaced whole) records them."""
        done: dict[str, str] = {}
        for name, make in makers.items():
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{name}.", suffix=".tmp")
            os.close(fd)
            try:
                make(Path(tmp))
                done[name] = sha256_of(Path(tmp))
                os.chmod(tmp, 0o644)
                os.replace(tmp, self.folder / name)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        manifest = self._manifest()
        manifest["files"].update(done)
        _atomic_text(self.folder / _MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))

    def _write_openvino_int8(self, onnx: Path) -> None:
        """OpenVINO saves a model as two files (.xml, .bin) at once: saved together into a
        temporary folder, then each moved into place."""
        work = Path(tempfile.mkdtemp(dir=self.folder, prefix=".openvino-"))
        try:
            _quantise_openvino(onnx, work / "openvino-int8.xml",
                               tokenizer_file=self.layout.tokenizer_file)
            self._write({name: lambda tmp, name=name: os.replace(work / name, tmp)
                         for name in EXPORTED["openvino-int8"]})
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _atomic_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _export_onnx(model_dir: Path, out: Path) -> None:
    """The transformer's last hidden state as an ONNX graph with dynamic batch and length."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import warnings

    import torch
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # its per-tensor "Loading weights" bar
    # Eager attention exports the plain MatMul/Softmax pattern that onnxruntime's
    # transformer optimizer fuses into one Attention op (the int8 model's speed on long
    # passages); the SDPA export is not fused.
    model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()

    class Encoder(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    ids = torch.ones(2, 8, dtype=torch.long)
    axes = {0: "batch", 1: "tokens"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python control flow
        torch.onnx.export(
            Encoder(model), (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(out),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={name: axes for name in ("input_ids", "attention_mask",
                                                   "token_type_ids", "last_hidden_state")},
            opset_version=OPSET, dynamo=False)


def _quantise_onnx(fp32: Path, out: Path, *, model_dir: Path) -> None:
    """Fused (onnxruntime's transformer optimizer: Attention, SkipLayerNorm, BiasGelu),
    then dynamic int8 with per-channel weights. Per-tensor scales measured a mean cosine of
    0.93 with the fp32 vectors on lil-log passages, per-channel 0.99; fusing made int8
    1.4 times faster on long passages (attention is most of their cost)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger("root").disabled = True  # its advice to pre-process first, every time
    try:
        source = fp32
        fused = _fuse(fp32, out.with_name(out.name + ".fused"), model_dir=model_dir)
        if fused is not None:
            source = fused
        quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        logging.getLogger("root").disabled = False
        out.with_name(out.name + ".fused").unlink(missing_ok=True)


def _fuse(fp32: Path, out: Path, *, model_dir: Path) -> Path | None:
    """The graph with BERT's operators fused, or None when the optimizer does not know the
    model (then the plain graph is quantised: slower, same vectors)."""
    config = _read_json(model_dir / "config.json")
    heads, hidden = config.get("num_attention_heads"), config.get("hidden_size")
    if config.get("model_type") != "bert" or not heads or not hidden:
        log.info("no attention fusion for a %s model: quantising the plain graph",
                 config.get("model_type") or "unknown")
        return None
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(str(fp32), model_type="bert", num_heads=int(heads),
                               hidden_size=int(hidden), opt_level=1)
    optimized.save_model_to_file(str(out))
    return out


def calibration_texts(limit: int = 120) -> list[str]:
    """Paragraphs of the product's own sample knowledge base: what int8 activations are
    calibrated on (ML prose of the length passages have)."""
    sample = Path(__file__).resolve().parent.parent / "sample"
    paragraphs = [p.strip() for f in sorted(sample.rglob("*.md"))
                  for p in f.read_text(encoding="utf-8").split("\n\n") if len(p.strip()) > 80]
    if not paragraphs:
        raise ConfigError(f"no sample texts in {sample} to calibrate the int8 model on")
    return paragraphs[:limit]


def _quantise_openvino(onnx: Path, out: Path, *, tokenizer_file: Path) -> None:
    """Weights and activations to int8 with NNCF's post-training quantisation for
    transformers, calibrated on the sample knowledge base; saved as OpenVINO IR."""
    try:
        import nncf
        import openvino as ov
    except ImportError as exc:
        raise ConfigError("DML_EMBED_BACKEND=openvino-int8 needs OpenVINO and NNCF: "
                          "pip install 'dml[openvino]'") from exc
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.enable_truncation(256)

    def feed(text: str) -> dict:
        ids = np.array([tokenizer.encode(text).ids], dtype=np.int64)
        return {"input_ids": ids, "attention_mask": np.ones_like(ids),
                "token_type_ids": np.zeros_like(ids)}

    texts = calibration_texts()
    logging.getLogger("nncf").setLevel(logging.WARNING)
    model = ov.Core().read_model(str(onnx))
    quantised = nncf.quantize(model, nncf.Dataset([feed(t) for t in texts]),
                              model_type=nncf.ModelType.TRANSFORMER, subset_size=len(texts))
    ov.save_model(quantised, str(out))


class _Encoder:
    """Texts to vectors outside sentence-transformers: the same tokenizer, pooling and
    normalisation, batches of similar length so little is padding."""

    dimension = 0

    def __init__(self, *, layout: ModelLayout):
        from tokenizers import Tokenizer

        self.layout = layout
        self.tokenizer = Tokenizer.from_file(str(layout.tokenizer_file))
        self.tokenizer.enable_truncation(layout.max_tokens)
        self.tokenizer.no_padding()

    def encode(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        encoded = self.tokenizer.encode_batch(list(texts))
        order = np.argsort([-len(e.ids) for e in encoded], kind="stable")
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            out[rows] = self._vectors([encoded[i] for i in rows])
        return out

    def _vectors(self, batch) -> np.ndarray:
        width = max(len(e.ids) for e in batch)
        ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, e in enumerate(batch):
            ids[row, :len(e.ids)] = e.ids
            mask[row, :len(e.ids)] = 1
        hidden = self._hidden({"input_ids": ids, "attention_mask": mask,
                               "token_type_ids": np.zeros_like(ids)})
        if self.layout.pooling == "cls":
            vectors = hidden[:, 0]
        else:
            weights = mask[..., None].astype(np.float32)
            vectors = (hidden * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)
        if self.layout.normalize:
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors.astype(np.float32)

    def _hidden(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError


class OnnxEncoder(_Encoder):
    """The exported model on onnxruntime's CPU provider."""

    def __init__(self, *, model_file: Path, layout: ModelLayout, threads: int | None = None):
        super().__init__(layout=layout)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or available_cores()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(model_file), options,
                                            providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.dimension = int(self.session.get_outputs()[0].shape[-1])

    def _hidden(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, {k: v for k, v in feed.items() if k in self.inputs})[0]


class OpenVinoEncoder(_Encoder):
    """The exported model (ONNX, or int8 IR) compiled by OpenVINO for the CPU."""

    def __init__(self, *, model_file: Path, layout: ModelLayout, threads: int | None = None):
        super().__init__(layout=layout)
        try:
            import openvino as ov
        except ImportError as exc:
            raise ConfigError("the OpenVINO backends need OpenVINO: pip install 'dml[openvino]'"
                              ) from exc
        core = ov.Core()
        model = core.read_model(str(model_file))
        self.inputs = {name for port in model.inputs for name in port.get_names()}
        self.compiled = core.compile_model(model, "CPU", {
            "INFERENCE_NUM_THREADS": str(threads or available_cores())})
        self.dimension = int(model.outputs[0].get_partial_shape()[-1].get_length())
        self._request_lock = threading.Lock()

    def _hidden(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        with self._request_lock:  # one compiled model's default request: one call at a time
            result = self.compiled({k: v for k, v in feed.items() if k in self.inputs})
        return np.asarray(result[0])


def encoder_for(backend: str, cache: ExportCache, *, threads: int | None = None) -> _Encoder:
    """The encoder of an exported backend, built from (and caching) the export."""
    model_file = cache.path(backend)
    runtime = OpenVinoEncoder if backend.startswith("openvino") else OnnxEncoder
    return runtime(model_file=model_file, layout=cache.layout, threads=threads)

"""Trained models as deployable files, and what each prediction strategy costs at inference.

A prediction strategy of a trained method becomes a model of its own (`strategy_model`): a copy of the method that
keeps only the parameters and fixed buffers the strategy's forward pass reads (found by recording every tensor its
operations take), taking a float image batch and returning class scores. `export` writes it as ONNX (run with
onnxruntime) or TorchScript, with ffvision's metadata inside; `ExportedModel` reads either back for `ffvision eval`
and `ffvision predict`. Early exit is one model with the exit inside: in TorchScript it stops running layers once
every image has exited; ONNX cannot branch on data in a traced graph, so its model runs every layer and returns the
scores of each image's first confident layer (the same predictions; the rule is in the metadata).

`inference_stats` measures a strategy where it will run, on real images: latency at batch 1 (median of repeated
calls after warm-up), images per second at batch 64, and the exact peak of bytes held by tensors at batch 1 and 64
(torch's allocation records, as `ffvision bench` measures training).
"""

from __future__ import annotations

import copy
import json
import logging
import statistics
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from ffvision import __version__, kernels
from ffvision.errors import CheckpointError, ConfigError, DataError
from ffvision.export_options import EARLY_EXIT, FORMATS, QUANTIZE
from ffvision.methods.base import LocalMethod

log = logging.getLogger(__name__)

META_KEY = "ffvision"  # ONNX metadata_props key / TorchScript extra file (ffvision.json) holding the metadata
EXTRA_HINT = "pip install 'ffvision[export]'"
INPUT = ("float32 images (B, C, H, W): pixel values / 255 in [0, 1], the shorter side resized to image_size and "
         "centre-cropped; no mean/std normalisation (the model normalises its input itself)")
EARLY_EXIT_RULE = ("every layer runs; an image's scores are those of its first layer whose softmax's largest "
                   "probability reaches threshold, else the last layer's")
LATENCY_BATCH, THROUGHPUT_BATCH = 1, 64


def need(module: str) -> Any:
    """Import an optional dependency of export; ConfigError naming the extra that brings it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{module} is not installed; exporting and running ONNX models needs it: "
                          f"{EXTRA_HINT}") from None


def strategies_of(method: LocalMethod) -> list[tuple[str, float | None]]:
    """Every prediction strategy of a method, early exit once per threshold: (strategy, threshold)."""
    out: list[tuple[str, float | None]] = [(s, None) for s in method.strategies]
    return out + [(EARLY_EXIT, float(t)) for t in getattr(method, "early_exit_thresholds", ())]


def check_strategy(method: LocalMethod, strategy: str | None, threshold: float | None) -> tuple[str, float | None]:
    """(strategy, threshold) resolved (None: the run's chosen strategy); ConfigError for one the method lacks."""
    strategy = strategy or method.chosen_strategy()
    exits = getattr(method, "early_exit_thresholds", None)
    if strategy == EARLY_EXIT and exits is not None:
        if threshold is None:
            raise ConfigError(f"--strategy {EARLY_EXIT} needs --threshold, a softmax probability in (0, 1] (the run "
                              f"evaluated {', '.join(format(t, 'g') for t in exits)})")
        if not 0 < threshold <= 1:
            raise ConfigError(f"--threshold must be in (0, 1], got {threshold:g}")
        return strategy, float(threshold)
    if strategy not in method.strategies:
        names = list(method.strategies) + ([EARLY_EXIT] if exits is not None else [])
        raise ConfigError(f"unknown strategy {strategy!r} for {method.name}; choose one of: {', '.join(names)}")
    if threshold is not None:
        raise ConfigError(f"--threshold applies to --strategy {EARLY_EXIT} only, not to {strategy}")
    return strategy, None


class _Reads(TorchFunctionMode):
    """Records the id of every tensor that a torch operation takes while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[int] = set()

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        """Note the tensors among the arguments, then run the operation."""
        kwargs = kwargs or {}
        self.ids.update(id(a) for a in tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor))
        return func(*args, **kwargs)


def keep_only_read(module: nn.Module, run: Callable[[nn.Module], Any]) -> nn.Module:
    """`module` without the parameters and buffers that `run(module)` does not read (in place).

    They become None (as a layer without a bias has it); a submodule left with nothing is kept empty: the forward
    pass that was recorded does not call it.
    """
    reads = _Reads()
    with torch.no_grad(), reads:
        run(module)
    for mod in module.modules():
        for name, p in list(mod._parameters.items()):
            if p is not None and id(p) not in reads.ids:
                mod._parameters[name] = None  # (None, as a layer without a bias has: its repr still works)
        for name, b in list(mod._buffers.items()):
            if b is not None and id(b) not in reads.ids:
                mod._buffers[name] = None
    return module


def python_numbers(module: nn.Module) -> nn.Module:
    """Integer buffers (a layer range chosen on validation, BatchNorm's step count) as Python numbers, in place: an
    exported graph holds them as constants (read with int(), a tensor would make the graph depend on its value)."""
    for mod in module.modules():
        for name, b in list(mod._buffers.items()):
            if b is not None and not b.is_floating_point():
                del mod._buffers[name]
                setattr(mod, name, tuple(b.tolist()) if b.ndim else b.item())
    return module


class StrategyModel(nn.Module):
    """One prediction strategy of a trained method: images (B, C, H, W) -> class scores (B, N), float32."""

    def __init__(self, method: LocalMethod, strategy: str) -> None:
        super().__init__()
        self.method, self.strategy = method, strategy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The strategy's scores of a batch."""
        return self.method.scores(x, self.strategy)[self.strategy].float()


class _Prepare(nn.Module):
    """The method's input transform (the first block's input)."""

    def __init__(self, method: LocalMethod) -> None:
        super().__init__()
        self.method = method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """prepare(x)."""
        return self.method.prepare(x)


class _Stage(nn.Module):
    """One block at inference: (its hand-off to the next block, its class scores in float32)."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(hand-off, scores)."""
        o = self.block(h, hand_off=True)
        return o.out, o.scores.float()


class EarlyExitModel(nn.Module):
    """Early exit as one model: each image's scores are its first confident layer's (softmax max >= threshold).

    With `stop` the layers after the one where every image of the batch has exited do not run (TorchScript);
    without it every layer runs and the scores are selected (a graph without data-dependent branches: ONNX).
    """

    def __init__(self, prepare: nn.Module, stages: list[nn.Module], threshold: float, stop: bool) -> None:
        super().__init__()
        self.prepare, self.stages = prepare, nn.ModuleList(stages)
        self.threshold, self.stop = float(threshold), bool(stop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores (B, N) of each image's exit layer."""
        h = self.prepare(x)
        scores = torch.zeros(0)
        pending = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        last = len(self.stages) - 1
        for i, stage in enumerate(self.stages):
            if not self.stop or bool(pending.any()):
                h, s = stage(h)
                if i == 0:
                    scores = torch.zeros_like(s)
                done = pending if i == last else pending & (s.softmax(1).amax(1) >= self.threshold)
                scores = torch.where(done[:, None], s, scores)
                pending = pending & ~done
        return scores


def strategy_model(method: LocalMethod, strategy: str, threshold: float | None = None, stop: bool = True
                   ) -> nn.Module:
    """A strategy of `method` as a float32 CPU model holding only what it reads (the method is left as it is)."""
    strategy, threshold = check_strategy(method, strategy, threshold)
    m = python_numbers(copy.deepcopy(method).cpu().float().eval())
    m.amp_dtype = None
    if hasattr(m, "max_eval_batch"):  # every label of every image in one pass: a graph for any batch size
        m.max_eval_batch = None
    example = torch.rand(2, m.in_channels, m.image_size, m.image_size)
    with kernels.references():
        if strategy != EARLY_EXIT:
            return keep_only_read(StrategyModel(m, strategy), lambda s: s(example)).eval()
        blocks = list(m.blocks)
        m.blocks = nn.ModuleList()
        prepare = keep_only_read(_Prepare(m), lambda s: s(example))
        return EarlyExitModel(prepare.eval(), [_Stage(b).eval() for b in blocks], threshold, stop).eval()


def tensor_count(module: nn.Module | torch.jit.ScriptModule) -> tuple[int, int]:
    """(parameters, buffer elements) a model holds."""
    return (sum(p.numel() for p in module.parameters()), sum(b.numel() for b in module.buffers()))


# ----------------------------------------------------------------------------------------------- writing files
def export(checkpoint: str | Path, out: str | Path, fmt: str = "onnx", strategy: str | None = None,
           threshold: float | None = None, quantize: str | None = None) -> dict[str, Any]:
    """Write one strategy of a checkpoint as a self-contained model file; returns its metadata."""
    from ffvision.io import write_atomic
    from ffvision.train.checkpoint import load_checkpoint, method_from_checkpoint

    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if quantize is not None and quantize not in QUANTIZE:
        raise ConfigError(f"unknown quantization {quantize!r}; choose: {', '.join(QUANTIZE)}")
    if quantize is not None and fmt != "onnx":
        raise ConfigError("--quantize int8 is available with --format onnx (onnxruntime's dynamic quantization); "
                          "TorchScript models stay float32")
    if fmt == "onnx":
        need("onnx"), need("onnxscript")  # (torch's ONNX exporter translates through onnxscript)
    method, meta = method_from_checkpoint(load_checkpoint(checkpoint))
    strategy, threshold = check_strategy(method, strategy, threshold)
    model = strategy_model(method, strategy, threshold, stop=fmt == "torchscript")
    params, buffers = tensor_count(model)
    cfg = meta["config"]
    info = {"ffvision": __version__, "checkpoint": str(checkpoint), "method": cfg.method, "model": cfg.model,
            "strategy": strategy, "threshold": threshold, "format": fmt, "quantize": quantize,
            "classes": meta.get("classes") or [str(i) for i in range(meta["num_classes"])],
            "num_classes": meta["num_classes"], "in_channels": meta["in_channels"], "image_size": meta["image_size"],
            "input": INPUT, "output": "class scores (B, num_classes), float32; the argmax is the prediction",
            "parameters": params, "buffer_elements": buffers, "dataset": meta.get("dataset", cfg.dataset),
            "val_size": cfg.val_size, "split_seed": cfg.split_seed}
    if strategy == EARLY_EXIT:
        info["early_exit_rule"] = EARLY_EXIT_RULE + (" (layers after the one where every image has exited do not "
                                                     "run)" if fmt == "torchscript" else "")
    example = torch.rand(2, meta["in_channels"], meta["image_size"], meta["image_size"])
    data = (_onnx_bytes if fmt == "onnx" else _torchscript_bytes)(model, example, info)
    if quantize == "int8":
        data = _quantized_onnx(data)
    write_atomic(Path(out), data)
    log.info("wrote %s: %s %s by %s%s, %s parameters, %.1f MiB", out, cfg.method, cfg.model, strategy,
             f" at {threshold:g}" if threshold is not None else "", f"{params:,}", len(data) / 2**20)
    return {**info, "path": str(out), "bytes": len(data)}


def _traced(model: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """model as TorchScript: traced, and early exit's loop scripted around its traced parts."""
    with warnings.catch_warnings(), kernels.references(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export; TracerWarnings
        if not isinstance(model, EarlyExitModel):
            return torch.jit.trace(model, example, check_trace=False)
        prepare = torch.jit.trace(model.prepare, example, check_trace=False)
        h, stages = model.prepare(example), []
        for stage in model.stages:
            stages.append(torch.jit.trace(stage, h, check_trace=False))
            h = stage(h)[0]
        return torch.jit.script(EarlyExitModel(prepare, stages, model.threshold, stop=True))


def _torchscript_bytes(model: nn.Module, example: torch.Tensor, info: dict[str, Any]) -> bytes:
    """A TorchScript file (zip) of the model, with info as its extra file ffvision.json."""
    import io

    buf = io.BytesIO()
    traced = _traced(model, example)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.save's deprecation
        torch.jit.save(traced, buf, _extra_files={f"{META_KEY}.json": json.dumps(info)})
    return buf.getvalue()


def _onnx_bytes(model: nn.Module, example: torch.Tensor, info: dict[str, Any]) -> bytes:
    """An ONNX file of the model (batch size free), with info in its metadata_props."""
    import io

    onnx = need("onnx")
    buf = io.BytesIO()
    with warnings.catch_warnings(), kernels.references(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation; TracerWarnings
        program = torch.onnx.export(model, (example,), dynamo=True, input_names=["images"], output_names=["scores"],
                                    dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
        program.save(buf)
    proto = onnx.load_from_string(buf.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(info)
    return proto.SerializeToString()


def _quantized_onnx(data: bytes) -> bytes:
    """The ONNX model with int8 weights (onnxruntime's dynamic quantization; activations quantized per call)."""
    import tempfile

    need("onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "model.onnx", Path(d) / "int8.onnx"
        src.write_bytes(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logging.disable(logging.WARNING)  # its advice to pre-process, through the root logger
            try:
                quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
            finally:
                logging.disable(logging.NOTSET)
        return dst.read_bytes()  # (the metadata, "quantize": "int8" included, is carried over)


# ----------------------------------------------------------------------------------------------- reading files
def is_exported(path: str | Path) -> bool:
    """Whether path is a model file `export` wrote (ONNX by its suffix, TorchScript by its ffvision.json)."""
    p = Path(path)
    if not p.is_file():
        return False
    if p.suffix == ".onnx":
        return True
    if not zipfile.is_zipfile(p):
        return False
    with zipfile.ZipFile(p) as z:
        return any(n.endswith(f"/extra/{META_KEY}.json") for n in z.namelist())


class ExportedModel:
    """An exported file, ready to score batches: `meta` (what export recorded) and `scores(x)`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._ort: Any = None  # an onnxruntime InferenceSession, or
        self._module: Any = None  # a TorchScript module
        if not self.path.is_file():
            raise CheckpointError(f"model file {self.path} not found")
        try:
            if self.path.suffix == ".onnx":
                self._load_onnx()
            else:
                self._load_torchscript()
        except (CheckpointError, ConfigError):
            raise
        except Exception as e:  # damaged or foreign file
            raise CheckpointError(f"cannot read exported model {self.path}: {str(e).splitlines()[0]}") from None

    def _load_onnx(self) -> None:
        """The model loaded into onnxruntime on the CPU; the metadata from the file."""
        ort = need("onnxruntime")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self._ort = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        props = self._ort.get_modelmeta().custom_metadata_map
        if META_KEY not in props:
            raise CheckpointError(f"{self.path} is an ONNX model without ffvision's metadata (not from ffvision "
                                  "export)")
        self.meta = json.loads(props[META_KEY])
        self._input = self._ort.get_inputs()[0].name

    def _load_torchscript(self) -> None:
        """The TorchScript module; the metadata from its extra file."""
        extra = {f"{META_KEY}.json": ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._module = torch.jit.load(str(self.path), map_location="cpu", _extra_files=extra)
        if not extra[f"{META_KEY}.json"]:
            raise CheckpointError(f"{self.path} is a TorchScript model without ffvision's metadata")
        self.meta = json.loads(extra[f"{META_KEY}.json"])
        self._module.eval()

    def check(self, x: torch.Tensor) -> None:
        """DataError unless x is a batch of the model's channels and size."""
        c, s = self.meta["in_channels"], self.meta["image_size"]
        if x.ndim != 4 or tuple(x.shape[1:]) != (c, s, s):
            raise DataError(f"{self.path.name} expects images of shape (B, {c}, {s}, {s}), got {tuple(x.shape)}")

    @torch.no_grad()
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (B, N) of a float batch, as a CPU float32 tensor."""
        self.check(x)
        x = x.detach().float().cpu().contiguous()
        if self._ort is not None:
            return torch.from_numpy(self._ort.run(None, {self._input: x.numpy()})[0])
        return self._module(x).float()

    def parameters(self) -> int:
        """The parameters the file holds, as export counted them."""
        return int(self.meta["parameters"])


# ----------------------------------------------------------------------------------------------- measuring
def _median_seconds(call: Callable[[], Any], calls: int, budget: float) -> float:
    """Median wall-clock seconds of `call` over up to `calls` runs (at least 3), stopping after `budget` seconds."""
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < calls and (len(times) < 3 or time.perf_counter() - start < budget):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def batches_of(images: torch.Tensor) -> dict[int, torch.Tensor]:
    """The measured batches from real images: the first image (batch 1), the first 64 (repeated to 64 if fewer)."""
    reps = -(-THROUGHPUT_BATCH // images.shape[0])
    return {LATENCY_BATCH: images[:LATENCY_BATCH], THROUGHPUT_BATCH: images.repeat(reps, 1, 1, 1)[:THROUGHPUT_BATCH]}


def inference_stats(score: Callable[[torch.Tensor], Any], images: torch.Tensor, memory: bool = True,
                    budget: float = 1.0) -> dict[str, Any]:
    """Latency at batch 1 (ms, median after warm-up), img/s at batch 64 and the exact peak of tensor bytes at both,
    on real images (early exit's cost depends on them) on their device."""
    from ffvision.bench import exact_peak_bytes
    from ffvision.train.devices import device_name

    device = images.device
    out: dict[str, Any] = {"device": device_name(device)}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for batch, x in batches_of(images).items():

        def call(x: torch.Tensor = x) -> None:
            score(x)
            sync()

        with torch.no_grad():
            for _ in range(2):  # warm-up: first-call allocations, kernel selection
                call()
            seconds = _median_seconds(call, 25 if batch == LATENCY_BATCH else 5, budget)
            if batch == LATENCY_BATCH:
                out["latency_ms"] = seconds * 1e3
            else:
                out["images_per_second"] = batch / seconds
            if memory:
                out[f"peak_bytes_batch{batch}"] = exact_peak_bytes(call, "cuda:0" if device.type == "cuda"
                                                                   else "cpu")["peak"]
    return out


def method_inference_stats(method: LocalMethod, images: torch.Tensor, budget: float = 1.0
                           ) -> dict[str, dict[str, Any]]:
    """inference_stats of every strategy of a trained method (early exit per threshold) on `images` (float, on the
    device to measure), keyed as eval prints them (`exit@T` for early exit)."""
    res = {}
    for strategy, threshold in strategies_of(method):
        model = strategy_model(method, strategy, threshold).to(images.device)
        key = strategy if threshold is None else f"exit@{threshold:g}"
        with kernels.references():  # the plain operations an exported model runs
            res[key] = {**inference_stats(model, images, budget=budget), "parameters": tensor_count(model)[0]}
    return res


def first_images(dataset: Any, device: torch.device) -> torch.Tensor:
    """The first 64 images of a dataset split as a float batch in [0, 1] on `device` (what inference is timed on)."""
    from torch.utils.data import DataLoader

    from ffvision.train.devices import batch_to_device

    x, y = next(iter(DataLoader(dataset, batch_size=THROUGHPUT_BATCH)))
    return batch_to_device(x, y, device)[0]

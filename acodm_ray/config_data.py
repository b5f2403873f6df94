"""The config sections of what is trained on and what is trained: `corpus`, `prepare`, `tokenizer`,
`model` (acodm_ray/config.py puts them together). Each field's docstring is its documentation:
docs/config.md and the flags' `--help` are generated from it (acodm_ray/typed_config.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Source = Literal["bundled", "tiny", "json", "parquet", "text", "csv", "hub"]


@dataclass
class CorpusConfig:
    """Where the multi-domain text comes from. Domains come either from a column (`domain_column`,
    dotted for nested fields such as The Pile's `meta.pile_set_name`) or from one source per domain
    (`domain_files`). Every source is prepared into token shards (`acodm corpus prepare`) and
    trained on from those."""

    source: Source = "bundled"
    """Where the text comes from: "bundled" (the offline corpus `acodm corpus build` makes: real
    text from Debian packages), "tiny" (the small slice shipped inside the package, for tests and
    smoke runs), "json", "parquet", "text" or "csv" (local files: jsonl, parquet, csv, or one text
    file per document, read with Ray Data), or "hub" (a `datasets` dataset, streamed: the only
    source that downloads, and only what it reads)."""
    path: str | None = None
    """The corpus directory for "bundled" (null: the one `acodm corpus build` makes; a bare name
    is looked up under $ACODM_HOME/corpus), the dataset's hub name (or a `datasets` builder such as
    "json") for "hub"."""
    data_files: dict[str, list[str]] = field(default_factory=dict)
    """Column mode: split ("train", optionally "validation") -> files or globs."""
    domain_files: dict[str, list[str]] = field(default_factory=dict)
    """File mode: domain -> files or globs; every row (for "text": every file) is one document."""
    domain_column: str = "domain"
    """The column naming each document's domain in column mode (dotted for nested fields)."""
    text_column: str = "text"
    """The column holding each document's text."""
    domains: list[str] = field(default_factory=list)
    """Restrict to, and order by, these domains; empty: every domain the source has."""
    validation_fraction: float = 0.05
    """Share of each domain's documents held out for validation, used only when the source has
    no validation split."""
    max_docs_per_domain: int | None = None
    """Documents a domain's split takes at most; null: all."""
    max_tokens_per_domain: int | None = None
    """A domain's split stops taking documents once it holds this many tokens (whole documents);
    with `domains` named, a streamed hub source stops reading when every domain is full."""
    trust_remote_code: bool = False
    """Let a hub dataset run its own loading code."""
    prepared: str | None = None
    """The prepared corpus (token shards): a local path or a pyarrow.fs URI (s3://, gs://, ...);
    null: $ACODM_HOME/prepared/<source>-<key>, prepared automatically on first use."""


@dataclass
class PrepareConfig:
    """How `acodm corpus prepare` (acodm_ray/data/prepare.py) runs: the tokenizer actor pool of its
    Ray Data job, and the shard size. None of it changes the tokens."""

    workers: int | None = None
    """Most tokenizer actors; null: one per CPU of the Ray cluster."""
    cpus_per_worker: float = 0.5
    """CPUs of each tokenizer actor (fractional: a read task and the actors share a 2-core
    machine)."""
    shard_tokens: int = 1 << 25
    """Tokens per shard file (64 MiB of uint16)."""


@dataclass
class TokenizerConfig:
    """Train a byte-level BPE on the corpus (cached), or load an existing tokenizer."""

    path: str | None = None
    """A tokenizer.json file or Hugging Face tokenizer directory; null: train one on the corpus."""
    from_hub: bool = False
    """Allow `path` to be a hub name (downloads); off: local files only."""
    trust_remote_code: bool = False
    """Let a hub tokenizer run its own code."""
    vocab_size: int = 4096
    """Vocabulary size of the trained tokenizer (and of the model)."""
    train_max_chars_per_domain: int = 2_000_000
    """Characters of each domain the tokenizer is trained on (the first ones)."""


@dataclass
class ModelConfig:
    """A Hugging Face causal LM trained from scratch. Defaults are a tiny GPT-NeoX (Pythia shape)."""

    model_type: str = "gpt_neox"
    """Any `transformers` config type (gpt_neox, gpt2, llama, ...)."""
    hidden_size: int = 64
    """Width of the residual stream."""
    num_layers: int = 2
    """Transformer blocks."""
    num_heads: int = 4
    """Attention heads (must divide hidden_size)."""
    intermediate_size: int | None = None
    """Width of the MLP; null: 4 x hidden_size."""
    max_position_embeddings: int = 2048
    """Longest sequence the model takes."""
    hf_overrides: dict[str, Any] = field(default_factory=dict)
    """Any other field of the Hugging Face config (e.g. rotary_pct for Pythia)."""
    trust_remote_code: bool = False
    """Let a hub model type run its own code."""

"""The prepared corpus's tokenizer: `tokenizer.path` loaded, or a byte-level BPE trained on the first
`tokenizer.train_max_chars_per_domain` characters of each domain's training documents.

Those characters are read with the same Ray Data reader as the corpus, through the same document
filter and the same split rule, and reading stops as soon as every named domain has its share (a
source whose domains are only known at its end is read to the end, without tokenizing). Only the
shares are held in memory. The tokenizer is saved inside the prepared directory (`tokenizer/`,
`save_pretrained` format) with `acodm_tokenizer.json` (its hash and what it was made from), so a
resumed prepare and every consumer use exactly the same one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerFast

from acodm_ray.config import ExperimentConfig
from acodm_ray.data.doc_ops import doc_spec, extract_for_tokenizer
from acodm_ray.data.manifest import TOKENIZER_DIR, PreparedCorpusError
from acodm_ray.data.readers import mapped_blocks
from acodm_ray.data.router import DocRouter
from acodm_ray.data.sources import SourcePlan
from acodm_ray.data.tokenizer import (
    MIN_VOCAB,
    TokenizerError,
    load_hub_tokenizer,
    load_tokenizer,
    save_atomically,
    tokenizer_hash,
    train_bpe,
    wrap,
)

META = "acodm_tokenizer.json"


def tokenizer_key(cfg: ExperimentConfig, plan: SourcePlan) -> dict[str, Any]:
    """What determines the tokenizer: a given one's path (and file contents), or the corpus and
    the training settings of a trained one."""
    t = cfg.tokenizer
    if t.path:
        local = Path(t.path).expanduser()
        files = sorted(local.rglob("*")) if local.is_dir() else [local] if local.exists() else []
        digest = hashlib.sha256()
        for f in (f for f in files if f.is_file()):
            digest.update(f.name.encode() + f.read_bytes())
        return {
            "path": t.path,
            "from_hub": t.from_hub,
            "files_sha256": digest.hexdigest() if files else None,
        }
    return {
        "train": {"vocab_size": t.vocab_size, "max_chars_per_domain": t.train_max_chars_per_domain},
        "corpus": plan.fingerprint,
    }


def prepare_tokenizer(
    cfg: ExperimentConfig, plan: SourcePlan, root: Path
) -> PreTrainedTokenizerFast:
    """The tokenizer in `root/tokenizer`, made (loaded or trained) unless it is there already."""
    key = tokenizer_key(cfg, plan)
    meta_path = root / TOKENIZER_DIR / META
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta["key"] == key:
            return load_tokenizer(root / TOKENIZER_DIR)
        raise PreparedCorpusError(
            f"{root} was prepared with another tokenizer ({meta['key']}); this config asks for {key}. "
            "Choose another directory or pass --force"
        )
    tokenizer = obtain_tokenizer(cfg, plan)
    save_atomically(tokenizer, root / TOKENIZER_DIR)
    meta_path.write_text(
        json.dumps(
            {
                "key": key,
                "hash": tokenizer_hash(tokenizer),
                "vocab_size": len(tokenizer),
                "eos_id": tokenizer.eos_token_id,
            },
            indent=1,
        )
        + "\n"
    )
    return tokenizer


def obtain_tokenizer(cfg: ExperimentConfig, plan: SourcePlan) -> PreTrainedTokenizerFast:
    t = cfg.tokenizer
    if t.path and t.from_hub and not Path(t.path).expanduser().exists():
        return load_hub_tokenizer(t.path, t.trust_remote_code)
    if t.path:
        return load_tokenizer(t.path)
    if t.vocab_size < MIN_VOCAB:
        raise TokenizerError(
            f"tokenizer.vocab_size must be at least {MIN_VOCAB} (256 bytes + eos), got {t.vocab_size}"
        )
    return wrap(train_bpe(iter(training_texts(cfg, plan)), t.vocab_size))


def training_texts(cfg: ExperimentConfig, plan: SourcePlan) -> list[str]:
    """Each domain's training documents in source order, cut once the domain has
    `train_max_chars_per_domain` characters; domains in the corpus's order."""
    budget = cfg.tokenizer.train_max_chars_per_domain
    spec = doc_spec(cfg, plan)
    fill = list(spec.wanted or plan.domain_order or [])
    router = DocRouter(cfg.corpus.validation_fraction, cfg.corpus.max_docs_per_domain)
    texts: dict[str, list[str]] = {}
    left: dict[str, int] = {}
    for start, stop in plan.phases():
        split = plan.inputs[start].split
        if split == "validation":
            continue
        for block in mapped_blocks(plan, plan.inputs[start:stop], extract_for_tokenizer, spec=spec):
            take_texts(block, split, router, budget, texts, left)
            if fill and all(left.get(d, budget) <= 0 for d in fill):
                break
    order = plan.domain_order or sorted(texts)
    return [text for d in order for text in texts.get(d, [])]


def take_texts(block, split, router: DocRouter, budget: int, texts: dict, left: dict) -> None:
    """Keep, per domain, training documents until the domain's budget of characters is spent."""
    if not block.num_rows:
        return
    domains = block.column("domain").to_numpy(zero_copy_only=False)
    chars = block.column("chars").to_numpy()
    column = block.column("text")
    bounds = np.flatnonzero(domains[1:] != domains[:-1]) + 1
    for a, b in zip(np.concatenate([[0], bounds]), np.concatenate([bounds, [len(domains)]])):
        domain = str(domains[a])
        is_val, keep = router.route(domain, split, chars[a:b])
        for row in np.flatnonzero(keep & ~is_val) + a:
            room = left.setdefault(domain, budget)
            if room <= 0:
                break
            text = column[int(row)].as_py()
            texts.setdefault(domain, []).append(text[:room])
            left[domain] = room - len(text)

"""`acodm corpus prepare`: read a corpus with Ray Data, tokenize it in parallel, write token shards.

    plan_source(cfg.corpus)          what to read, checked before anything is read (sources.py)
    check_columns                    the text and domain columns exist (readers.py), before any worker
    tokenizer                        loaded, or trained on the first characters of each domain
    for each split's inputs:         read (Ray Data) -> extract + encode (tokenizer actors,
                                     map_batches) -> in order to the driver -> DocRouter -> ShardWriter
    manifest.json                    written last

Only the driver writes, in source order, so a domain's shards are its token stream exactly as a
single process would have produced it; the work that costs (parsing, tokenizing) runs on the actor
pool, which grows with the cluster. Memory stays flat: blocks stream through, an actor encodes and
returns a block a few MB of text at a time (doc_ops.ENCODE_BYTES), the writer holds one open file
per (split, domain), the driver keeps counters. After every input file the driver
checkpoints (`progress.json`: the writer's open shards, the router's counters, how many inputs are
done); a rerun after a crash continues from there and ends with the same bytes.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
import ray.data
from tqdm import tqdm

from acodm_ray.config import ExperimentConfig
from acodm_ray.data.corpus_errors import CorpusError, EmptyDomainError, UnknownDomainError
from acodm_ray.data.doc_ops import DocSpec, Encoder, FullDomains, doc_spec, domain_names
from acodm_ray.data.manifest import DomainStats, Manifest, PreparedCorpusError, token_dtype
from acodm_ray.data.readers import check_columns, mapped_blocks, read_inputs
from acodm_ray.data.router import DocRouter
from acodm_ray.data.shard_writer import ShardWriter
from acodm_ray.data.sources import SourcePlan
from acodm_ray.data.tokenizer_pass import prepare_tokenizer
from acodm_ray.logs import quiet_known_noise

log = logging.getLogger("acodm_ray.prepare")

PROGRESS = "progress.json"
# the largest block a read task builds (Ray joins a reader's tables up to this; its default, 128 MiB,
# held ~600 MB in each read task on a 536 MB JSON file): small enough that reading stays light,
# large enough that a block's overhead is nothing next to encoding it
BLOCK_BYTES = 16 << 20
FAULTS_ENV = "ACODM_PREPARE_FAULTS"  # test hook, JSON: {"kill_after_inputs": n}


@dataclass
class Journal:
    """What the driver checkpoints after each input: enough to continue exactly."""

    key: dict[str, Any]  # plan fingerprint, tokenizer hash, dtype, shard size: a mismatch refuses
    inputs_done: int = 0
    writer: dict[str, Any] = field(default_factory=dict)
    router: dict[str, Any] = field(default_factory=dict)
    chars: dict[str, dict[str, int]] = field(
        default_factory=lambda: {"train": {}, "validation": {}}
    )


def prepare_into(
    cfg: ExperimentConfig, plan: SourcePlan, root: Path, progress: bool = True
) -> Manifest:
    """Prepare the corpus `plan` describes into the local directory `root` (resuming a journal
    left there by an interrupted run) and return its manifest."""
    check_columns(plan)
    root.mkdir(parents=True, exist_ok=True)
    with ray_for_prepare():
        tokenizer = prepare_tokenizer(cfg, plan, root)
        vocab, eos = len(tokenizer), int(tokenizer.eos_token_id)
        dtype = token_dtype(vocab)
        key = {
            "plan": plan.fingerprint,
            "tokenizer": tokenizer_hash_of(root),
            "dtype": dtype,
            "shard_tokens": int(cfg.prepare.shard_tokens),
        }
        journal = read_journal(root, key)
        writer = ShardWriter(root, dtype, cfg.prepare.shard_tokens)
        router = DocRouter(
            cfg.corpus.validation_fraction,
            cfg.corpus.max_docs_per_domain,
            cfg.corpus.max_tokens_per_domain,
        )
        if journal.writer:
            writer.restore(journal.writer)
            router.load_state_dict(journal.router)
        encode = EncodePass(cfg, plan, tokenizer.backend_tokenizer.to_str(), eos, dtype)
        try:
            run_phases(plan, encode, writer, router, journal, root, progress)
        except BaseException:
            writer.abandon()
            raise
        shards = writer.finish()
        manifest = build_manifest(cfg, plan, journal, shards, router, vocab, eos, dtype, root)
    (root / "manifest.json.tmp").write_text(manifest.to_json())
    os.replace(root / "manifest.json.tmp", root / "manifest.json")
    (root / PROGRESS).unlink(missing_ok=True)
    return manifest


class EncodePass:
    """The Ray Data pipeline of one split's inputs: read -> (extract + encode on the actor pool)."""

    def __init__(
        self, cfg: ExperimentConfig, plan: SourcePlan, tokenizer_json: str, eos: int, dtype: str
    ):
        self.cfg, self.plan = cfg, plan
        self.spec = doc_spec(cfg, plan)
        # the tokenizer travels by reference (one object-store copy for every actor): a large
        # constructor argument would be inlined into each actor's creation task instead
        self.full = FullDomains.remote()
        self.published: list[str] = []
        self.args = ([ray.put(tokenizer_json), self.full], eos, dtype, self.spec)

    def skip(self, domains: list[str]) -> None:
        """Tell the actors which domains are full (only when that changes)."""
        if domains != self.published:
            self.published = domains
            self.full.set.remote(domains)

    def blocks(self, start: int, stop: int) -> Iterator[pa.Table]:
        workers = self.cfg.prepare.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        ds = read_inputs(self.plan, self.plan.inputs[start:stop]).map_batches(
            Encoder,
            fn_constructor_args=self.args,
            batch_format="pyarrow",
            batch_size=None,  # one read block at a time: a block never mixes two files
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=workers),
            num_cpus=self.cfg.prepare.cpus_per_worker,
        )
        yield from ds.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=2)


def run_phases(plan, encode, writer, router, journal, root, progress) -> None:
    """Every split's inputs through the pipeline, checkpointing after each finished input."""
    faults = json.loads(os.environ.get(FAULTS_ENV) or "{}")
    bar = tqdm(
        total=len(plan.inputs),
        initial=journal.inputs_done,
        unit="file",
        desc="prepare",
        disable=not progress,
        dynamic_ncols=True,
    )
    started, tokens = time.perf_counter(), 0
    index = {os.path.normpath(i.path): n for n, i in enumerate(plan.inputs)}
    for start, stop in plan.phases():
        if journal.inputs_done >= stop:
            continue
        split = plan.inputs[start].split
        for block in encode.blocks(max(start, journal.inputs_done), stop):
            if "path" in block.column_names and block.num_rows:
                current = index[os.path.normpath(block.column("path")[0].as_py())]
                if current > journal.inputs_done:
                    checkpoint(writer, router, journal, root, current, faults)
                    bar.update(current - bar.n)
            tokens += consume(block, split, router, writer, journal)
            encode.skip(router.full_domains((split,) if split else ("train", "validation")))
            bar.set_postfix_str(
                f"{tokens / 1e6:.1f} M tokens, {tokens / (time.perf_counter() - started) / 1e3:.0f} k tokens/s"
            )
            fill = domains_to_fill(plan, encode.spec)
            if fill and router.full(fill, (split,) if split else ("train", "validation")):
                break  # a streamed source stops once every domain is full
        checkpoint(writer, router, journal, root, stop, faults)
        encode.skip([])  # the next split starts with every domain open
        bar.update(stop - bar.n)
    bar.close()


def consume(
    block: pa.Table, split: str | None, router: DocRouter, writer: ShardWriter, journal: Journal
) -> int:
    """Route a block's documents and append the kept ones, one domain at a time: a domain's
    documents stay in their order (each domain is its own stream), so a corpus whose domains are
    interleaved document by document costs a few array operations per block, not per document."""
    if not block.num_rows:
        return 0
    encoded = pc.dictionary_encode(block.column("domain")).combine_chunks()
    codes, names = encoded.indices.to_numpy(), encoded.dictionary.to_pylist()
    tokens = block.column("tokens").combine_chunks()
    offsets, flat = tokens.offsets.to_numpy(), tokens.values.to_numpy()
    lengths, chars = np.diff(offsets), block.column("chars").to_numpy()
    label = np.full(len(codes), -1)  # -1 dropped, 0 train, 1 validation
    for code, name in enumerate(names):
        rows = np.flatnonzero(codes == code)
        is_val, keep = router.route(name, split, lengths[rows])
        label[rows] = np.where(keep, is_val.astype(int), -1)
    kept = np.flatnonzero(label >= 0)
    if not kept.size:
        return 0
    order = kept[np.argsort(codes[kept] * 2 + label[kept], kind="stable")]  # (domain, split) groups
    starts, lens = offsets[order], lengths[order]
    ids = flat[np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(lens.sum())]
    group = codes[order] * 2 + label[order]
    cuts = np.flatnonzero(np.diff(group)) + 1
    ends = np.cumsum(lens)
    for a, b in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [len(order)]])):
        name, split_name = names[codes[order[a]]], ("train", "validation")[label[order[a]]]
        first = ends[a - 1] if a else 0
        writer.append(split_name, name, ids[first : ends[b - 1]], lens[a:b])
        got = journal.chars[split_name]
        got[name] = got.get(name, 0) + int(chars[order[a:b]].sum())
    return int(lens.sum())


def domains_to_fill(plan: SourcePlan, spec: DocSpec) -> list[str]:
    """The domains a streamed source must fill before it stops (all of them must be known)."""
    return list(spec.wanted or plan.domain_order or [])


def checkpoint(writer, router, journal, root: Path, inputs_done: int, faults: dict) -> None:
    writer.flush()
    journal.inputs_done = inputs_done
    journal.writer, journal.router = writer.state(), router.state_dict()
    tmp = root / (PROGRESS + ".tmp")
    tmp.write_text(json.dumps(journal.__dict__))
    os.replace(tmp, root / PROGRESS)
    if faults.get("kill_after_inputs") is not None and inputs_done >= int(
        faults["kill_after_inputs"]
    ):
        log.warning("fault injection: the prepare is killed after %d inputs", inputs_done)
        os.kill(os.getpid(), signal.SIGKILL)


def read_journal(root: Path, key: dict[str, Any]) -> Journal:
    """The journal an interrupted prepare left in `root`, or a fresh one; one made for another
    corpus, tokenizer or shard size is refused (both named) rather than mixed in."""
    path = root / PROGRESS
    if not path.exists():
        if any(root.glob("train/*/*.bin")):
            raise PreparedCorpusError(
                f"{root} holds shards but neither a manifest nor a progress journal: it is not a "
                "prepare this version can continue; remove it or pass --force"
            )
        return Journal(key)
    journal = Journal(**json.loads(path.read_text()))
    if journal.key != key:
        raise PreparedCorpusError(
            f"{root} holds an interrupted prepare of another corpus or tokenizer ({journal.key}); "
            f"this one is {key}. Remove the directory, choose another, or pass --force"
        )
    log.info("continuing an interrupted prepare after %d input(s)", journal.inputs_done)
    return journal


def tokenizer_hash_of(root: Path) -> str:
    return json.loads((root / "tokenizer" / "acodm_tokenizer.json").read_text())["hash"]


def build_manifest(cfg, plan, journal, shards, router, vocab, eos, dtype, root) -> Manifest:
    """The manifest, after checking that every domain has documents in both splits."""
    found = sorted({s.domain for s in shards})
    if not found and not cfg.corpus.domains:
        raise CorpusError(f"the source has no documents: {', '.join(i.path for i in plan.inputs)}")
    domains = list(plan.domain_order) if plan.domain_order else found
    check_wanted_exist(cfg, plan, found)
    stats: dict[str, dict[str, DomainStats]] = {}
    for split in ("train", "validation"):
        stats[split] = {}
        for d in domains:
            kept = [s for s in shards if s.split == split and s.domain == d]
            if not kept:
                raise EmptyDomainError(
                    f"domain {d!r} has no text in the {split} split{_empty_hint(plan, router, d)}"
                )
            stats[split][d] = DomainStats(
                sum(s.tokens for s in kept),
                sum(s.documents for s in kept),
                journal.chars[split].get(d, 0),
            )
    tokenizer_meta = json.loads((root / "tokenizer" / "acodm_tokenizer.json").read_text())
    order = {d: i for i, d in enumerate(domains)}
    shards = sorted(
        (s for s in shards if s.domain in order),
        key=lambda s: (s.split != "train", order[s.domain], s.file),
    )
    return Manifest(
        domains,
        vocab,
        eos,
        dtype,
        int(cfg.prepare.shard_tokens),
        tokenizer_meta["hash"],
        plan.describe(),
        shards,
        stats,
        made_by={"tool": "acodm corpus prepare", "tokenizer": tokenizer_meta},
    )


def _empty_hint(plan: SourcePlan, router: DocRouter, domain: str) -> str:
    if plan.is_split:
        return ""
    n = router.seen.get(domain, 0)
    return (
        f": it has {n} document(s), at least 2 are needed to split off a validation set"
        if n
        else ""
    )


def check_wanted_exist(cfg: ExperimentConfig, plan: SourcePlan, found: list[str]) -> None:
    """A domain named in `corpus.domains` that the source never had: list the ones it has (read
    again, the domain column alone: only on this error path)."""
    missing = [d for d in cfg.corpus.domains if d not in found]
    if not missing or plan.domain_column is None:
        return
    spec = doc_spec(cfg, plan)
    names: set[str] = set()
    for start, stop in plan.phases():
        for block in mapped_blocks(plan, plan.inputs[start:stop], domain_names, spec=spec):
            names.update(block.column("domain").to_pylist())
    raise UnknownDomainError(
        f"domain(s) {', '.join(missing)} of corpus.domains have no documents in the source; "
        f"its {plan.domain_column} values are: {', '.join(sorted(names)) or 'none'}"
    )


@contextmanager
def ray_for_prepare():
    """The Ray the prepare runs on: the one already up (a job, a test session), the cluster named
    by RAY_ADDRESS, or a local one started here and stopped afterwards. Ray Data's own progress
    bars and execution logs are silenced: the prepare shows one bar of its own."""
    started = not ray.is_initialized()
    if started:
        address = "auto" if os.environ.get("RAY_ADDRESS") else "local"
        ray.init(
            address=address,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    ctx = ray.data.DataContext.get_current()
    settings = [  # (object, attribute, value while the prepare runs)
        (ctx.execution_options, "preserve_order", True),
        (ctx, "enable_progress_bars", False),
        (ctx, "print_on_execution_start", False),
        (ctx, "target_max_block_size", BLOCK_BYTES),
    ]
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in settings]
    for obj, name, value in settings:
        setattr(obj, name, value)
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    quiet_known_noise()
    try:
        yield
    finally:  # the caller's Ray Data settings as they were (a job may use Ray Data itself)
        for obj, name, value in saved:
            setattr(obj, name, value)
        if started:
            ray.shutdown()

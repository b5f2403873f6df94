"""A job's plan, checked before anything starts, and what `--dry-run` prints.

Every job resolves the config of each run it will start into a `RunPlan` (the run's name, method,
seed, stage and resolved config) and checks it before it starts Ray or reads any data: `--dry-run`
prints the plan and stops there, the job itself calls the same `RunPlan.check`, so a plan the dry
run refuses fails the job in seconds too, never minutes in inside a worker.

Some checks need the corpus's number of domains K (a coverage that gives every domain a micro-batch
needs `train.grad_accum >= K`; the agent's weight floor needs `floor * K < 1`; `train.eval_domains`
must name corpus domains). `corpus_domains` finds the domains without preparing anything:
`corpus.domains` when given, a local prepared corpus's manifest, the tiny or bundled corpus's
manifest (the domains `acodm corpus build` makes when it is not built yet, which is itself a
problem), or `corpus.domain_files`. A column-mode source with no domain list knows its domains only
once it is read: the plan says so and skips those checks (the sampler still refuses at run time).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from acodm_ray.agent.config import weight_floor
from acodm_ray.config import ConfigError, CorpusConfig, ExperimentConfig, cache_dir, to_dict
from acodm_ray.data.corpus_errors import CorpusError, CorpusNotBuiltError
from acodm_ray.data.debian_domains import domain_specs
from acodm_ray.data.manifest import MANIFEST, read_manifest
from acodm_ray.data.prepared import is_remote, local_path
from acodm_ray.data.sources import plan_source

DRY_RUN_LINE = "dry run: nothing was started"


class PlanError(ConfigError):
    """A planned run cannot run as configured; the message names each problem and its fix."""


@dataclass(frozen=True)
class Domains:
    """A corpus's domains as far as they are known before it is read, and where that came from."""

    names: tuple[str, ...] | None  # None: known only once the data is read
    origin: str
    problem: str | None = None  # the corpus cannot be read as configured (a plan problem)

    @property
    def count(self) -> int | None:
        return None if self.names is None else len(self.names)

    def describe(self) -> str:
        if self.names is None:
            return f"corpus: K unknown: {self.origin}; the checks that need K are skipped"
        return f"corpus: {len(self.names)} domains ({self.origin}): {', '.join(self.names)}"


def corpus_domains(corpus: CorpusConfig) -> Domains:
    """The domains of `corpus` read from the config or a manifest only (nothing is prepared)."""
    if corpus.domains:
        return Domains(tuple(corpus.domains), "corpus.domains")
    prepared = corpus.prepared
    if prepared and not is_remote(prepared):
        root = local_path(prepared)
        if (root / MANIFEST).is_file():
            return Domains(tuple(read_manifest(root).domains), f"the prepared corpus {root}")
    if corpus.source in ("tiny", "bundled"):
        try:
            order = plan_source(corpus).domain_order  # reads the corpus's manifest, nothing else
        except CorpusNotBuiltError as err:
            if corpus.path is not None:
                return Domains(None, f"the corpus at {corpus.path} is not there yet", str(err))
            names = tuple(spec.name for spec in domain_specs())
            return Domains(names, "the domains `acodm corpus build` makes", str(err))
        origin = f"the {corpus.source} corpus's manifest" + (
            f" in {corpus.path}" if corpus.path else ""
        )
        if not order:
            return Domains(None, f"{origin} lists no domains")
        return Domains(tuple(order), origin)
    if corpus.domain_files:
        return Domains(tuple(corpus.domain_files), "corpus.domain_files")
    return Domains(
        None,
        f"corpus.source {corpus.source!r} names each document's domain in the column "
        f"{corpus.domain_column!r}, so the domains are known once the data is read "
        "(list them in corpus.domains to check them now)",
    )


@dataclass
class PlannedRun:
    """One run of a job: its resolved config and what the plan table shows of it.

    `layers`: the overrides between the user's config and this run's, in merge order, as
    (the key a user sets them under, the override), so a problem's fix names the key that really
    changes this run (`compare.target.train.grad_accum` when that is what sets it). A layer named
    "method" is the method's own setting, which no key overrides."""

    name: str
    method: str
    seed: int
    stage: str  # "pretrain" | "proxy" | "target"
    cfg: ExperimentConfig
    uses_agent: bool = False  # the AC-ODM agent runs here (its weight floor must fit K)
    trainer: str = "rl"  # a proxy stage: "rl" (RLlib) or "mixer" (a mixer's trajectory)
    depends: str | None = None  # the run whose policy this target run uses
    layers: list[tuple[str, dict]] = field(default_factory=list)

    def set_by(self, key: str) -> str:
        """The key a user sets to change `key` (dotted) for this run, or "method"."""
        for name, layer in reversed(self.layers):
            node = layer
            for part in key.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if node is not None:
                return name if name == "method" else f"{name}.{key}"
        return key

    def mixing(self) -> str:
        """What chooses this run's domain weights."""
        c = self.cfg
        if self.stage == "proxy":
            if self.trainer == "mixer":
                return f"mixer {c.mixer.name} (replayed)"
            return f"{c.rl.algo}: {c.rl.iterations} it x {c.rl.min_sample_timesteps_per_iteration}"
        if self.depends or c.target.policy:
            return f"policy of {self.depends or c.target.policy}"
        if c.target.online_acodm:
            return "acodm agent (online)"
        return f"mixer {c.mixer.name}"

    def row(self) -> list[str]:
        c, t = self.cfg, self.cfg.train
        return [
            self.name,
            self.method,
            str(self.seed),
            self.stage,
            f"{c.model.hidden_size}x{c.model.num_layers}",
            str(t.steps),
            f"{t.micro_batch_size}x{t.grad_accum}x{t.seq_len}",
            t.coverage,
            c.signals.score,
            self.mixing(),
        ]


HEADER = [
    "run",
    "method",
    "seed",
    "stage",
    "model",
    "steps",
    "batch",
    "coverage",
    "score",
    "mixing",
]
LEGEND = (
    "model: hidden size x layers; batch: micro-batch x grad_accum x seq_len (tokens per step and "
    "worker); mixing: what chooses the weights (a proxy stage: algorithm, iterations x env steps)"
)


def run_problems(run: PlannedRun, domains: Domains) -> list[str]:
    """What stops `run` from running on a corpus of `domains`, each with its fix."""
    K, t = domains.count, run.cfg.train
    if K is None:
        return []
    out = []
    if t.coverage != "iid" and t.grad_accum < K:
        cov = run.set_by("train.coverage")
        other = (
            f"leave {run.method} out (the method sets train.coverage: {t.coverage})"
            if cov == "method"
            else f"--set {cov}=iid"
        )
        same = " (every method alike: one token budget)" if run.layers else ""
        out.append(
            f"train.coverage {t.coverage!r} gives each of the {K} domains a micro-batch every "
            f"step, but train.grad_accum = {t.grad_accum}; fix: --set "
            f"{run.set_by('train.grad_accum')}={K}{same}, or {other}"
        )
    if (
        run.uses_agent
        and run.cfg.agent.floor_mass is None
        and weight_floor(run.cfg.agent) * K >= 1.0
    ):
        out.append(
            f"agent.weight_floor = {weight_floor(run.cfg.agent)} leaves nothing for the actor with "
            f"{K} domains (floor * K must be < 1); fix: --set "
            f"{run.set_by('agent.weight_floor')}=<below {1.0 / K:.4f}>, or set agent.floor_mass"
        )
    unknown = [d for d in t.eval_domains if domains.names and d not in domains.names]
    if unknown:
        out.append(
            f"train.eval_domains names unknown domain(s) {unknown}; the corpus has "
            f"{list(domains.names or ())}; fix: --set {run.set_by('train.eval_domains')}=[...]"
        )
    return out


@dataclass
class RunPlan:
    """The runs a job will start, the notes of its plan and the problems that refuse it."""

    job: str
    runs: list[PlannedRun]
    out_dir: Path | None = None
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def render(self) -> str:
        """The plan as `--dry-run` prints it: a line per run, the corpus, the problems."""
        count = f": {len(self.runs)} run(s)" if self.runs else ""
        lines = [f"{self.job} plan{count}" + self._where()]
        if self.runs:
            lines += table(HEADER, [r.row() for r in self.runs]) + [LEGEND]
        lines += self.notes
        lines += [f"problem: {p}" for p in self.problems]
        return "\n".join(lines)

    def _where(self) -> str:
        return f" into {self.out_dir}" if self.out_dir is not None else ""

    def check(self) -> None:
        """Raise `PlanError` naming every problem (and its fix) if there is any."""
        if self.problems:
            raise PlanError(
                f"the {self.job} plan cannot run ({len(self.problems)} problem(s)); nothing was "
                "started:\n  " + "\n  ".join(self.problems)
            )

    def start(self, dry_run: bool) -> bool:
        """What every job does with its plan: under `dry_run` print it, then check it either way;
        True when the job goes on to start its runs."""
        if dry_run:
            print(self.render())
        self.check()
        if dry_run:
            print(DRY_RUN_LINE)
        return not dry_run


def make_plan(
    job: str, runs: list[PlannedRun], out_dir: Path | None = None, notes: list[str] | None = None
) -> RunPlan:
    """The plan of `runs`: each run checked against its corpus's domains (read once per corpus)."""
    plan = RunPlan(job, runs, out_dir, list(notes or []))
    seen: dict[str, Domains] = {}
    found: dict[tuple[str, str, str], list[str]] = {}  # one line per problem, naming its runs
    for run in runs:
        key = json.dumps(to_dict(run.cfg.corpus), sort_keys=True)
        if key not in seen:
            seen[key] = corpus_domains(run.cfg.corpus)
        for problem in run_problems(run, seen[key]):
            found.setdefault((run.method, run.stage, problem), []).append(run.name)
    plan.problems += [f"{', '.join(n)} ({m}, {st}): {p}" for (m, st, p), n in found.items()]
    for domains in seen.values():
        plan.notes.append(domains.describe())
        if domains.problem:
            plan.problems.append(domains.problem)
    return plan


def single_run_plan(job: str, stage: str, cfg: ExperimentConfig, run_dir: Path) -> RunPlan:
    """The plan of a job that starts one run (`acodm pretrain`, jobs/proxy_rl.py,
    jobs/target_pretrain.py)."""
    method = {"pretrain": cfg.mixer.name, "proxy": cfg.rl.algo}.get(stage) or mixer_label(cfg)
    uses_agent = (stage == "proxy" and cfg.rl.algo == "acodm") or (
        stage == "target" and cfg.target.online_acodm
    )
    run = PlannedRun(run_dir.name, method, cfg.train.seed, stage, cfg, uses_agent)
    return make_plan(job, [run], run_dir.parent)


def mixer_label(cfg: ExperimentConfig) -> str:
    """What decides a target run's weights, as run names and summaries say it."""
    if cfg.target.policy:
        return "policy"
    if cfg.target.online_acodm:
        return "acodm-online"
    return cfg.mixer.name


def mode_overrides(
    policy: str | None = None, mixer: str | None = None, online_acodm: bool = False
) -> list[str]:
    """Overrides that pick exactly one mixer, as target_pretrain's --policy, --mixer and
    --online-acodm do: each switches the other two modes off (none given: the config's choice)."""
    if policy:
        return [f"target.policy={Path(policy).expanduser().resolve()}"]
    if mixer:
        return [f"mixer.name={mixer}", "target.policy=null", "target.online_acodm=false"]
    return ["target.online_acodm=true", "target.policy=null"] if online_acodm else []


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned columns, two spaces apart, a rule under the header."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(cells, widths)).rstrip()

    return [line(header), line(["-" * w for w in widths]), *map(line, rows)]


def prepare_plan(cfg: ExperimentConfig) -> RunPlan:
    """The plan of `acodm corpus prepare` / jobs/prepare_corpus.py: what it reads and where it
    writes, from the config and the input files' sizes (a hub dataset is not contacted)."""
    c = cfg.corpus
    plan = RunPlan("prepare", [], notes=[f"source: {c.source}" + (f" {c.path}" if c.path else "")])
    if c.source != "hub":
        try:
            source = plan_source(c)  # stats the input files, reads no rows
        except CorpusError as err:
            plan.problems.append(str(err))
        else:
            size = sum(f["bytes"] for f in source.files) / 1e6
            plan.notes.append(f"inputs: {len(source.inputs)} file(s), {size:.1f} MB")
    domains = corpus_domains(c)
    plan.notes.append(domains.describe().replace("; the checks that need K are skipped", ""))
    if domains.problem and domains.problem not in plan.problems:
        plan.problems.append(domains.problem)
    tok = cfg.tokenizer
    plan.notes += [
        f"tokenizer: {tok.path or f'a byte-level BPE of {tok.vocab_size} tokens, trained first'}",
        f"output: {c.prepared or f'{cache_dir()}/prepared/{c.source}-<source and tokenizer key>'}"
        f" (shards of {cfg.prepare.shard_tokens:,} tokens)",
        f"tokenizer actors: {cfg.prepare.workers or 'one per CPU of the Ray cluster'}, "
        f"{cfg.prepare.cpus_per_worker} CPU each",
    ]
    return plan

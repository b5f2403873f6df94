"""A comparison's results as types: `ComparisonSummary` (summary.json), with one `HeadlineRow` per
method (its figures over seeds, against the reference), one `RunSummary` per (method, seed) and one
`ProxyStage` per proxy method.

summary.json carries `format` (FORMAT). Format 1 is every summary written before these types: the same
keys with no `format`; it loads as it is, after `upgrade_format_1` fills what the oldest of them lack.
A summary of a newer format than this code knows is refused, not half read.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acodm_ray.compare.figures import DecoyWeight, SeedSteps, Spread, StepsTo, TopWeight
from acodm_ray.compare.records import JsonRecord, SummaryFormatError, optional, read

FORMAT = 2  # 1: the summaries written before the typed results (no "format" key)
FAILED_ROW = {"runs": 0}  # a method none of whose runs finished, as summary.json has it


@dataclass(frozen=True)
class TargetSetup(JsonRecord):
    """The target model and budget every method trained with (the first method's, first seed's)."""

    model: dict[str, Any]  # acodm_ray.config.ModelConfig as written; that class owns its fields
    steps: int
    seq_len: int
    micro_batch_size: int
    grad_accum: int
    tokens_per_step: int  # seq_len x micro_batch_size x grad_accum x num_workers
    eval_every: int
    eval_batches: int
    num_workers: int
    cpus_per_worker: float
    state_layers: int


@dataclass(frozen=True)
class AgentShape(JsonRecord):
    """The AC-ODM agent a proxy stage trained: network sizes, discount, warm-up."""

    actor_hidden: int
    actor_layers: int
    critic_hidden: int
    critic_layers: int
    gamma: float
    warmup_fraction: float


@dataclass(frozen=True)
class ProxyRun(JsonRecord):
    """One seed's proxy stage: the policy it exported, its wall-clock and run dir."""

    policy: str | None
    wall_s: float | None
    run_dir: str | None


@dataclass(frozen=True)
class ProxyStage(JsonRecord):
    """How a proxy method learned its policy: RLlib (`trainer` "rl": algo, iterations, agent, reward)
    or one mixer run replayed (`trainer` "mixer": the mixer); None where the other trainer's."""

    model: dict[str, Any]  # acodm_ray.config.ModelConfig as written
    steps: int
    trainer: str
    algo: str | None
    mixer: str | None
    rl_iterations: int | None
    env_steps_per_iteration: int | None
    agent: AgentShape | None
    reward: str | None
    per_seed: bool  # one policy per seed, or one for all seeds
    runs: dict[int, ProxyRun]  # by seed
    wall_s: Spread | None


@dataclass(frozen=True)
class HeadlineRow(JsonRecord):
    """One method's figures over its seeds; overheads are against the static baseline of the same
    seed, steps against the reference's (ODM's) best and uniform's final perplexity."""

    runs: int  # finished runs (seeds)
    final_val_ppl: dict[str, Spread | None]  # "average" and each domain
    best_average_val_ppl: Spread | None
    step_ms: Spread | None  # median iteration per run
    mixer_ms: Spread | None  # that iteration minus the training step in it
    mixer_pct_of_step: Spread | None
    worker_peak_rss_mb: Spread | None
    peak_rss_mb: Spread | None  # worker + policy server
    wall_s: Spread | None
    final_weights: dict[str, float]  # mean over seeds
    max_final_weight: TopWeight  # of that mean
    max_final_weight_per_seed: dict[int, TopWeight]
    steps_to_reference: StepsTo | None = optional()  # with the reference among the methods
    steps_to_uniform_final: StepsTo | None = optional()  # with uniform among the methods
    decoy_weight: DecoyWeight | None = optional()  # with decoy domains
    step_time_overhead_pct: Spread | None = optional()  # not for the baseline itself
    memory_overhead_pct: Spread | None = optional()
    worker_memory_overhead_pct: Spread | None = optional()
    proxy_wall_s: Spread | None = optional()  # proxy methods


@dataclass(frozen=True)
class RunSummary(JsonRecord):
    """One run of a method and seed: its own numbers, before any mean over seeds."""

    method: str
    seed: int
    run_dir: str
    final_val_ppl: dict[str, float | None]  # "average" and each domain
    best_average_val_ppl: float | None
    eval_steps: list[int]
    average_val_ppl: list[float]  # at eval_steps
    step_ms_median: float | None
    mixer_ms_median: float | None
    worker_peak_rss_mb: float | None
    server_peak_rss_mb: float | None
    run_seconds: float | None  # the target run's own wall-clock
    wall_s: float | None  # as the comparison timed it (kept over --resume)
    steps_to_reference: SeedSteps | None
    final_weights: dict[str, float] | None
    agent: dict[str, Any] | None  # the online agent's record (the target run's summary.json)


@dataclass(frozen=True)
class Machine(JsonRecord):
    """Where the comparison ran."""

    cpus: int | None
    platform: str
    processor: str
    torch: str
    gpu: str | None
    ray: str | None = optional()
    memory_gb: float | None = optional()


@dataclass(frozen=True)
class ComparisonSummary(JsonRecord):
    """summary.json of a comparison. The fields from `name` on are the invocation's (set by
    run_comparison once the runs are done; None before); `command` is bench_compare.py's."""

    methods: list[str]
    method_descriptions: dict[str, str]
    seeds: list[int]
    domains: list[str]
    reference: str
    target: TargetSetup
    failures: dict[str, str]  # run key -> why
    static_baseline: str | None
    headline: dict[str, HeadlineRow | None]  # every method; None: no run of it finished
    runs: dict[str, RunSummary]  # "<method>-seed<s>"
    command: str | None = optional()
    proxies: dict[str, ProxyStage] | None = optional()  # with proxy methods
    uniform_last_quarter_gain: Spread | None = optional()  # with uniform: the convergence check
    decoys: list[str] | None = optional()  # domains not evaluated (absent in the oldest summaries)
    name: str | None = None
    config: str | None = None
    quick: bool | None = None
    out_dir: str | None = None
    wall_clock_s: float | None = None  # summed over resumed invocations
    wall_clock_s_this_invocation: float | None = None
    resumed: bool | None = None
    machine: Machine | None = None
    concurrency: int | None = None
    files: dict[str, str] | None = None  # output -> path (table, plots)

    @property
    def proxy(self) -> ProxyStage | None:
        """The main proxy stage: AC-ODM's, else the first (summary.json's "proxy", kept for readers
        of format 1)."""
        if not self.proxies:
            return None
        return self.proxies.get("acodm") or next(iter(self.proxies.values()))

    def to_json(self) -> dict[str, Any]:
        """summary.json's data: "format" first, then the keys in the order summaries have always
        had them, a failed method's row as {"runs": 0}, and "proxy"."""
        data = super().to_json()
        data["headline"] = {
            m: FAILED_ROW.copy() if row is None else row for m, row in data["headline"].items()
        }
        return {"format": FORMAT, **_in_disk_order(data, self.proxy)}

    @classmethod
    def from_json(cls, data: Any, where: str | None = None) -> ComparisonSummary:
        """A summary of format 1 (upgraded) or FORMAT; a newer format is refused."""
        where = where or "summary"
        if not isinstance(data, dict):
            raise SummaryFormatError(f"{where}: expected a mapping, got {type(data).__name__}")
        version = data.get("format", 1)
        if version not in (1, FORMAT):
            raise SummaryFormatError(
                f"{where}: format {version!r}; this acodm-ray reads formats 1 to {FORMAT}"
            )
        data = upgrade_format_1(data) if version == 1 else dict(data)
        data.pop("format", None)
        read(data.pop("proxy", None), ProxyStage | None, f"{where}.proxy")  # derived; checked only
        if isinstance(data.get("headline"), dict):
            data["headline"] = {
                m: None if row == FAILED_ROW else row for m, row in data["headline"].items()
            }
        return super().from_json(data, where)

    @classmethod
    def read(cls, path: str | Path) -> ComparisonSummary:
        """A summary.json (or a committed copy of one) from disk."""
        return cls.from_json(json.loads(Path(path).read_text()), str(path))


def as_summary(summary: ComparisonSummary | dict[str, Any]) -> ComparisonSummary:
    """The types, from the types or from summary.json's dict: compare/schedule.py builds the dict
    it writes (and jobs/compare.py passes it on), so the report takes either."""
    return (
        summary if isinstance(summary, ComparisonSummary) else ComparisonSummary.from_json(summary)
    )


# summary.json's key order: the analysis first, then the invocation's fields
_DISK_ORDER = (
    "command",
    "methods",
    "method_descriptions",
    "seeds",
    "domains",
    "reference",
    "target",
    "failures",
    "proxies",
    "proxy",
    "static_baseline",
    "uniform_last_quarter_gain",
    "decoys",
    "headline",
    "runs",
)


def _in_disk_order(data: dict[str, Any], proxy: ProxyStage | None) -> dict[str, Any]:
    """The keys as summary.json has always had them (the field order puts the required fields first),
    with "proxy", the main proxy stage, after "proxies"."""
    if proxy is not None:
        data["proxy"] = proxy.to_json()
    head = {k: data.pop(k) for k in _DISK_ORDER if k in data}
    return {**head, **data}


def upgrade_format_1(data: dict[str, Any]) -> dict[str, Any]:
    """A format-1 summary in format 2's shape. The oldest (benchmarks/results/compare.json) has one
    proxy stage as "proxy" and no "proxies", from before a proxy stage said how it was trained: it
    was RLlib's (`trainer` "rl", the only trainer then) and the rest of what later stages record is
    unknown (None). Every other format-1 summary is format 2 without the "format" key."""
    if "proxy" not in data or "proxies" in data:
        return dict(data)
    old = data["proxy"]
    known = {"trainer": "rl", "algo": None, "mixer": None, "agent": None, "reward": None, **old}
    stage = {f.name: known[f.name] for f in dataclasses.fields(ProxyStage) if f.name in known}
    stage.update({k: v for k, v in old.items() if k not in stage})  # for from_json to refuse
    upgraded: dict[str, Any] = {}
    for key, value in data.items():
        if key == "proxy":
            upgraded["proxies"] = {"acodm": stage}
        upgraded[key] = stage if key == "proxy" else value
    return upgraded

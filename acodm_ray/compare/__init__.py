"""The paper's comparison at laptop scale: the same target model trained with uniform weights, natural
proportions, ODM, AC-ODM in proxy mode and AC-ODM in non-proxy mode, with the same token budget and
the same seeds, and the paper's headline figures computed from the runs' own records.

Library side (no RLlib import). `run_comparison` plans and schedules the runs; the AC-ODM proxy stage
(RLlib) comes in as a callable from the job layer (`policies/compare_proxy.py`). Every target run is
`acodm_ray.target.run_target` (Ray Train, the mixer served by a `PolicyServer`).

Config: the experiment config describes the target, `compare.target` overrides it for the target
runs and `compare.proxy` further for the proxy stage (a smaller model, its own steps and RL
iterations); `signals.state_layers` is set to the same count on both so the proxy's policy fits the
target's state. `compare.quick` (under `--quick`) shrinks everything for smoke tests.

Headline figures (`headline`), per seed and then mean ± sample standard deviation over seeds:
- steps to reach ODM's best average validation perplexity (ODM's best over its own run, same seed):
  the first evaluated step at which the method's average perplexity is <= that value; `None`
  ("not reached") when it never gets there; the ratio of those steps to ODM's own (steps to its best);
- final average and per-domain validation perplexity;
- per-step time (median over steps of the full training iteration on rank 0: mixer query, training
  step, mixer update, logging; from ranks/rank0.jsonl) and peak memory (worker process peak RSS,
  plus the policy server's peak RSS) against static mixing (uniform) of the same seed;
- wall-clock per run, and of the proxy stage for AC-ODM in proxy mode.

The package, one job per module (imports point down this list):
- `schedule`: `run_comparison`, the runs on a thread pool, resume and failures;
- `report`: table.md, the terminal lines, and the plots (`charts`);
- `results`: the summary of the finished runs (`summarize_comparison`);
- `headline`: one method's figures, per run and over seeds, against the shared yardsticks;
- `runs`: a finished target run read back;
- `stats`: the headline computations (pure functions);
- `summary`, `figures`: the results as types (`ComparisonSummary`, `HeadlineRow`, `RunSummary`, ...),
  summary.json's versioned format; `records`: their strict JSON reading and writing;
- `plan`: the runs and their order, and the checked plan of their configs (`--dry-run`);
- `configs`: each run's config, derived from the experiment config;
- `flags`: the job's own flags (`--methods`, `--seeds`, ...) as `compare.*` overrides;
- `methods`: the method registry and the method-list check.
"""

from acodm_ray.compare.configs import (
    DEFAULT_QUICK,
    load_compare_config,
    proxy_config,
    proxy_key,
    seeds_of,
    state_layers,
    target_config,
    validate_compare,
)
from acodm_ray.compare.figures import DecoyWeight, SeedSteps, Spread, StepsTo, TopWeight
from acodm_ray.compare.flags import add_compare_args, compare_flags
from acodm_ray.compare.methods import (
    DEFAULT_METHODS,
    METHODS,
    REFERENCE,
    CompareError,
    Method,
    method_of,
    parse_methods,
    proxy_methods,
    split_method,
)
from acodm_ray.compare.plan import RunSpec, plan, plan_runs
from acodm_ray.compare.records import SummaryFormatError
from acodm_ray.compare.report import closing_lines, headline_lines, render_table, write_outputs
from acodm_ray.compare.results import RunData, load_run, summarize, summarize_comparison
from acodm_ray.compare.schedule import run_comparison
from acodm_ray.compare.stats import (
    best_point,
    decoy_weight_curve,
    headline_steps,
    last_quarter_gain,
    mean_spread,
    overhead_pct,
    steps_to_final_of,
    steps_to_reach,
    steps_to_reference,
)
from acodm_ray.compare.summary import (
    ComparisonSummary,
    HeadlineRow,
    ProxyStage,
    RunSummary,
    TargetSetup,
)

__all__ = [
    "Method",
    "METHODS",
    "DEFAULT_METHODS",
    "REFERENCE",
    "DEFAULT_QUICK",
    "CompareError",
    "split_method",
    "method_of",
    "proxy_methods",
    "parse_methods",
    "proxy_key",
    "seeds_of",
    "state_layers",
    "load_compare_config",
    "validate_compare",
    "target_config",
    "proxy_config",
    "RunSpec",
    "plan",
    "plan_runs",
    "run_comparison",
    "RunData",
    "load_run",
    "summarize",
    "summarize_comparison",
    "ComparisonSummary",
    "HeadlineRow",
    "RunSummary",
    "ProxyStage",
    "TargetSetup",
    "Spread",
    "SeedSteps",
    "StepsTo",
    "DecoyWeight",
    "TopWeight",
    "SummaryFormatError",
    "steps_to_reach",
    "best_point",
    "mean_spread",
    "steps_to_reference",
    "steps_to_final_of",
    "last_quarter_gain",
    "headline_steps",
    "overhead_pct",
    "decoy_weight_curve",
    "render_table",
    "write_outputs",
    "headline_lines",
    "closing_lines",
    "add_compare_args",
    "compare_flags",
]

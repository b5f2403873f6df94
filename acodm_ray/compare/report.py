"""A comparison's outputs: table.md (headline, steps to uniform's final value, decoy weight, final
per-domain perplexity, final weights), the plots (`charts`), and the terminal's few lines.

Every function takes a `ComparisonSummary` or summary.json's dict (`as_summary`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from acodm_ray.compare.charts import plot_perplexity, plot_weights
from acodm_ray.compare.figures import Spread, StepsTo
from acodm_ray.compare.plan import RunSpec
from acodm_ray.compare.runs import RunData, runs_by_method
from acodm_ray.compare.summary import ComparisonSummary, HeadlineRow, ProxyStage, as_summary

Summary = ComparisonSummary | dict[str, Any]


def _fmt(stat: Spread | None, digits: int = 1, pct: bool = False) -> str:
    if not stat:
        return "n/a"
    sign = "+" if pct and stat.mean >= 0 else ""
    unit = "%" if pct else ""
    if stat.n == 1:
        return f"{sign}{stat.mean:.{digits}f}{unit}"
    return f"{sign}{stat.mean:.{digits}f}{unit} ± {stat.std:.{digits}f}"


def _pct(stat: Spread | None) -> Spread | None:
    if not stat:
        return None
    return dataclasses.replace(
        stat,
        mean=100.0 * stat.mean,
        std=100.0 * stat.std,
        min=100.0 * stat.min,
        max=100.0 * stat.max,
    )


def _fmt_steps(h: StepsTo | None) -> tuple[str, str]:
    if not h:
        return "n/a", "n/a"
    if not h.reached:
        return f"not reached (0/{h.seeds})", "–"
    reached = "" if h.reached == h.seeds else f" (reached {h.reached}/{h.seeds})"
    return _fmt(h.steps, 0) + reached, _fmt(h.ratio, 2)


def _model_shape(model: dict[str, Any]) -> str:
    """ "2 layers × 32 hidden" of a model config as the summary keeps it (a plain dict: its fields
    are acodm_ray.config.ModelConfig's)."""
    return f"{model['num_layers']} layers × {model['hidden_size']} hidden"


def _proxy_training(p: ProxyStage) -> str:
    """How a proxy stage learned its policy, in words."""
    if p.trainer != "rl":
        return f"one {p.mixer} mixer run, weights replayed by progress"
    algo = p.algo or "acodm"
    text = f"{p.rl_iterations} RLlib iterations × {p.env_steps_per_iteration} env steps of {algo}"
    agent = p.agent
    if agent and algo == "acodm":
        text += (
            f" (actor {agent.actor_layers}×{agent.actor_hidden}, critic {agent.critic_layers}×"
            f"{agent.critic_hidden}, γ {agent.gamma:g}, warm-up {agent.warmup_fraction:g}, "
            f"reward {p.reward})"
        )
    return text


def _over_seeds(s: ComparisonSummary) -> str:
    return "mean ± sample std over seeds" if len(s.seeds) > 1 else "one seed"


def _finished(s: ComparisonSummary) -> Iterator[tuple[str, HeadlineRow]]:
    """(method, its row) of the methods with a finished run, in the comparison's order."""
    for m in s.methods:
        row = s.headline.get(m)
        if row is not None and row.runs:
            yield m, row


def _setup_lines(s: ComparisonSummary) -> list[str]:
    """What was trained: the target and its budget, the convergence check, each proxy stage."""
    t, gain = s.target, s.uniform_last_quarter_gain
    target = (
        f"Target: {_model_shape(t.model)}, {t.steps} steps × {t.tokens_per_step:,} tokens, "
        f"evaluated every {t.eval_every} steps; seeds {s.seeds} ({_over_seeds(s)})."
    )
    if gain:
        target += (
            f" Convergence: uniform's average validation perplexity improved by "
            f"{_fmt(_pct(gain), 1)}% over the last quarter of training."
        )
    return [
        target,
        *(
            f"Proxy of {method}: {_model_shape(p.model)}, {p.steps}-step episodes, "
            f"{_proxy_training(p)} "
            f"({'one policy per seed' if p.per_seed else 'one policy for all seeds'})."
            for method, p in (s.proxies or {}).items()
        ),
    ]


def _largest_weights(h: HeadlineRow) -> str:
    """Each seed's largest final weight, or "all equal" for a static uniform mix."""
    weights = h.final_weights.values()
    if max(weights) - min(weights) < 1e-6:
        return "all equal"
    per_seed = h.max_final_weight_per_seed or {"-": h.max_final_weight}
    return ", ".join(f"{w.domain} {w.weight:.2f}" for w in per_seed.values())


def _headline_line(method: str, h: HeadlineRow, static: str) -> str:
    steps, ratio = _fmt_steps(h.steps_to_reference)
    wall = _fmt(h.wall_s, 0)
    if h.proxy_wall_s:
        wall += f" (+ proxy {_fmt(h.proxy_wall_s, 0)})"
    baseline = method == static
    step_vs = "(baseline)" if baseline else _fmt(h.step_time_overhead_pct, 1, True)
    memory_vs = "(baseline)" if baseline else _fmt(h.memory_overhead_pct, 1, True)
    return (
        f"| {method} | {steps} | {ratio} | {_fmt(h.final_val_ppl['average'])} "
        f"| {_fmt(h.best_average_val_ppl)} | {_fmt(h.step_ms, 0)} | {step_vs} | {_fmt(h.mixer_ms, 1)} "
        f"| {_fmt(h.peak_rss_mb, 0)} | {memory_vs} | {wall} | {_largest_weights(h)} |"
    )


def _headline_table(s: ComparisonSummary) -> list[str]:
    """The paper's figures, one row per method (a method with no finished run says "failed")."""
    static = s.static_baseline or "static"
    lines = [
        "",
        "| method | steps to ODM's best avg val ppl | ratio to ODM | final avg val ppl "
        f"| best avg val ppl | step time (ms) | step time vs {static} | mixer ms/step (paired) "
        f"| peak RSS worker+server (MiB) | memory vs {static} | wall-clock per run (s) "
        "| largest final weight (per seed) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in s.methods:
        row = s.headline.get(m)
        finished = row is not None and row.runs
        lines.append(_headline_line(m, row, static) if finished else f"| {m} | failed{' |' * 11}")
    return lines


def _steps_to_uniform_table(s: ComparisonSummary) -> list[str]:
    lines = [
        "",
        "Steps to reach uniform's final average validation perplexity (same seed; ratio to "
        "uniform's steps):",
        "",
        "| method | steps | ratio |",
        "|---|---|---|",
    ]
    for m, h in _finished(s):
        if h.steps_to_uniform_final:
            steps, ratio = _fmt_steps(h.steps_to_uniform_final)
            lines.append(f"| {m} | {steps} | {ratio} |")
    return lines


def _decoy_table(s: ComparisonSummary) -> list[str]:
    """The weight on the domains not evaluated, over training (none without decoys)."""
    if not s.decoys:
        return []
    first = next(h for h in s.headline.values() if h is not None and h.runs)
    points = [f"{p:.0%}" for p in first.decoy_weight.at]
    lines = [
        "",
        f"Weight on the decoy domains ({' + '.join(s.decoys)}) at these points of training, "
        f"and over the whole run ({_over_seeds(s)}; uniform puts "
        f"{len(s.decoys) / len(s.domains):.3f} there):",
        "",
        "| method | " + " | ".join(points) + " | whole run |",
        "|---|" + "---|" * (len(points) + 1),
    ]
    for m, h in _finished(s):
        if dw := h.decoy_weight:
            at = " | ".join(_fmt(v, 3) for v in dw.at.values())
            lines.append(f"| {m} | {at} | {_fmt(dw.mean, 3)} |")
    return lines


def _per_domain_table(s: ComparisonSummary) -> list[str]:
    lines = [
        "",
        f"Final validation perplexity per domain ({_over_seeds(s)}):",
        "",
        "| method | " + " | ".join(s.domains) + " | average |",
        "|---|" + "---|" * (len(s.domains) + 1),
    ]
    for m, h in _finished(s):
        ppl = h.final_val_ppl
        lines.append(
            f"| {m} | {' | '.join(_fmt(ppl[d]) for d in s.domains)} | {_fmt(ppl['average'])} |"
        )
    return lines


def _final_weights_table(s: ComparisonSummary) -> list[str]:
    lines = [
        "",
        "Domain weights at the last step (mean over seeds):",
        "",
        "| method | " + " | ".join(s.domains) + " |",
        "|---|" + "---|" * len(s.domains),
    ]
    for m, h in _finished(s):
        lines.append(
            f"| {m} | " + " | ".join(f"{h.final_weights[d]:.3f}" for d in s.domains) + " |"
        )
    return lines


def render_table(summary: Summary) -> str:
    """table.md: what was trained, the headline table, steps to uniform's final value, the decoys'
    weight, final per-domain perplexity, final weights, the runs that failed."""
    s = as_summary(summary)
    failures = "; ".join(f"{k}: {v}" for k, v in s.failures.items())
    return (
        "\n".join(
            [
                *_setup_lines(s),
                *_headline_table(s),
                *_steps_to_uniform_table(s),
                *_decoy_table(s),
                *_per_domain_table(s),
                *_final_weights_table(s),
                *(["", f"Failed runs: {failures}"] if failures else []),
            ]
        )
        + "\n"
    )


def write_outputs(
    summary: Summary, runs: dict[str, RunData], specs: list[RunSpec], out_dir: Path
) -> dict[str, str]:
    """table.md, val_ppl.png (average), val_ppl_domains.png (per domain), weights.png (per method)
    and, with several seeds, weights_seeds.png; returns {output: path}."""
    s = as_summary(summary)
    files = {"table": str(out_dir / "table.md")}
    (out_dir / "table.md").write_text(render_table(s))
    finished = runs_by_method(specs, runs)
    by_method = {m: finished[m] for m in s.methods if m in finished}
    if not by_method:
        return files
    return {
        **files,
        **plot_perplexity(s, by_method, out_dir),
        **plot_weights(s, by_method, out_dir),
    }


def headline_lines(summary: Summary) -> list[str]:
    """A few lines for the terminal; a method whose runs failed says why (the traceback is in the log)."""
    s, out = as_summary(summary), []
    for m in s.methods:
        h = s.headline.get(m)
        why = "; ".join(
            f"{key}: {err}" for key, err in s.failures.items() if key.startswith(f"{m}-seed")
        )
        if h is None or not h.runs:
            out.append(f"{m}: failed ({why or 'no run finished'})")
            continue
        steps, ratio = _fmt_steps(h.steps_to_reference)
        out.append(
            f"{m}: final avg val ppl {_fmt(h.final_val_ppl['average'])}, steps to ODM's best {steps} "
            f"(ratio {ratio}), step {_fmt(h.step_ms, 0)} ms" + (f"; failed: {why}" if why else "")
        )
    return out


def closing_lines(summary: Summary, out_dir: Path) -> tuple[list[str], list[str]]:
    """(lines for stdout, errors for stderr) that end a comparison: each method's headline, where
    the table is, and every run that failed."""
    s = as_summary(summary)
    lines = [
        *headline_lines(s),
        f"done in {s.wall_clock_s:.0f} s; table {out_dir / 'table.md'}; "
        f"summary {out_dir / 'summary.json'}",
    ]
    return lines, [f"error: {key}: {why}" for key, why in s.failures.items()]

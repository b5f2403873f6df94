"""A comparison's outputs: table.md (headline, steps to uniform's final value, decoy weight, final
per-domain perplexity, final weights), the plots, and the terminal's few lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from acodm_ray.compare.plan import RunSpec
from acodm_ray.compare.results import RunData, runs_by_method


def _fmt(stat: dict[str, Any] | None, digits: int = 1, pct: bool = False) -> str:
    if not stat:
        return "n/a"
    sign = "+" if pct and stat["mean"] >= 0 else ""
    unit = "%" if pct else ""
    if stat["n"] == 1:
        return f"{sign}{stat['mean']:.{digits}f}{unit}"
    return f"{sign}{stat['mean']:.{digits}f}{unit} ± {stat['std']:.{digits}f}"


def _pct(stat: dict[str, Any] | None) -> dict[str, Any] | None:
    return (
        None
        if not stat
        else {**stat, **{k: 100.0 * stat[k] for k in ("mean", "std", "min", "max")}}
    )


def _fmt_steps(h: dict[str, Any] | None) -> tuple[str, str]:
    if not h:
        return "n/a", "n/a"
    if not h["reached"]:
        return f"not reached (0/{h['seeds']})", "–"
    reached = "" if h["reached"] == h["seeds"] else f" (reached {h['reached']}/{h['seeds']})"
    return _fmt(h["steps"], 0) + reached, _fmt(h["ratio"], 2)


def _proxy_training(p: dict[str, Any]) -> str:
    """How a proxy stage learned its policy (summary["proxies"][method]), in words."""
    if p.get("trainer", "rl") != "rl":
        return f"one {p.get('mixer')} mixer run, weights replayed by progress"
    algo = p.get("algo") or "acodm"
    text = f"{p['rl_iterations']} RLlib iterations × {p['env_steps_per_iteration']} env steps of {algo}"
    agent = p.get("agent")
    if agent and algo == "acodm":
        text += (
            f" (actor {agent['actor_layers']}×{agent['actor_hidden']}, critic {agent['critic_layers']}×"
            f"{agent['critic_hidden']}, γ {agent['gamma']:g}, warm-up {agent['warmup_fraction']:g}, "
            f"reward {p.get('reward')})"
        )
    return text


def render_table(summary: dict[str, Any]) -> str:
    """table.md: headline table, final per-domain perplexity, final weights."""
    methods, domains = summary["methods"], summary["domains"]
    head = summary["headline"]
    static = summary.get("static_baseline") or "static"
    n = len(summary["seeds"])
    spread = "mean ± sample std over seeds" if n > 1 else "one seed"
    gain = summary.get("uniform_last_quarter_gain")
    lines = [
        f"Target: {summary['target']['model']['num_layers']} layers × {summary['target']['model']['hidden_size']} hidden, "
        f"{summary['target']['steps']} steps × {summary['target']['tokens_per_step']:,} tokens, "
        f"evaluated every {summary['target']['eval_every']} steps; seeds {summary['seeds']} ({spread})."
        + (
            f" Convergence: uniform's average validation perplexity improved by {_fmt(_pct(gain), 1)}% over the "
            f"last quarter of training."
            if gain
            else ""
        ),
    ]
    for method, p in (
        summary.get("proxies") or ({"acodm": summary["proxy"]} if "proxy" in summary else {})
    ).items():
        lines.append(
            f"Proxy of {method}: {p['model']['num_layers']} layers × {p['model']['hidden_size']} hidden, "
            f"{p['steps']}-step episodes, {_proxy_training(p)}"
            f" ({'one policy per seed' if p['per_seed'] else 'one policy for all seeds'})."
        )
    lines += [
        "",
        f"| method | steps to ODM's best avg val ppl | ratio to ODM | final avg val ppl | best avg val ppl "
        f"| step time (ms) | step time vs {static} | mixer ms/step (paired) | peak RSS worker+server (MiB) | memory vs {static} "
        f"| wall-clock per run (s) | largest final weight (per seed) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        h = head.get(m, {})
        if not h.get("runs"):
            lines.append(f"| {m} | failed | | | | | | | | | | |")
            continue
        steps, ratio = _fmt_steps(h.get("steps_to_reference"))
        wall = _fmt(h["wall_s"], 0)
        if h.get("proxy_wall_s"):
            wall += f" (+ proxy {_fmt(h['proxy_wall_s'], 0)})"
        per_seed = h.get("max_final_weight_per_seed") or {"-": h["max_final_weight"]}
        spread_w = max(h["final_weights"].values()) - min(h["final_weights"].values())
        largest = (
            "all equal"
            if spread_w < 1e-6
            else ", ".join(f"{w['domain']} {w['weight']:.2f}" for w in per_seed.values())
        )
        lines.append(
            f"| {m} | {steps} | {ratio} | {_fmt(h['final_val_ppl']['average'])} | {_fmt(h['best_average_val_ppl'])} "
            f"| {_fmt(h['step_ms'], 0)} | {_fmt(h.get('step_time_overhead_pct'), 1, True) if m != static else '(baseline)'} "
            f"| {_fmt(h.get('mixer_ms'), 1)} "
            f"| {_fmt(h['peak_rss_mb'], 0)} | {_fmt(h.get('memory_overhead_pct'), 1, True) if m != static else '(baseline)'} "
            f"| {wall} | {largest} |"
        )
    lines += [
        "",
        "Steps to reach uniform's final average validation perplexity (same seed; ratio to uniform's steps):",
        "",
        "| method | steps | ratio |",
        "|---|---|---|",
    ]
    for m in methods:
        h = head.get(m, {})
        if h.get("runs") and h.get("steps_to_uniform_final"):
            steps_u, ratio_u = _fmt_steps(h["steps_to_uniform_final"])
            lines.append(f"| {m} | {steps_u} | {ratio_u} |")
    if summary.get("decoys"):
        points = [
            f"{float(p):.0%}"
            for p in next(iter(v["decoy_weight"]["at"] for v in head.values() if v.get("runs")))
        ]
        lines += [
            "",
            f"Weight on the decoy domains ({' + '.join(summary['decoys'])}) at these points of training, "
            f"and over the whole run ({spread}; uniform puts {len(summary['decoys']) / len(domains):.3f} there):",
            "",
            "| method | " + " | ".join(points) + " | whole run |",
            "|---|" + "---|" * (len(points) + 1),
        ]
        for m in methods:
            h = head.get(m, {})
            if h.get("runs") and h.get("decoy_weight"):
                dw = h["decoy_weight"]
                lines.append(
                    f"| {m} | "
                    + " | ".join(_fmt(v, 3) for v in dw["at"].values())
                    + f" | {_fmt(dw['mean'], 3)} |"
                )
    lines += [
        "",
        "Final validation perplexity per domain (" + spread + "):",
        "",
        "| method | " + " | ".join(domains) + " | average |",
        "|---|" + "---|" * (len(domains) + 1),
    ]
    for m in methods:
        h = head.get(m, {})
        if h.get("runs"):
            lines.append(
                f"| {m} | "
                + " | ".join(_fmt(h["final_val_ppl"][d]) for d in domains)
                + f" | {_fmt(h['final_val_ppl']['average'])} |"
            )
    lines += [
        "",
        "Domain weights at the last step (mean over seeds):",
        "",
        "| method | " + " | ".join(domains) + " |",
        "|---|" + "---|" * len(domains),
    ]
    for m in methods:
        h = head.get(m, {})
        if h.get("runs"):
            lines.append(
                f"| {m} | " + " | ".join(f"{h['final_weights'][d]:.3f}" for d in domains) + " |"
            )
    if summary.get("failures"):
        lines += [
            "",
            "Failed runs: " + "; ".join(f"{k}: {v}" for k, v in summary["failures"].items()),
        ]
    return "\n".join(lines) + "\n"


def _curve(
    by_seed: dict[int, RunData], key: str
) -> tuple[list[int], np.ndarray, np.ndarray | None]:
    """Mean and spread over seeds at the eval steps every seed has."""
    common = sorted(set.intersection(*(set(r.eval_steps) for r in by_seed.values())))
    rows = np.array(
        [[r.ppl[key][r.eval_steps.index(s)] for s in common] for r in by_seed.values()], dtype=float
    )
    spread = rows.std(axis=0, ddof=1) if len(rows) > 1 else None
    return common, rows.mean(axis=0), spread


def write_outputs(
    summary: dict[str, Any], runs: dict[str, RunData], specs: list[RunSpec], out_dir: Path
) -> dict[str, str]:
    """table.md, val_ppl.png (average), val_ppl_domains.png (per domain), weights.png (per method)."""
    # lazy: matplotlib; jobs/compare.py --help imports this package
    from acodm_ray.plots import plot_curve_panels, plot_curves, plot_weight_trajectories

    files = {"table": str(out_dir / "table.md")}
    (out_dir / "table.md").write_text(render_table(summary))
    by_method = runs_by_method(specs, runs)
    methods = [m for m in summary["methods"] if m in by_method]
    if not methods:
        return files
    domains = summary["domains"]
    band = " (band: ± std over seeds)" if len(summary["seeds"]) > 1 else ""
    curves = {m: _curve(by_method[m], "average") for m in methods}
    files["val_ppl"] = str(
        plot_curves(
            curves,
            out_dir / "val_ppl.png",
            ylabel="average validation perplexity",
            title="average validation perplexity" + band,
        )
    )
    panels = {k: {m: _curve(by_method[m], k) for m in methods} for k in ["average", *domains]}
    files["val_ppl_domains"] = str(
        plot_curve_panels(
            panels, out_dir / "val_ppl_domains.png", title="validation perplexity per domain" + band
        )
    )
    # the weights each run trained with (a mean over seeds would show a mix no run used)
    first = min(summary["seeds"])
    traj = {
        m: by_method[m][first].weights
        for m in methods
        if first in by_method[m] and len(by_method[m][first].weights)
    }
    if traj:
        files["weights"] = str(
            plot_weight_trajectories(
                traj,
                domains,
                out_dir / "weights.png",
                title=f"domain weights per step (seed {first})",
                ncols=3 if len(traj) > 3 else None,
                dpi=80,
            )
        )
    if len(summary["seeds"]) > 1:
        grid = {
            f"{m}, seed {s}": by_method[m][s].weights
            for m in methods
            for s in summary["seeds"]
            if s in by_method[m] and len(by_method[m][s].weights)
        }
        files["weights_seeds"] = str(
            plot_weight_trajectories(
                grid,
                domains,
                out_dir / "weights_seeds.png",
                title="domain weights per step, every run",
                ncols=len(summary["seeds"]),
                dpi=60,
            )
        )
    return files


def headline_lines(summary: dict[str, Any]) -> list[str]:
    """A few lines for the terminal; a method whose runs failed says why (the traceback is in the log)."""
    out = []
    failures = summary.get("failures") or {}
    for m in summary["methods"]:
        h = summary["headline"].get(m, {})
        why = "; ".join(
            f"{key}: {err}" for key, err in failures.items() if key.startswith(f"{m}-seed")
        )
        if not h.get("runs"):
            out.append(f"{m}: failed ({why or 'no run finished'})")
            continue
        steps, ratio = _fmt_steps(h.get("steps_to_reference"))
        out.append(
            f"{m}: final avg val ppl {_fmt(h['final_val_ppl']['average'])}, steps to ODM's best {steps} "
            f"(ratio {ratio}), step {_fmt(h['step_ms'], 0)} ms"
            + (f"; failed: {why}" if why else "")
        )
    return out


def closing_lines(summary: dict[str, Any], out_dir: Path) -> tuple[list[str], list[str]]:
    """(lines for stdout, errors for stderr) that end a comparison: each method's headline, where
    the table is, and every run that failed."""
    lines = [
        *headline_lines(summary),
        f"done in {summary['wall_clock_s']:.0f} s; table {out_dir / 'table.md'}; "
        f"summary {out_dir / 'summary.json'}",
    ]
    return lines, [f"error: {key}: {why}" for key, why in summary["failures"].items()]

"""Target pretraining on Ray Train: the cost of serving the policy, and scaling from 1 to 2 workers.

Variants (full `run_target` runs with the same model, data and steps, interleaved repeat by repeat):
  uniform-2w  static mixing: the uniform mixer (its server is asked once; a static mixer never changes)
  policy-2w   the exported AC-ODM actor served by the PolicyServer actor, queried at every step from
              the target's state, weights broadcast to the workers
  uniform-1w  static mixing on one worker (for the 1 vs 2 worker throughput)

Per-step wall clock is what rank 0 measures around one loop iteration (ask the server + broadcast +
weight check + training step + send signals + log), medians over steps (the first 2 dropped) and
then over repeats. `LMTrainer.step` is the same code in every variant (the mixer only chooses the
weights), so on a shared machine the whole-step difference between two runs is mostly noise; the
overhead the mixing adds is also measured PAIRED, on the same steps: loop iteration minus the
training step inside it (query + broadcast + weight check + signals + logs). Peak memory is each
process's max RSS (rank 0 worker, server actor). Query latency
is `weights(state)` round trips from the driver to a served exported actor (and, for reference, to a
served uniform mixer, and the actor's forward pass in-process), p50/p99 over many calls.

    python benchmarks/bench_target.py --config configs/demo.yaml --steps 24 --repeats 2

Writes benchmarks/results/target.json (and its BENCHMARKS.md section with --markdown).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acodm_ray.config import load_config  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "target.json"


def percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def one_run(cfg, run_dir: Path) -> dict:
    from acodm_ray.target import run_target

    start = time.perf_counter()
    summary = run_target(cfg, run_dir)
    total = time.perf_counter() - start
    r0 = read_jsonl(run_dir / "ranks" / "rank0.jsonl")
    steps = read_jsonl(run_dir / "metrics.jsonl")
    step_recs = [r for r in steps if r["kind"] == "step"]
    tokens = [r["tokens"] for r in step_recs]
    skip = 2 if len(r0) > 4 else 0
    timed = r0[skip:]
    step_s = statistics.median(r["seconds"] for r in timed)
    # per step: the loop iteration minus LMTrainer.step inside it = everything the mixing adds
    # (query, broadcast, weight check, signals to the server, logs), paired on the same steps
    train_s = {r["step"]: r["seconds"] for r in step_recs}
    loop_extra = [r["seconds"] - train_s[r["step"]] for r in timed]
    return {
        "step_seconds_median": step_s,
        "train_step_seconds_median": statistics.median(train_s[r["step"]] for r in timed),
        "loop_overhead_seconds_median": statistics.median(loop_extra),
        "decide_seconds_median": statistics.median(r["decide_seconds"] for r in timed),
        "tokens_per_step": tokens[0],
        "tokens_per_s": tokens[0] / step_s,
        "worker_max_rss_mb": r0[-1]["max_rss_mb"],
        "server_max_rss_mb": (summary.get("server") or {}).get("max_rss_mb"),
        "server_weights_calls": (summary.get("server") or {}).get("num_weights_calls"),
        "run_seconds": total,
    }


def query_latency(spec, calls: int, name: str) -> dict:
    import ray

    from acodm_ray.policy_server import start_policy_server

    handle, _ = start_policy_server(spec, name=name, namespace="acodm-bench")
    rng = np.random.default_rng(0)
    states = rng.normal(size=(calls, spec.state_dim)).astype(np.float32)
    for s in states[:20]:  # warm-up
        ray.get(handle.weights.remote(s))
    lat = []
    for s in states:
        t = time.perf_counter()
        ray.get(handle.weights.remote(s))
        lat.append(time.perf_counter() - t)
    ray.kill(handle)
    return {
        "p50_ms": 1e3 * percentile(lat, 50),
        "p99_ms": 1e3 * percentile(lat, 99),
        "mean_ms": 1e3 * float(np.mean(lat)),
        "calls": calls,
    }


def inprocess_latency(policy_dir: Path, domains, state_dim: int, calls: int) -> dict:
    """The actor's forward pass alone, with one torch thread like the server actor (num_cpus=0)."""
    import torch

    from acodm_ray.mixers.actor import ActorMixer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    mixer = ActorMixer(policy_dir, domains, state_dim)
    states = np.random.default_rng(1).normal(size=(calls, state_dim)).astype(np.float32)
    lat = []
    for s in states:
        t = time.perf_counter()
        mixer.weights(s)
        lat.append(time.perf_counter() - t)
    torch.set_num_threads(threads)
    return {
        "p50_ms": 1e3 * percentile(lat, 50),
        "p99_ms": 1e3 * percentile(lat, 99),
        "calls": calls,
    }


def write_markdown(result: dict) -> None:
    """The BENCHMARKS.md section, rendered from a result (fresh, or read back with --from-json)."""
    s, q, tp = result["served_policy_vs_static"], result["query_latency"], result["throughput"]
    from benchmarks.report import machine, table, update_section

    body = (
        f"Machine: {machine()}; `{result['config']}` ({result['steps']} steps, medians over {result['repeats']} repeats), "
        f"{result['num_domains']} domains, state dim {result['state_dim']}, {result['cpus_per_worker']} CPU per worker.\n\n"
        + table(
            ["", "static (uniform)", "served policy", "overhead"],
            [
                [
                    "per-step wall clock (ms)",
                    s["step_ms_static"],
                    s["step_ms_served_policy"],
                    f"{s['step_time_overhead_pct']:+.1f}%",
                ],
                [
                    "decision: query + broadcast (ms)",
                    s["decide_ms_static"],
                    s["decide_ms_served_policy"],
                    f"{s['decision_overhead_pct_of_step']:+.2f}% of a step",
                ],
                [
                    "loop minus training step (ms)",
                    s["loop_overhead_ms_static"],
                    s["loop_overhead_ms_served_policy"],
                    f"{s['paired_overhead_pct_of_step']:+.2f}% of a step",
                ],
                [
                    "peak RSS, rank-0 worker (MB)",
                    s["worker_peak_rss_mb_static"],
                    s["worker_peak_rss_mb_served_policy"],
                    f"{s['worker_memory_overhead_pct']:+.1f}%",
                ],
                [
                    "peak RSS, server actor (MB)",
                    s["server_peak_rss_mb_static"],
                    s["server_peak_rss_mb_served_policy"],
                    "",
                ],
            ],
        )
        + "\n\n"
        + table(
            ["weights(state) latency", "p50 (ms)", "p99 (ms)"],
            [[k, v["p50_ms"], v["p99_ms"]] for k, v in q.items()],
        )
        + "\n\n"
        + table(
            ["workers", "tokens/step", "tokens/s"],
            [
                [1, tp["tokens_per_step_1_worker"], tp["tokens_per_s_1_worker"]],
                [2, tp["tokens_per_step_2_workers"], tp["tokens_per_s_2_workers"]],
            ],
        )
        + f"\n\nSpeed-up 2 vs 1 worker: {tp['speedup_2_vs_1']:.2f}x."
    )
    update_section("target", body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--latency-calls", type=int, default=2000)
    parser.add_argument("--cpus-per-worker", type=float, default=1.0)
    parser.add_argument(
        "--policy",
        default=None,
        help="an exported policy (default: a fresh actor of the config's size)",
    )
    parser.add_argument("--out", default=str(RESULT))
    parser.add_argument(
        "--markdown", action="store_true", help="also refresh the section in BENCHMARKS.md"
    )
    parser.add_argument(
        "--from-json", default=None, help="only render BENCHMARKS.md from an earlier result file"
    )
    args = parser.parse_args(argv)
    if args.from_json:
        write_markdown(json.loads(Path(args.from_json).read_text()))
        return 0

    import ray
    import torch

    from acodm_ray.agent.networks import Actor
    from acodm_ray.agent.policy_file import save_policy
    from acodm_ray.data.load import load_tokenized
    from acodm_ray.target import mixer_spec_for, state_spec_for

    overrides = [
        f"train.steps={args.steps}",
        "train.eval_every=100000",
        "train.checkpoint_every=100000",
        "train.eval_batches=1",
        f"target.cpus_per_worker={args.cpus_per_worker}",
        "target.server_name=acodm-bench-server",
        *args.overrides,
    ]
    base = load_config(args.config, overrides)
    t0 = time.perf_counter()
    ray.init(
        num_cpus=max(2, os.cpu_count() or 2),
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=200 * 1024**2,
        address="local",
    )
    tokens, _ = load_tokenized(base)
    domains = list(tokens.domains)
    spec_state = state_spec_for(base, tokens.vocab_size, tokens.eos_id, domains)
    work = Path(tempfile.mkdtemp(prefix="bench_target_"))
    if args.policy:
        policy = Path(args.policy)
    else:
        torch.manual_seed(0)
        actor = Actor(
            spec_state["dim"], len(domains), base.agent.actor_hidden, base.agent.actor_layers
        )
        policy = save_policy(work / "policy", actor, domains, spec_state, {})

    variants = {
        "uniform-2w": ["mixer.name=uniform", "target.num_workers=2"],
        "policy-2w": [f"target.policy={policy}", "target.num_workers=2"],
        "uniform-1w": ["mixer.name=uniform", "target.num_workers=1"],
    }
    runs: dict[str, list[dict]] = {k: [] for k in variants}
    for rep in range(args.repeats):
        for name, extra in variants.items():
            cfg = load_config(args.config, overrides + extra)
            res = one_run(cfg, work / f"{name}-{rep}")
            runs[name].append(res)
            print(
                f"[{rep}] {name}: step {res['step_seconds_median'] * 1e3:.1f} ms, "
                f"{res['tokens_per_s']:.0f} tok/s, worker RSS {res['worker_max_rss_mb']:.0f} MB",
                flush=True,
            )

    def med(name: str, key: str) -> float:
        vals = [r[key] for r in runs[name] if r[key] is not None]
        return float(statistics.median(vals)) if vals else float("nan")

    cfg = load_config(args.config, overrides + [f"target.policy={policy}"])
    spec = mixer_spec_for(cfg, domains, tokens.natural_proportions(), spec_state["dim"])
    latency_policy = query_latency(spec, args.latency_calls, "bench-latency-policy")
    uni = load_config(args.config, overrides + ["mixer.name=uniform"])
    latency_uniform = query_latency(
        mixer_spec_for(uni, domains, tokens.natural_proportions(), spec_state["dim"]),
        args.latency_calls,
        "bench-latency-uniform",
    )
    latency_local = inprocess_latency(policy, domains, spec_state["dim"], args.latency_calls)
    ray.shutdown()

    static_step, served_step = (
        med("uniform-2w", "step_seconds_median"),
        med("policy-2w", "step_seconds_median"),
    )
    static_extra, served_extra = (
        med("uniform-2w", "loop_overhead_seconds_median"),
        med("policy-2w", "loop_overhead_seconds_median"),
    )
    static_decide, served_decide = (
        med("uniform-2w", "decide_seconds_median"),
        med("policy-2w", "decide_seconds_median"),
    )
    static_rss, served_rss = (
        med("uniform-2w", "worker_max_rss_mb"),
        med("policy-2w", "worker_max_rss_mb"),
    )
    static_srv, served_srv = (
        med("uniform-2w", "server_max_rss_mb"),
        med("policy-2w", "server_max_rss_mb"),
    )
    tps1, tps2 = med("uniform-1w", "tokens_per_s"), med("uniform-2w", "tokens_per_s")
    result = {
        "config": args.config,
        "overrides": overrides,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "ray": ray.__version__,
        },
        "steps": args.steps,
        "repeats": args.repeats,
        "cpus_per_worker": args.cpus_per_worker,
        "policy": str(policy),
        "state_dim": spec_state["dim"],
        "num_domains": len(domains),
        "served_policy_vs_static": {
            "step_ms_static": 1e3 * static_step,
            "step_ms_served_policy": 1e3 * served_step,
            "step_time_overhead_pct": 100 * (served_step / static_step - 1),
            "decide_ms_static": 1e3 * static_decide,
            "decide_ms_served_policy": 1e3 * served_decide,
            # the part of the step that differs between the variants (query + broadcast), measured in
            # the same iterations: robust to the machine noise that moves whole steps
            "decision_overhead_pct_of_step": 100 * (served_decide - static_decide) / static_step,
            # LMTrainer.step is the same code for both (the mixer only picks the weights): its time
            # differs between variants by machine noise alone, which this pairs out
            "train_step_ms_static": 1e3 * med("uniform-2w", "train_step_seconds_median"),
            "train_step_ms_served_policy": 1e3 * med("policy-2w", "train_step_seconds_median"),
            "loop_overhead_ms_static": 1e3 * static_extra,
            "loop_overhead_ms_served_policy": 1e3 * served_extra,
            "paired_overhead_pct_of_step": 100 * (served_extra - static_extra) / static_step,
            "worker_peak_rss_mb_static": static_rss,
            "worker_peak_rss_mb_served_policy": served_rss,
            "worker_memory_overhead_pct": 100 * (served_rss / static_rss - 1),
            "server_peak_rss_mb_static": static_srv,
            "server_peak_rss_mb_served_policy": served_srv,
            "total_memory_overhead_pct": 100
            * ((2 * served_rss + served_srv) / (2 * static_rss + static_srv) - 1),
        },
        "query_latency": {
            "served_policy": latency_policy,
            "served_uniform": latency_uniform,
            "actor_in_process": latency_local,
        },
        "throughput": {
            "tokens_per_s_1_worker": tps1,
            "tokens_per_s_2_workers": tps2,
            "speedup_2_vs_1": tps2 / tps1,
            "tokens_per_step_1_worker": med("uniform-1w", "tokens_per_step"),
            "tokens_per_step_2_workers": med("uniform-2w", "tokens_per_step"),
        },
        "runs": runs,
        "seconds_total": time.perf_counter() - t0,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    s, q, tp = result["served_policy_vs_static"], result["query_latency"], result["throughput"]
    print(
        json.dumps(
            {
                "served_policy_vs_static": s,
                "query_latency_p50_p99_ms": {
                    k: (round(v["p50_ms"], 3), round(v["p99_ms"], 3)) for k, v in q.items()
                },
                "throughput": tp,
                "seconds_total": round(result["seconds_total"], 1),
            },
            indent=2,
        )
    )
    if args.markdown:
        write_markdown(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

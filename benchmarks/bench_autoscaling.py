"""Scaling with cluster autoscaling: the timings of tests/test_autoscaling.py's scenario.

Runs `tests/autoscaling_scenario.py` (a fake multi-node autoscaling cluster made from deploy/aws.yaml's
node types, in its own namespaces: needs root) once, or reads the observations a run already wrote,
and reports what it measured: seconds from job submit to the first env step with a scale-up (cold)
and without (warm), the nodes added and removed and when, and the steps the node loss cost.

    python benchmarks/bench_autoscaling.py --markdown
    python benchmarks/bench_autoscaling.py --observations "test run=PATH/observations.json" --markdown

Writes benchmarks/results/autoscaling.json and the run's raw observations next to it
(autoscaling_observations.json), and the `autoscaling` section of BENCHMARKS.md with --markdown.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import machine, table, update_section  # noqa: E402
from tests import autoscaling_scenario as scenario  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "autoscaling.json"
RAW = (
    ROOT / "benchmarks" / "results" / "autoscaling_observations.json"
)  # what the numbers are computed from


def observe(path: str | None) -> dict:
    if path:
        return json.loads(Path(path).read_text())
    with tempfile.TemporaryDirectory(prefix="bench-autoscaling-", dir="/var/tmp") as tmp:
        obs, proc = scenario.run_isolated_scenario(Path(tmp) / "tmp")
    if proc.returncode != 0 or obs.get("error"):
        raise SystemExit(
            f"the scenario failed (exit {proc.returncode}): {obs.get('error')}\n{proc.stderr[-3000:]}"
        )
    return obs


def s(x) -> str:
    return "n/a" if x is None else f"{x:.0f}"


def seconds(xs) -> str:
    return ", ".join(f"{x:.0f}" for x in xs) or "-"


ROWS = [  # (what, how to read it from one run's measurements)
    (
        "proxy job, cold (head only): submit → first env step (s)",
        lambda n: s(n["proxy_cold"]["submit_to_first_env_step_s"]),
    ),
    (
        "proxy job, warm (its 2 nodes still up): submit → first env step (s)",
        lambda n: s(n["proxy_warm"]["submit_to_first_env_step_s"]),
    ),
    (
        "the scale-up's cost, cold - warm (s)",
        lambda n: s(
            n["proxy_cold"]["submit_to_first_env_step_s"]
            - n["proxy_warm"]["submit_to_first_env_step_s"]
        ),
    ),
    (
        "cold job: nodes added; submit → each joined (s)",
        lambda n: (
            f"{n['proxy_cold']['nodes_added']}; {seconds(n['proxy_cold']['submit_to_nodes_joined_s'])}"
        ),
    ),
    ("warm job: nodes added", lambda n: str(n["proxy_warm"]["nodes_added"])),
    (
        "target job: submit → first train step (s)",
        lambda n: s(n["target"]["submit_to_first_step_s"]),
    ),
    (
        "node killed after step / resumed from step (checkpoint every)",
        lambda n: (
            f"{n['node_loss']['killed_after_step']} / {n['node_loss']['resumed_from_step']} "
            f"({n['node_loss']['checkpoint_every']})"
        ),
    ),
    (
        "steps recomputed / lost beyond the last checkpoint interval",
        lambda n: (
            f"{n['node_loss']['steps_recomputed']} / {n['node_loss']['steps_lost_beyond_last_checkpoint']}"
        ),
    ),
    (
        "after the kill: node seen dead / replacement joined / training resumed (s)",
        lambda n: (
            f"{s(n['node_loss']['node_dead_after_s'])} / {s(n['node_loss']['replacement_joined_after_s'])} / "
            f"{s(n['node_loss']['resumed_after_s'])}"
        ),
    ),
    (
        "idle nodes removed, s after the last job ended (idle timeout)",
        lambda n: (
            f"{seconds(n['scale_down']['removed_after_job_end_s'])} ({s(n['scale_down']['idle_timeout_s'])})"
        ),
    ),
    ("nodes added / removed in all", lambda n: f"{n['nodes_added']} / {n['nodes_removed']}"),
    (
        "cluster start / whole scenario (s)",
        lambda n: f"{s(n['cluster_start_s'])} / {s(n['total_s'])}",
    ),
]


def markdown(runs: dict[str, dict]) -> str:
    rows = [[what, *(read(numbers) for numbers in runs.values())] for what, read in ROWS]
    return "\n".join(
        [
            "## Scaling with cluster autoscaling (fake multi-node cluster from deploy/aws.yaml)",
            "",
            "`tests/test_autoscaling.py`'s scenario (`tests/autoscaling_scenario.py`): a head with aws.yaml's "
            f"`CPU: 0`, aws.yaml's worker types scaled to 1 CPU (at most {scenario.MAX_NODES_PER_TYPE} `cpu_worker` "
            f"nodes, no `gpu_worker`), idle timeout {scenario.IDLE_TIMEOUT_MINUTES * 60:.0f} s, autoscaler heartbeat "
            f"timeout {scenario.HEARTBEAT_TIMEOUT_S} s; the proxy job with 2 env runners (1 CPU each), cold then "
            f"warm, then the target job with 2 Train workers (1 CPU each, {scenario.TARGET_STEPS} steps) serving "
            f"the cold job's policy, one of its worker nodes killed after step {scenario.KILL_AFTER_STEP}. "
            "First env step: `first_env_step_time` in iterations.jsonl (policies/callbacks.py). "
            f"Machine: {machine()}, 2 cores. `python benchmarks/bench_autoscaling.py --markdown` "
            "(`--observations LABEL=PATH` reports runs already made).",
            "",
            table(["", *runs], rows),
            "",
            "Reading: the scale-up costs the node start (about 12-16 s to join here, launched in parallel) "
            "minus what overlaps with the driver's own start; everything else before the first env step is the "
            "driver, the algorithm build and the env runners' processes, paid warm too. The recomputed steps are the "
            "ones after the last checkpoint (losses identical to the first time, checked by the test); nothing "
            "before it is lost. The replacement waits for the autoscaler's heartbeat timeout (the dead node is "
            "terminated first: no spare node at this cap). The idle nodes go a little less than the idle timeout "
            "after the job's end: they went idle when the Train workers exited, before the driver had written the "
            "model and the summary.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--observations",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="a scenario run's observations.json under a column label (repeatable; default: run it)",
    )
    parser.add_argument("--label", default="this run", help="the column label of a run made now")
    parser.add_argument(
        "--markdown", action="store_true", help="update BENCHMARKS.md's autoscaling section"
    )
    args = parser.parse_args(argv)
    observed = {}
    for item in args.observations:
        label, _, path = item.partition("=")
        observed[label] = observe(path)
    if not observed:
        observed[args.label] = observe(None)
    runs = {label: scenario.measurements(obs) for label, obs in observed.items()}
    RESULT.write_text(json.dumps({"machine": machine(), "runs": runs}, indent=1) + "\n")
    RAW.write_text(json.dumps(observed, indent=1) + "\n")
    print(json.dumps(runs, indent=1))
    if args.markdown:
        update_section("autoscaling", markdown(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())

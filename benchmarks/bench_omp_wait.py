"""A proxy env step and a rollout step under torch's OpenMP wait settings, side by side.

Each setting runs in a fresh process (libgomp reads its variables once, when torch loads it); the
settings take turns, order rotating, `--repeats` times. In each process the env step
(`DataMixingEnv.step`, what RLlib times as env_step_timer) and the rollout step (`mixing_loop` with
ODM on a fresh proxy, what `acodm_ray.rollout` runs) alternate, `--steps` each after one warm-up
step each. Reported: median wall and CPU seconds per step over every measured step of a setting,
minor page faults, the load average, and whether the rollout came out bit for bit as under the
first setting (weights, losses and the final model, same seed).

Settings: `spin300k` is libgomp's default (GOMP_SPINCOUNT=300000, what torch did before
acodm_ray bounded it), `bounded` sets nothing (acodm_ray sets GOMP_SPINCOUNT=1000 on import),
`passive` is OMP_WAIT_POLICY=PASSIVE, `1thread` OMP_NUM_THREADS=1 (other bits: work is split
differently).

`--realtime` measures the machine as if idle: after the warm-up steps every thread of the
measuring process runs at SCHED_RR priority 1, ahead of all normal work (root or CAP_SYS_NICE;
Linux keeps 5% of each CPU for the rest), and goes back to SCHED_OTHER when the steps are done.

    python benchmarks/bench_omp_wait.py --config configs/demo.yaml --steps 8 --repeats 3
    python benchmarks/bench_omp_wait.py --config configs/demo.yaml --steps 8 --repeats 3 --realtime
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import acodm_ray  # noqa: E402,F401  (before torch: it bounds the spin unless the setting chose one)
from benchmarks.report import table, update_section  # noqa: E402

SETTINGS = {
    "spin300k": {"GOMP_SPINCOUNT": "300000"},
    "bounded": {},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "1thread": {"OMP_NUM_THREADS": "1"},
}
WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")


def _sched(policy: int) -> None:
    """Every thread of this process to `policy` (SCHED_RR at priority 1, or back to SCHED_OTHER)."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setscheduler(int(tid), policy, os.sched_param(1 if policy else 0))
        except OSError:
            pass


def child(args: argparse.Namespace) -> None:
    """One setting: alternate env and rollout steps; write their timings and the rollout's hash."""
    # lazy: torch loads after `import acodm_ray` above, which set the spin (or left the setting's)
    import numpy as np
    import torch

    from acodm_ray.config import load_config, to_dict
    from acodm_ray.mixers.odm import ODMMixer
    from acodm_ray.train_step import LMTrainer
    from envs import DataMixingEnv

    cfg = load_config(args.config, args.overrides)
    env = DataMixingEnv({"experiment": to_dict(cfg)})
    env.reset(seed=cfg.train.seed)
    K = len(env.domains)
    action = np.full(K, 1.0 / K, dtype=np.float32)
    trainer = LMTrainer(cfg, env.tokens, seed=cfg.train.seed)
    odm = ODMMixer(
        env.domains, env.tokens.natural_proportions(), cfg.mixer.odm_variant, cfg.mixer.odm_alpha
    )
    digest = hashlib.sha256()

    def rollout_step() -> None:
        signals = trainer.step(odm.weights(trainer.last_state))
        odm.update(signals)
        digest.update(signals.weights.tobytes() + signals.losses.tobytes())

    steps = {"env": lambda: env.step(action), "rollout": rollout_step}
    rows = []
    try:
        for i in range(args.steps + 1):
            if i == 1 and args.realtime:
                _sched(os.SCHED_RR)
            for kind, run in steps.items():
                usage = resource.getrusage(resource.RUSAGE_SELF)
                start = time.perf_counter()
                run()
                wall = time.perf_counter() - start
                after = resource.getrusage(resource.RUSAGE_SELF)
                cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
                if i > 0:  # step 0 of each is the warm-up
                    load = float(Path("/proc/loadavg").read_text().split()[0])
                    rows.append([kind, wall, cpu, after.ru_minflt - usage.ru_minflt, load])
    finally:
        _sched(os.SCHED_OTHER)
    for p in trainer.model.parameters():
        digest.update(p.detach().numpy().tobytes())
    env_vars = {k: os.environ.get(k) for k in WAIT_VARS}
    Path(args.out).write_text(
        json.dumps(
            {
                "rows": rows,
                "hash": digest.hexdigest(),
                "threads": torch.get_num_threads(),
                **env_vars,
            }
        )
    )


BUSY = "while True: pass"  # one process that wants a whole core, as any other job on the machine


def run_setting(name: str, args: argparse.Namespace, out: Path) -> dict:
    """One setting in a fresh process, with `args.background` busy processes beside it."""
    env = {k: v for k, v in os.environ.items() if k not in WAIT_VARS}
    env.update(SETTINGS[name])
    cmd = [sys.executable, __file__, "--child", "--out", str(out), "--steps", str(args.steps)]
    cmd += ["--config", args.config] + [f"--set={o}" for o in args.overrides]
    cmd += ["--realtime"] * args.realtime
    busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(args.background)]
    try:
        subprocess.run(cmd, env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    finally:
        for p in busy:
            p.kill()
    return json.loads(out.read_text())


def report(summary: dict, background: int) -> str:
    """The table for BENCHMARKS.md: median seconds per step of each setting, ratio to the bounded."""
    base = summary.get("bounded")
    header = ["setting", "env step s", "rollout step s", "vs bounded (rollout)", "same bits"]
    body = [
        [name, s["env"]["wall_s"], s["rollout"]["wall_s"],
         f"{s['rollout']['wall_s'] / base['rollout']['wall_s']:.2f}x" if base else "n/a",
         "yes" if s["same_bits_as_first"] else "no (threads split work differently)"]
        for name, s in summary.items()
    ]  # fmt: skip
    title = f"### {background} busy process(es) beside the measured one (median s per step)"
    return title + "\n\n" + table(header, body)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--steps", type=int, default=8, help="measured steps of each kind")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--settings", default="spin300k,bounded", help=f"of {list(SETTINGS)}")
    parser.add_argument("--realtime", action="store_true")
    parser.add_argument(
        "--background", type=int, default=0, help="busy processes running beside each measurement"
    )
    parser.add_argument(
        "--section", default=None, help="BENCHMARKS.md section to write the table to"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="benchmarks/results/omp_wait.json")
    args = parser.parse_args()
    if args.child:
        return child(args)
    names = args.settings.split(",")
    results: dict[str, list[dict]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                results[name].append(run_setting(name, args, Path(tmp) / f"{name}-{r}.json"))
                print(f"repeat {r + 1}/{args.repeats}: {name} done", file=sys.stderr)
    first_hash = results[names[0]][0]["hash"]
    summary = {}
    for name, runs in results.items():
        rows = [row for run in runs for row in run["rows"]]
        summary[name] = {
            kind: {
                "wall_s": statistics.median(r[1] for r in rows if r[0] == kind),
                "cpu_s": statistics.median(r[2] for r in rows if r[0] == kind),
                "minor_faults": statistics.median(r[3] for r in rows if r[0] == kind),
                "wall_per_repeat": [
                    statistics.median(r[1] for r in run["rows"] if r[0] == kind) for run in runs
                ],
            }
            for kind in ("env", "rollout")
        }
        loads = [r[4] for r in rows]
        summary[name]["load_average"] = [min(loads), max(loads)]
        summary[name]["same_bits_as_first"] = all(run["hash"] == first_hash for run in runs)
        summary[name]["threads"] = runs[0]["threads"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "summary": summary}, indent=1))
    text = report(summary, args.background)
    print(text)
    if args.section:
        update_section(args.section, text)


if __name__ == "__main__":
    main()

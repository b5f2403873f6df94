"""Running a comparison: every planned run on a thread pool of `compare.concurrency` workers, a
proxy-mode target run only once its proxy stage has its policy; finished runs read back under
`--resume`; a failed run recorded (its dependants too) while the others go on."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from acodm_ray.compare.configs import (
    proxy_config,
    shared_mlflow_store,
    target_config,
    validate_compare,
)
from acodm_ray.compare.methods import CompareError, method_of, proxy_methods
from acodm_ray.compare.plan import RunSpec, plan, plan_runs
from acodm_ray.compare.report import write_outputs
from acodm_ray.compare.results import load_run, machine, summarize
from acodm_ray.config import ExperimentConfig, to_dict
from acodm_ray.rundir import prepare_run_dir, write_config, write_json
from acodm_ray.tracking import ResultLogger, require_backends

log = logging.getLogger("acodm_ray.compare")


WALL_FILE = "compare_wall.json"  # in each run dir: the run's wall-clock, kept for --resume
# (proxy cfg, run dir, overwrite, trainer=Method.trainer) -> summary with "policy"
ProxyRunner = Callable[..., dict]
TargetRunner = Callable[..., dict]  # run_target(cfg, run_dir, resume=, overwrite=)


def _finished(run_dir: Path, steps: int | None = None) -> dict | None:
    path = run_dir / "summary.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    if steps is not None and summary.get("steps") != steps:
        return None
    return summary


def run_comparison(
    cfg: ExperimentConfig,
    out_dir: str | Path,
    proxy_runner: ProxyRunner | None,
    target_runner: TargetRunner | None = None,
    resume: bool = False,
    overwrite: bool = False,
    quick: bool = False,
    config_path: str | None = None,
) -> dict[str, Any]:
    """Run every (method, seed) and the proxy stages, then write summary.json, table.md and the plots
    into `out_dir`. With `resume`, runs that already finished are read back instead of rerun. A failed
    run is recorded under "failures" (its dependants too) and the others go on."""
    require_backends(cfg)
    if target_runner is None:
        # lazy: Ray Train and the model (seconds to import), only when no target_runner is given
        from acodm_ray.target import run_target as target_runner
    validate_compare(cfg)
    plan_runs(cfg, Path(out_dir)).check()  # what the job checked before it started (--dry-run)
    if proxy_methods(cfg.compare.methods) and proxy_runner is None:
        raise CompareError(
            f"methods {proxy_methods(cfg.compare.methods)} need a proxy runner (policies.compare_proxy)"
        )
    out_dir = prepare_run_dir(
        Path(out_dir).expanduser().resolve(), resume=resume, overwrite=overwrite
    )
    cfg = shared_mlflow_store(cfg, out_dir)
    # the comparison's own MLflow / W&B run (and the store's experiment) exist before any run starts
    ResultLogger(
        dataclasses.replace(cfg.tracking, wandb=False),
        out_dir,
        params=to_dict(cfg),
        resume=resume,
        tensorboard=False,
    ).close()
    previous = (
        json.loads((out_dir / "summary.json").read_text())
        if resume and (out_dir / "summary.json").is_file()
        else {}
    )
    write_config(out_dir, cfg)
    specs = plan(cfg, out_dir)
    tag = out_dir.name
    results: dict[str, dict] = {}
    failures: dict[str, str] = {}
    started = time.perf_counter()

    def earlier_wall(spec: RunSpec) -> float | None:
        path = spec.run_dir / WALL_FILE
        if path.is_file():
            return json.loads(path.read_text()).get("wall_s")
        if spec.kind == "proxy":
            stage = (previous.get("proxies") or {}).get(spec.method) or (
                previous.get("proxy") if spec.method == "acodm" else None
            )
            return (((stage or {}).get("runs") or {}).get(str(spec.seed)) or {}).get("wall_s")
        return ((previous.get("runs") or {}).get(spec.key) or {}).get("wall_s")

    def execute(spec: RunSpec) -> dict:
        t0 = time.perf_counter()
        if spec.kind == "proxy":
            pcfg = proxy_config(cfg, spec.seed, spec.method)
            done = _finished(spec.run_dir) if resume else None
            if done and done.get("policy") and Path(done["policy"]).is_dir():
                return {
                    **done,
                    "skipped": True,
                    "wall_s": earlier_wall(spec),
                    "run_dir": str(spec.run_dir),
                }
            summary = proxy_runner(pcfg, spec.run_dir, True, trainer=method_of(spec.method).trainer)
        else:
            policy = results[spec.depends]["policy"] if spec.depends else None
            tcfg = target_config(
                cfg, spec.method, spec.seed, policy=policy, server_name=f"cmp-{tag}-{spec.key}"
            )
            done = _finished(spec.run_dir, tcfg.train.steps) if resume else None
            if done:
                return {**done, "skipped": True, "wall_s": earlier_wall(spec)}
            summary = target_runner(tcfg, spec.run_dir, resume=False, overwrite=True)
        summary = dict(summary)
        summary["wall_s"] = time.perf_counter() - t0
        write_json(spec.run_dir / WALL_FILE, {"key": spec.key, "wall_s": summary["wall_s"]})
        return summary

    pending = list(specs)
    running: dict[Any, RunSpec] = {}
    with ThreadPoolExecutor(max_workers=cfg.compare.concurrency) as pool:
        while pending or running:
            for spec in list(pending):
                if spec.depends and spec.depends in failures:
                    pending.remove(spec)
                    failures[spec.key] = f"not run: {spec.depends} failed"
            while len(running) < cfg.compare.concurrency:
                ready = next((s for s in pending if not s.depends or s.depends in results), None)
                if ready is None:
                    break
                pending.remove(ready)
                log.info("compare: starting %s", ready.key)
                running[pool.submit(execute, ready)] = ready
            if not running:
                break
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done:
                spec = running.pop(fut)
                try:
                    results[spec.key] = fut.result()
                    log.info(
                        "compare: %s %s",
                        spec.key,
                        "finished earlier: read back"
                        if results[spec.key].get("skipped")
                        else f"done in {results[spec.key].get('wall_s') or 0.0:.0f} s",
                    )
                except Exception as err:  # keep going; reported in the summary
                    log.exception("compare: %s failed", spec.key)
                    failures[spec.key] = f"{type(err).__name__}: {err}"
    wall = time.perf_counter() - started

    runs = {s.key: load_run(s.run_dir) for s in specs if s.kind == "target" and s.key in results}
    summary = summarize(cfg, specs, runs, results, failures)
    summary.update(
        {
            "name": out_dir.name,
            "config": config_path,
            "quick": quick,
            "out_dir": str(out_dir),
            "wall_clock_s": wall + float(previous.get("wall_clock_s") or 0.0),
            "wall_clock_s_this_invocation": wall,
            "resumed": bool(resume),
            "machine": machine(),
            "concurrency": cfg.compare.concurrency,
        }
    )
    summary["files"] = write_outputs(summary, runs, specs, out_dir)
    write_json(out_dir / "summary.json", summary)
    # the comparison's own tracked run: its headline figures, table, plots and summary
    with ResultLogger(cfg, out_dir, params=to_dict(cfg), resume=True, tensorboard=False) as tracker:
        tracker.log(
            {"headline": summary["headline"], "wall_clock_s": summary["wall_clock_s"]}, step=0
        )
        tracker.log_artifacts(
            {"results": [out_dir / "summary.json", *map(Path, summary["files"].values())]}
        )
    return summary

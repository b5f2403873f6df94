"""Running a comparison: every planned run on a thread pool of `compare.concurrency` workers, a
proxy-mode target run only once its proxy stage has its policy; finished runs read back under
`--resume`; a failed run recorded (its dependants too) while the others go on. The comparison's
own lifecycle (its dir, config snapshot, tracked run, summary) is `acodm_ray.run.Run`'s."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
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
from acodm_ray.config import ExperimentConfig
from acodm_ray.run import Run, read_summary
from acodm_ray.rundir import write_json
from acodm_ray.tracking import require_backends

log = logging.getLogger("acodm_ray.compare")


WALL_FILE = "compare_wall.json"  # in each run dir: the run's wall-clock, kept for --resume
# (proxy cfg, run dir, overwrite, trainer=Method.trainer) -> summary with "policy"
ProxyRunner = Callable[..., dict]
TargetRunner = Callable[..., dict]  # run_target(cfg, run_dir, resume=, overwrite=)


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
    check_comparison(cfg, Path(out_dir), proxy_runner)
    out_dir = Path(out_dir).expanduser().resolve()
    cfg = shared_mlflow_store(cfg, out_dir)
    with Run.start(cfg, out_dir, resume=resume, overwrite=overwrite) as run:
        run.register()  # the comparison's own tracked run (and the store's experiment) come first
        previous = (read_summary(run.dir) or {}) if resume else {}
        run.snapshot(replace=True)  # the config of this invocation (a resume may add runs)
        specs = plan(cfg, run.dir)
        execute = RunLauncher(cfg, run.dir, proxy_runner, target_runner, resume, previous)
        started = time.perf_counter()
        results, failures = run_all(specs, execute, cfg.compare.concurrency)
        wall = time.perf_counter() - started
        facts = invocation(run, config_path, quick, wall, previous, cfg.compare.concurrency)
        summary = comparison_summary(cfg, specs, results, failures, facts, run.dir)
        files = [run.summary_path, *map(Path, summary["files"].values())]
        headline = {"headline": summary["headline"], "wall_clock_s": summary["wall_clock_s"]}
        return run.finish(summary, {"results": files}, scalars=headline)


def check_comparison(
    cfg: ExperimentConfig, out_dir: Path, proxy_runner: ProxyRunner | None
) -> None:
    """What the job checked before it started (--dry-run), checked again for library callers."""
    validate_compare(cfg)
    plan_runs(cfg, out_dir).check()
    if proxy_methods(cfg.compare.methods) and proxy_runner is None:
        raise CompareError(
            f"methods {proxy_methods(cfg.compare.methods)} need a proxy runner (policies.compare_proxy)"
        )


def invocation(
    run: Run,
    config_path: str | None,
    quick: bool,
    wall: float,
    previous: dict[str, Any],
    concurrency: int,
) -> dict[str, Any]:
    """This invocation's facts in summary.json; the wall-clock adds up over resumed invocations."""
    return {
        "name": run.dir.name,
        "config": config_path,
        "quick": quick,
        "out_dir": str(run.dir),
        "wall_clock_s": wall + float(previous.get("wall_clock_s") or 0.0),
        "wall_clock_s_this_invocation": wall,
        "resumed": bool(run.resume),
        "machine": machine(),
        "concurrency": concurrency,
    }


def comparison_summary(
    cfg: ExperimentConfig,
    specs: list[RunSpec],
    results: dict[str, dict],
    failures: dict[str, str],
    invocation: dict[str, Any],
    out_dir: Path,
) -> dict[str, Any]:
    """summary.json's content: the finished runs summarized, this invocation's facts, and the
    files written from them (table.md, the plots)."""
    runs = {s.key: load_run(s.run_dir) for s in specs if s.kind == "target" and s.key in results}
    summary = summarize(cfg, specs, runs, results, failures)
    summary.update(invocation)
    summary["files"] = write_outputs(summary, runs, specs, out_dir)
    return summary


# ------------------------------------------------------------------------------ one run


@dataclass
class RunLauncher:
    """How one planned run is run, or, under `--resume`, read back when it finished earlier."""

    cfg: ExperimentConfig
    out_dir: Path
    proxy_runner: ProxyRunner | None
    target_runner: TargetRunner
    resume: bool
    previous: dict[str, Any]
    """The summary.json of the invocation resumed ({} if none): earlier runs' wall-clocks."""

    def __call__(self, spec: RunSpec, dependency: dict | None) -> dict:
        """`spec`'s summary, with its wall-clock ("wall_s"); `dependency`: what the run it depends
        on returned (a proxy stage's summary, with its "policy")."""
        t0 = time.perf_counter()
        if spec.kind == "proxy":
            summary = self._proxy(spec)
        else:
            summary = self._target(spec, dependency)
        if summary.get("skipped"):  # read back: it keeps the wall-clock of the run that made it
            return summary
        summary = dict(summary)
        summary["wall_s"] = time.perf_counter() - t0
        write_json(spec.run_dir / WALL_FILE, {"key": spec.key, "wall_s": summary["wall_s"]})
        return summary

    def _proxy(self, spec: RunSpec) -> dict:
        """The proxy stage; read back if it finished earlier with its policy on disk."""
        pcfg = proxy_config(self.cfg, spec.seed, spec.method)
        done = read_summary(spec.run_dir) if self.resume else None
        if done and done.get("policy") and Path(done["policy"]).is_dir():
            wall = self._earlier_wall(spec)
            return {**done, "skipped": True, "wall_s": wall, "run_dir": str(spec.run_dir)}
        return self.proxy_runner(pcfg, spec.run_dir, True, trainer=method_of(spec.method).trainer)

    def _target(self, spec: RunSpec, dependency: dict | None) -> dict:
        """The target run (from scratch); read back if it finished earlier the planned steps."""
        policy = dependency["policy"] if dependency else None
        server = f"cmp-{self.out_dir.name}-{spec.key}"
        tcfg = target_config(self.cfg, spec.method, spec.seed, policy=policy, server_name=server)
        done = read_summary(spec.run_dir) if self.resume else None
        if done and done.get("steps") == tcfg.train.steps:
            return {**done, "skipped": True, "wall_s": self._earlier_wall(spec)}
        return self.target_runner(tcfg, spec.run_dir, resume=False, overwrite=True)

    def _earlier_wall(self, spec: RunSpec) -> float | None:
        """A run read back keeps the wall-clock it took when it ran."""
        path = spec.run_dir / WALL_FILE
        if path.is_file():
            return json.loads(path.read_text()).get("wall_s")
        previous = self.previous
        if spec.kind == "proxy":
            stage = (previous.get("proxies") or {}).get(spec.method) or (
                previous.get("proxy") if spec.method == "acodm" else None
            )
            return (((stage or {}).get("runs") or {}).get(str(spec.seed)) or {}).get("wall_s")
        return ((previous.get("runs") or {}).get(spec.key) or {}).get("wall_s")


# ------------------------------------------------------------------------------ the pool


def run_all(
    specs: list[RunSpec], execute: RunLauncher, concurrency: int
) -> tuple[dict[str, dict], dict[str, str]]:
    """Every spec on `concurrency` threads, each once the run it depends on finished: (results by
    key, failures by key). A failed run's dependants are recorded as not run."""
    results: dict[str, dict] = {}
    failures: dict[str, str] = {}
    pending = list(specs)
    running: dict[Future, RunSpec] = {}
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        while pending or running:
            _drop_orphans(pending, failures)
            while len(running) < concurrency:
                ready = next((s for s in pending if not s.depends or s.depends in results), None)
                if ready is None:
                    break
                pending.remove(ready)
                log.info("compare: starting %s", ready.key)
                dependency = results[ready.depends] if ready.depends else None
                running[pool.submit(execute, ready, dependency)] = ready
            if not running:
                break
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done:
                _collect(running.pop(fut), fut, results, failures)
    return results, failures


def _drop_orphans(pending: list[RunSpec], failures: dict[str, str]) -> None:
    """A run whose dependency failed is not run: recorded as such."""
    for spec in list(pending):
        if spec.depends and spec.depends in failures:
            pending.remove(spec)
            failures[spec.key] = f"not run: {spec.depends} failed"


def _collect(
    spec: RunSpec, fut: Future, results: dict[str, dict], failures: dict[str, str]
) -> None:
    """A finished run's result, or why it failed (the others go on; reported in the summary)."""
    try:
        results[spec.key] = fut.result()
    except Exception as err:
        log.exception("compare: %s failed", spec.key)
        failures[spec.key] = f"{type(err).__name__}: {err}"
        return
    result = results[spec.key]
    log.info(
        "compare: %s %s",
        spec.key,
        "finished earlier: read back"
        if result.get("skipped")
        else f"done in {result.get('wall_s') or 0.0:.0f} s",
    )

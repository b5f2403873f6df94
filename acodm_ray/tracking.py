"""Experiment tracking: TensorBoard by default, MLflow and Weights & Biases when asked for.

The `tracking:` config section (`TrackingConfig`) says where results go. Nothing here needs the
network by default: TensorBoard writes event files under the run dir, MLflow (when enabled) a
file store at `file:<run_dir>/mlruns`, W&B (when enabled) an offline run under `<run_dir>/wandb`
(`wandb sync <run_dir>/wandb/offline-run-*` uploads it later). mlflow and wandb are optional
packages, imported only when enabled; a missing one is a `TrackingError` that names the
`pip install` command.

One `ResultLogger` per run dir and process, used by every job:
  - `acodm pretrain` (`acodm_ray.pretrain`) and the target's rank 0 (`acodm_ray.target`) log through
    `MetricsWriter`, which owns a ResultLogger (every step and evaluation record);
  - the proxy stage (`policies/run.py`) logs every scalar of RLlib's result dict per iteration;
  - `jobs/compare.py` gives each of its runs its own MLflow run, all in one store under the
    comparison's directory, plus one run for the comparison's headline figures.
The first ResultLogger of a run dir creates the MLflow run (params = the resolved config, flattened)
and records its id in `<run_dir>/tracking.json`; later ones (`resume=True`: a resumed run, the
target's rank-0 worker, the driver's final artifact upload) continue that same run. Artifacts
(`log_artifacts`): the exported policy, the HF model, plots, summaries.

MLflow is driven through `MlflowClient` with explicit run ids, never the fluent API's process-wide
active run, so runs in concurrent threads (the comparison) cannot log into each other.

This module imports neither ray nor torch at import time (config.py imports `TrackingConfig`).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from acodm_ray.errors import AcodmError, ConfigError
from acodm_ray.typed_config import check_choices

WandbMode = Literal["offline", "online", "disabled"]
TRACKING_FILE = "tracking.json"  # run ids, so --resume continues the same MLflow / W&B run
MLFLOW_PARAM_CHARS = 6000  # MLflow's limit on a param value


class TrackingError(AcodmError, ValueError):
    """Tracking is misconfigured, or an enabled backend's package is not installed."""


@dataclass
class TrackingConfig:
    """Where results are logged. TensorBoard is on by default; MLflow and W&B are opt-in."""

    tensorboard: bool = True
    """TensorBoard event files under <run_dir>/tensorboard."""
    mlflow: bool = False
    """Log to MLflow (needs `pip install mlflow` or mlflow-skinny)."""
    mlflow_tracking_uri: str | None = None
    """The MLflow tracking URI; null: file:<run_dir>/mlruns (local, no server)."""
    mlflow_experiment: str = "acodm"
    """The MLflow experiment runs are logged under."""
    wandb: bool = False
    """Log to Weights & Biases (needs `pip install wandb`)."""
    wandb_project: str = "acodm"
    """The W&B project."""
    wandb_mode: WandbMode = "offline"
    """W&B's mode: "offline" needs no account (`wandb sync` uploads later)."""

    def __post_init__(self) -> None:
        check_choices(self, "tracking")
        for key in ("mlflow_experiment", "wandb_project"):
            if not getattr(self, key).strip():
                raise ConfigError(f"tracking.{key} must not be empty")
        if self.mlflow_tracking_uri is not None and not self.mlflow_tracking_uri.strip():
            raise ConfigError(
                "tracking.mlflow_tracking_uri must be a URI or null (file:<run_dir>/mlruns)"
            )


# ------------------------------------------------------------------------------------ helpers


def _tracking(cfg: Any) -> TrackingConfig:
    """A TrackingConfig from itself or from an ExperimentConfig."""
    tc = getattr(cfg, "tracking", cfg)
    if not isinstance(tc, TrackingConfig):
        raise TypeError(
            f"expected a TrackingConfig or an ExperimentConfig, got {type(cfg).__name__}"
        )
    return tc


def require_backends(cfg: Any) -> None:
    """Raise TrackingError naming the install command for every enabled backend that is missing."""
    tc = _tracking(cfg)
    missing = [
        (pkg, key)
        for pkg, key, on in (
            ("mlflow", "tracking.mlflow", tc.mlflow),
            ("wandb", "tracking.wandb", tc.wandb),
        )
        if on and importlib.util.find_spec(pkg) is None
    ]
    if missing:
        raise TrackingError(
            "; ".join(
                f"{key}=true but the {pkg} package is not installed: `pip install {pkg}` "
                f"(or set {key}=false)"
                for pkg, key in missing
            )
        )


def mlflow_tracking_uri(cfg: Any, run_dir: str | Path | None) -> str:
    """The configured MLflow tracking URI, or a file store under the run dir."""
    tc = _tracking(cfg)
    if tc.mlflow_tracking_uri:
        uri = tc.mlflow_tracking_uri
    elif run_dir is None:
        raise TrackingError("tracking.mlflow needs a run dir or tracking.mlflow_tracking_uri")
    else:
        uri = (Path(run_dir).expanduser().resolve() / "mlruns").as_uri()
    if uri.startswith("file:"):
        # MLflow 3 keeps its file store in maintenance mode and refuses it unless opted in; a local,
        # serverless store is what we want here, so opt in (servers and databases need nothing).
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return uri


def flatten_scalars(result: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Every finite number of a (nested) result dict, keyed by its '/'-joined path."""
    out: dict[str, float] = {}
    for key, value in result.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten_scalars(value, name))
        elif isinstance(value, bool) or value is None:
            continue
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            if math.isfinite(number):
                out[name] = number
    return out


def _set_wandb_mode(tc: TrackingConfig) -> None:
    """WANDB_MODE for this process: wandb reads it, and Ray's W&B helpers skip the API-key check
    in offline / disabled mode only when it is set."""
    os.environ["WANDB_MODE"] = tc.wandb_mode


_MLFLOW_BAD = re.compile(r"[^0-9A-Za-z_\-. ]")


def _mlflow_key(key: str) -> str:
    """An MLflow metric name: `/` becomes `.` (the file store makes a directory of every `/`, so
    `train/loss` and `train/loss/python_code` could not both exist), and anything MLflow does not
    allow (alphanumerics, `_ - .` and spaces) becomes `_`."""
    return _MLFLOW_BAD.sub("_", key.replace("/", "."))


def _create_experiment(client: Any, name: str) -> str:
    """Create the MLflow experiment, tolerating a concurrent creator (runs started in parallel)."""
    try:
        return client.create_experiment(name)
    except Exception:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def _flat_params(data: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            out.update(_flat_params(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = json.dumps(data) if isinstance(data, (list, tuple)) else str(data)
    return out


def _wandb_save(run: Any, path: Path, name: str) -> None:
    """Copy a file or a directory's files into the W&B run's files, under `name/`."""
    dest = Path(run.dir) / name
    files = [f for f in path.rglob("*") if f.is_file()] if path.is_dir() else [path]
    for f in files:
        target = dest / (f.relative_to(path) if path.is_dir() else f.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, target)
        run.save(str(target), base_path=str(run.dir), policy="now")


# ------------------------------------------------------------------------------ ResultLogger


class ResultLogger:
    """Forward each iteration's flat scalars to TensorBoard and, when enabled, MLflow and W&B.

        with ResultLogger(cfg, run_dir, params=to_dict(cfg), resume=resume) as results:
            results.log(flatten_scalars(algo.train()), step=algo.iteration)

    `cfg` is an ExperimentConfig or a TrackingConfig. With `resume`, the MLflow and W&B runs
    recorded in `<run_dir>/tracking.json` are continued instead of new ones being started.
    `tensorboard` overrides `tracking.tensorboard` (False for a logger that only uploads artifacts).
    """

    def __init__(
        self,
        cfg: Any,
        run_dir: str | Path,
        *,
        run_name: str | None = None,
        params: dict[str, Any] | None = None,
        resume: bool = False,
        tensorboard: bool | None = None,
    ) -> None:
        self.tracking = _tracking(cfg)
        require_backends(self.tracking)  # fail before anything is opened
        self.tensorboard = self.tracking.tensorboard if tensorboard is None else tensorboard
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run_name = run_name or self.run_dir.name
        self._ids = self._read_ids() if resume else {}
        self._tb = self._mlflow = self._wandb = None
        try:
            if self.tensorboard:
                # lazy: torch + tensorboard (1.5 s); the CLI imports this module (via config.py)
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))
            if self.tracking.mlflow:
                self._mlflow = self._open_mlflow(params)
            if self.tracking.wandb:
                self._wandb = self._open_wandb(params)
        except BaseException:
            self.close("FAILED")
            raise
        self._write_ids()

    # -- backends
    def _open_mlflow(self, params: dict[str, Any] | None):
        # lazy: mlflow is optional (`pip install mlflow`), imported only when tracking.mlflow is on
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        uri = mlflow_tracking_uri(self.tracking, self.run_dir)
        client = MlflowClient(tracking_uri=uri)
        run_id = (
            self._ids.get("mlflow_run_id") if self._ids.get("mlflow_tracking_uri") == uri else None
        )
        if run_id:  # continue the run (its params are logged already)
            client.update_run(run_id, status="RUNNING")
        else:
            name = self.tracking.mlflow_experiment
            experiment = client.get_experiment_by_name(name)
            experiment_id = (
                experiment.experiment_id if experiment else _create_experiment(client, name)
            )
            run_id = client.create_run(
                experiment_id, run_name=self.run_name, tags={"run_dir": str(self.run_dir.resolve())}
            ).info.run_id
            flat = _flat_params(params or {})
            items = [Param(k, v[:MLFLOW_PARAM_CHARS]) for k, v in flat.items()]
            for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
                client.log_batch(run_id, params=items[i : i + 100])
        self._ids["mlflow_run_id"] = run_id
        self._ids["mlflow_tracking_uri"] = uri
        return client

    def _open_wandb(self, params: dict[str, Any] | None):
        # lazy: wandb is optional, imported only when tracking.wandb is on (Ray's helper imports it)
        from ray.air.integrations.wandb import setup_wandb

        _set_wandb_mode(self.tracking)
        run_id = self._ids.get("wandb_run_id") or uuid.uuid4().hex[:16]
        run = setup_wandb(
            config=params or {},
            rank_zero_only=True,
            project=self.tracking.wandb_project,
            mode=self.tracking.wandb_mode,
            dir=str(self.run_dir.resolve()),
            trial_id=run_id,
            trial_name=self.run_name,
            # Ray's helper asks for reinit=True, which finishes every other run of this process:
            # `jobs/compare.py` finishes several targets at once on driver threads, and one opening
            # its run would end another's mid-upload. Each logger holds its own run object instead.
            reinit="create_new",
        )
        self._ids["wandb_run_id"] = run_id
        return run

    def _read_ids(self) -> dict[str, str]:
        path = self.run_dir / TRACKING_FILE
        return json.loads(path.read_text()) if path.is_file() else {}

    def _write_ids(self) -> None:
        if self._ids:
            (self.run_dir / TRACKING_FILE).write_text(json.dumps(self._ids, indent=2) + "\n")

    # -- logging
    @property
    def backends(self) -> list[str]:
        return [
            name
            for name, h in (
                ("tensorboard", self._tb),
                ("mlflow", self._mlflow),
                ("wandb", self._wandb),
            )
            if h is not None
        ]

    def log(self, scalars: dict[str, Any], step: int) -> None:
        """Log every finite number of `scalars` (nested dicts are flattened) at `step`."""
        flat = flatten_scalars(scalars)
        if not flat:
            return
        if self._tb is not None:
            for key, value in flat.items():
                self._tb.add_scalar(key, value, step)
        if self._mlflow is not None:
            # lazy: mlflow is optional (see _open_mlflow)
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            metrics = [Metric(_mlflow_key(k), v, now, int(step)) for k, v in flat.items()]
            for i in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics per batch
                self._mlflow.log_batch(self._ids["mlflow_run_id"], metrics=metrics[i : i + 1000])
        if self._wandb is not None:
            self._wandb.log(flat, step=step)

    def log_artifacts(self, paths: dict[str, Any]) -> list[str]:
        """Upload artifacts: each key is an artifact folder, its value a file, a directory (its
        contents) or a list of files; None and missing paths are skipped. Returns the folders
        uploaded to."""
        done = []
        for name, value in paths.items():
            items = value if isinstance(value, (list, tuple)) else [value]
            items = [Path(x) for x in items if x is not None and Path(x).exists()]
            for path in items:
                if self._mlflow is not None:
                    run_id = self._ids["mlflow_run_id"]
                    if path.is_dir():
                        self._mlflow.log_artifacts(run_id, str(path), artifact_path=name)
                    else:
                        self._mlflow.log_artifact(run_id, str(path), artifact_path=name)
                if self._wandb is not None:
                    _wandb_save(self._wandb, path, name)
            if items and (self._mlflow is not None or self._wandb is not None):
                done.append(name)
        return done

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self, status: str = "FINISHED") -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._mlflow is not None:
            self._mlflow.set_terminated(self._ids["mlflow_run_id"], status=status)
            self._mlflow = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None

    def __enter__(self) -> ResultLogger:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.close("FAILED" if exc_type is not None else "FINISHED")

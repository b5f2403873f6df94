"""Experiment tracking: TensorBoard by default, MLflow and Weights & Biases when asked for.

The `tracking:` config section (`TrackingConfig`) says where results go. Nothing here needs the
network by default: TensorBoard writes event files under the run dir, MLflow (when enabled) a
file store at `file:<run_dir>/mlruns`, W&B (when enabled) an offline run under `<run_dir>/wandb`
(`wandb sync <run_dir>/wandb/offline-run-*` uploads it later). mlflow and wandb are optional
packages, imported only when enabled; a missing one is a `TrackingError` that names the
`pip install` command.

Three ways in, all built on Ray's own integrations (`ray.air.integrations.mlflow|wandb`):
  - `ResultLogger`: for our manual RLlib loop (`policies/run.py` calls `algo.train()` itself, not
    through Tune). `log(scalars, step)` forwards a flat scalar dict to every enabled backend; the
    MLflow and W&B runs are opened with `setup_mlflow` / `setup_wandb`, which work outside Tune.
  - `ray_logger_callbacks(cfg, run_dir)`: `MLflowLoggerCallback` / `WandbLoggerCallback` for
    `ray.tune.RunConfig(callbacks=...)` (Tune already writes TensorBoard files itself).
  - `train_callbacks(cfg, run_dir)`: for Ray Train v2's `ray.train.RunConfig(callbacks=...)`, which
    accepts only `ray.train.UserCallback`s (the Tune logger callbacks are refused there): a
    `TrackingCallback` that forwards rank 0's reported metrics to MLflow / W&B.

This module imports neither ray nor torch at import time (config.py imports `TrackingConfig`).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WANDB_MODES = ("offline", "online", "disabled")
TRACKING_FILE = "tracking.json"  # run ids, so --resume continues the same MLflow / W&B run


class TrackingError(ValueError):
    """Tracking is misconfigured, or an enabled backend's package is not installed."""


@dataclass
class TrackingConfig:
    """Where results are logged. TensorBoard is on by default; MLflow and W&B are opt-in."""

    tensorboard: bool = True  # event files under <run_dir>/tensorboard
    mlflow: bool = False  # needs `pip install mlflow` (or mlflow-skinny)
    mlflow_tracking_uri: str | None = None  # None = file:<run_dir>/mlruns (local, no server)
    mlflow_experiment: str = "acodm"
    wandb: bool = False  # needs `pip install wandb`
    wandb_project: str = "acodm"
    wandb_mode: str = "offline"  # offline | online | disabled; offline needs no account

    def __post_init__(self) -> None:
        from acodm_ray.config import ConfigError  # late: config.py imports this module

        if self.wandb_mode not in WANDB_MODES:
            raise ConfigError(f"tracking.wandb_mode must be one of {list(WANDB_MODES)}, got {self.wandb_mode!r}")
        for key in ("mlflow_experiment", "wandb_project"):
            if not getattr(self, key).strip():
                raise ConfigError(f"tracking.{key} must not be empty")
        if self.mlflow_tracking_uri is not None and not self.mlflow_tracking_uri.strip():
            raise ConfigError("tracking.mlflow_tracking_uri must be a URI or null (file:<run_dir>/mlruns)")


# ------------------------------------------------------------------------------------ helpers


def _tracking(cfg: Any) -> TrackingConfig:
    """A TrackingConfig from itself or from an ExperimentConfig."""
    tc = getattr(cfg, "tracking", cfg)
    if not isinstance(tc, TrackingConfig):
        raise TypeError(f"expected a TrackingConfig or an ExperimentConfig, got {type(cfg).__name__}")
    return tc


def require_backends(cfg: Any) -> None:
    """Raise TrackingError naming the install command for every enabled backend that is missing."""
    tc = _tracking(cfg)
    missing = [(pkg, key) for pkg, key, on in (("mlflow", "tracking.mlflow", tc.mlflow),
                                                 ("wandb", "tracking.wandb", tc.wandb))
               if on and importlib.util.find_spec(pkg) is None]
    if missing:
        raise TrackingError("; ".join(
            f"{key}=true but the {pkg} package is not installed: `pip install {pkg}` "
            f"(or set {key}=false)" for pkg, key in missing))


def mlflow_tracking_uri(cfg: Any, run_dir: str | Path | None) -> str:
    """The configured MLflow tracking URI, or a file store under the run dir."""
    tc = _tracking(cfg)
    if tc.mlflow_tracking_uri:
        return tc.mlflow_tracking_uri
    if run_dir is None:
        raise TrackingError("tracking.mlflow needs a run dir or tracking.mlflow_tracking_uri")
    # MLflow >= 3.? keeps its file store in maintenance mode and refuses it unless opted in; the
    # default here is a local, serverless store by design, so opt in (a chosen URI is left alone).
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return (Path(run_dir).expanduser().resolve() / "mlruns").as_uri()


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


_MLFLOW_BAD = re.compile(r"[^0-9A-Za-z_\-. /]")


def _mlflow_key(key: str) -> str:
    """MLflow metric names allow alphanumerics, `_ - . / ` and spaces; anything else becomes `_`."""
    return _MLFLOW_BAD.sub("_", key)


def _flat_params(data: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            out.update(_flat_params(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = json.dumps(data) if isinstance(data, (list, tuple)) else str(data)
    return out


# ------------------------------------------------------------------------------ ResultLogger


class ResultLogger:
    """Forward each iteration's flat scalars to TensorBoard and, when enabled, MLflow and W&B.

        with ResultLogger(cfg, run_dir, params=to_dict(cfg), resume=resume) as results:
            results.log(flatten_scalars(algo.train()), step=algo.iteration)

    `cfg` is an ExperimentConfig or a TrackingConfig. With `resume`, the MLflow and W&B runs
    recorded in `<run_dir>/tracking.json` are continued instead of new ones being started.
    """

    def __init__(
        self,
        cfg: Any,
        run_dir: str | Path,
        *,
        run_name: str | None = None,
        params: dict[str, Any] | None = None,
        resume: bool = False,
    ) -> None:
        self.tracking = _tracking(cfg)
        require_backends(self.tracking)  # fail before anything is opened
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run_name = run_name or self.run_dir.name
        self._ids = self._read_ids() if resume else {}
        self._tb = self._mlflow = self._wandb = None
        try:
            if self.tracking.tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))
            if self.tracking.mlflow:
                self._mlflow = self._open_mlflow(params)
            if self.tracking.wandb:
                self._wandb = self._open_wandb(params)
        except BaseException:
            self.close()
            raise
        self._write_ids()

    # -- backends
    def _open_mlflow(self, params: dict[str, Any] | None):
        uri = mlflow_tracking_uri(self.tracking, self.run_dir)
        run_id = self._ids.get("mlflow_run_id")
        if run_id:  # continue the run (its params are logged already)
            import mlflow

            mlflow.set_tracking_uri(uri)
            mlflow.start_run(run_id=run_id)
        else:
            from ray.air.integrations.mlflow import setup_mlflow

            mlflow = setup_mlflow(
                config=_flat_params(params or {}), tracking_uri=uri,
                experiment_name=self.tracking.mlflow_experiment, run_name=self.run_name,
                create_experiment_if_not_exists=True, tags={"run_dir": str(self.run_dir.resolve())},
            )
        self._ids["mlflow_run_id"] = mlflow.active_run().info.run_id
        self._ids["mlflow_tracking_uri"] = uri
        return mlflow

    def _open_wandb(self, params: dict[str, Any] | None):
        from ray.air.integrations.wandb import setup_wandb

        _set_wandb_mode(self.tracking)
        run_id = self._ids.get("wandb_run_id") or uuid.uuid4().hex[:16]
        run = setup_wandb(
            config=params or {}, rank_zero_only=True, project=self.tracking.wandb_project,
            mode=self.tracking.wandb_mode, dir=str(self.run_dir.resolve()),
            trial_id=run_id, trial_name=self.run_name,
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
        return [name for name, h in (("tensorboard", self._tb), ("mlflow", self._mlflow),
                                     ("wandb", self._wandb)) if h is not None]

    def log(self, scalars: dict[str, Any], step: int) -> None:
        """Log every finite number of `scalars` (nested dicts are flattened) at `step`."""
        flat = flatten_scalars(scalars)
        if not flat:
            return
        if self._tb is not None:
            for key, value in flat.items():
                self._tb.add_scalar(key, value, step)
        if self._mlflow is not None:
            self._mlflow.log_metrics({_mlflow_key(k): v for k, v in flat.items()}, step=step)
        if self._wandb is not None:
            self._wandb.log(flat, step=step)

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._mlflow is not None:
            self._mlflow.end_run()
            self._mlflow = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None

    def __enter__(self) -> ResultLogger:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ------------------------------------------------------------------- Tune and Train callbacks


def ray_logger_callbacks(cfg: Any, run_dir: str | Path | None = None) -> list:
    """Ray's MLflow / W&B logger callbacks for `ray.tune.RunConfig(callbacks=...)`, as enabled.

    Tune writes TensorBoard files on its own (tensorboardX is installed), so TensorBoard adds no
    callback. Ray Train v2's `ray.train.RunConfig` refuses these Tune callbacks: use
    `train_callbacks` there."""
    tc = _tracking(cfg)
    require_backends(tc)
    callbacks: list = []
    if tc.mlflow:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        callbacks.append(MLflowLoggerCallback(tracking_uri=mlflow_tracking_uri(tc, run_dir),
                                              experiment_name=tc.mlflow_experiment))
    if tc.wandb:
        from ray.air.integrations.wandb import WandbLoggerCallback

        _set_wandb_mode(tc)
        kwargs: dict[str, Any] = {"project": tc.wandb_project, "mode": tc.wandb_mode}
        if run_dir is not None:
            kwargs["dir"] = str(Path(run_dir).expanduser().resolve())
        callbacks.append(WandbLoggerCallback(**kwargs))
    return callbacks


def train_callbacks(cfg: Any, run_dir: str | Path, params: dict[str, Any] | None = None) -> list:
    """`ray.train.RunConfig(callbacks=...)` for Ray Train v2: a `TrackingCallback` forwarding rank
    0's `ray.train.report` metrics to MLflow / W&B, or [] when neither is enabled (TensorBoard is
    written by the training loop's rank 0 itself)."""
    tc = _tracking(cfg)
    if not (tc.mlflow or tc.wandb):
        return []
    require_backends(tc)
    return [__getattr__("TrackingCallback")(tc, str(run_dir), params)]


_TRAIN_CALLBACK: type | None = None


def _make_train_callback() -> type:
    from dataclasses import replace

    from ray.train import UserCallback

    class TrackingCallback(UserCallback):
        """Runs in the Ray Train controller; opens its ResultLogger on the first report."""

        def __init__(self, tracking: TrackingConfig, run_dir: str, params: dict[str, Any] | None = None):
            self.tracking = replace(tracking, tensorboard=False)
            self.run_dir = run_dir
            self.params = params
            self._logger: ResultLogger | None = None
            self._count = 0

        def __getstate__(self) -> dict[str, Any]:
            return {**self.__dict__, "_logger": None}

        def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
            if not metrics:
                return
            if self._logger is None:
                import atexit

                resume = (Path(self.run_dir) / TRACKING_FILE).is_file()
                self._logger = ResultLogger(self.tracking, self.run_dir, params=self.params, resume=resume)
                atexit.register(self.close)
            self._count += 1
            rank0 = metrics[0] or {}
            step = rank0.get("step", self._count)
            self._logger.log({k: v for k, v in rank0.items() if k != "step"}, step=int(step))

        def close(self) -> None:
            if self._logger is not None:
                self._logger.close()
                self._logger = None

    TrackingCallback.__module__ = __name__
    TrackingCallback.__qualname__ = "TrackingCallback"
    return TrackingCallback


def __getattr__(name: str) -> Any:
    """`TrackingCallback` is built on first use, so importing this module does not import Ray."""
    global _TRAIN_CALLBACK
    if name == "TrackingCallback":
        if _TRAIN_CALLBACK is None:
            _TRAIN_CALLBACK = _make_train_callback()
        return _TRAIN_CALLBACK
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

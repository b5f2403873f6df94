"""`PolicyClient`: rank 0's view of the target run's `PolicyServer` (acodm_ray/policy_server.py).

If the server is unreachable (actor dead, call timed out) training keeps the LAST weights and logs a
warning -- it never switches to another mixer -- and the client looks the server up again by name at
later decisions. Imports Ray core only, never RLlib.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import ray
import ray.exceptions as rex

from acodm_ray.policy_server import (
    DEFAULT_NAME,
    DEFAULT_NAMESPACE,
    PolicyServerUnavailable,
    get_policy_server,
    signals_to_dict,
)
from acodm_ray.step_signals import StepSignals

log = logging.getLogger("acodm_ray.policy_server")


def _unreachable_errors() -> tuple[type[BaseException], ...]:
    return (rex.RayActorError, rex.GetTimeoutError, rex.ActorUnavailableError)


class PolicyClient:
    """Rank 0's view of the server. `weights()` falls back to the last weights when the server is
    unreachable; `update()` is fire-and-forget (Ray runs one caller's calls to an actor in order, so
    a later `weights` sees every earlier update) and skipped for mixers that do not learn."""

    def __init__(
        self,
        handle,
        name: str = DEFAULT_NAME,
        namespace: str = DEFAULT_NAMESPACE,
        timeout_s: float = 30.0,
    ) -> None:
        self.handle = handle
        self.name = name
        self.namespace = namespace
        self.timeout_s = timeout_s
        self.available = handle is not None
        self.failures = 0
        self.last_weights: np.ndarray | None = None
        self.last_error: str | None = None
        self._pending: list = []
        self.description = self._call("describe") if handle is not None else None
        self.learns = bool(self.description and self.description["learns"])
        # a static mixer's weights never change: ask once, then train without round trips
        self.static = bool(self.description and self.description.get("static"))

    # -- plumbing

    def _mark_unreachable(self, err: BaseException, what: str) -> None:
        self.failures += 1
        self.last_error = f"{type(err).__name__}: {err}".splitlines()[0][:300]
        if self.available:
            log.warning(
                "policy server %r unreachable during %s (%s); training continues with the LAST weights %s "
                "(the mixer is NOT switched)",
                self.name,
                what,
                self.last_error,
                None if self.last_weights is None else np.round(self.last_weights, 4).tolist(),
            )
        self.available = False
        self.handle = None
        self._pending.clear()

    def _reconnect(self) -> bool:
        handle = get_policy_server(self.name, self.namespace)
        if handle is None:
            return False
        try:
            desc = ray.get(handle.describe.remote(), timeout=self.timeout_s)
        except _unreachable_errors():
            return False
        if self.description is not None and desc["identity"] != self.description["identity"]:
            log.warning(
                "a server named %r is back but serves another mixer (%s); keeping the last weights",
                self.name,
                desc["mixer"],
            )
            return False
        if self.description is None:
            self.description = desc
            self.learns, self.static = bool(desc["learns"]), bool(desc.get("static"))
        self.handle = handle
        self.available = True
        log.warning("policy server %r is reachable again", self.name)
        return True

    def _call(self, method: str, *args, wait_pending: bool = True):
        """Call `method` on the server (after the pending updates); None if unreachable."""
        if self.handle is None and not self._reconnect():
            return None
        try:
            ref = getattr(self.handle, method).remote(*args)
            refs = (self._pending if wait_pending else []) + [ref]
            out = ray.get(refs, timeout=self.timeout_s)[-1]
            if wait_pending:
                self._pending.clear()
            return out
        except _unreachable_errors() as err:
            self._mark_unreachable(err, method)
            return None

    # -- the mixer interface, remote

    def weights(self, state: np.ndarray) -> tuple[np.ndarray, bool]:
        """(weights, fresh): fresh is False when the server did not answer and these are the last
        weights. Raises PolicyServerUnavailable if there are no last weights yet."""
        if self.static and self.last_weights is not None:
            return self.last_weights.copy(), True
        out = self._call("weights", np.asarray(state, dtype=np.float32))
        if out is not None:
            self.last_weights = np.asarray(out, dtype=np.float64)
            return self.last_weights.copy(), True
        if self.last_weights is None:
            raise PolicyServerUnavailable(
                f"policy server {self.name!r} (namespace {self.namespace!r}) is unreachable and no weights "
                f"were received yet ({self.last_error})"
            )
        return self.last_weights.copy(), False

    def update(self, signals: StepSignals) -> None:
        if not self.learns:
            return
        if self.handle is None:
            return  # the mixer cannot learn while it is unreachable; weights stay the last ones
        try:
            self._pending.append(self.handle.update.remote(signals_to_dict(signals)))
        except _unreachable_errors() as err:
            self._mark_unreachable(err, "update")

    def state_dict(self) -> dict[str, Any] | None:
        return self._call("state_dict")

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        return self._call("load_state_dict", state) is not None or self.available

    def reset(self) -> bool:
        return self._call("reset") is not None or self.available

    def describe(self) -> dict[str, Any] | None:
        return self._call("describe")

    def kill(self) -> None:
        """Test hook: kill the server actor (simulates a lost server)."""
        if self.handle is not None:
            ray.kill(self.handle, no_restart=True)
            time.sleep(0.1)

"""The AC-ODM TorchLearner: one Adam per network, each stepped by its own loss.

RLlib's default `TorchLearner.compute_gradients` back-propagates the SUM of the losses once and
then steps every optimizer. Here every optimizer gets the gradient of its own loss only (actor:
DDPG or imitation loss; critic: TD or warm-up regression), and the actor loss is computed with
detached critic parameters besides -- the reference code's slip (stepping the critic's optimizer
with the actor's loss) cannot happen.

Target networks: none are touched during warm-up (its losses do not use them); after the last
warm-up update they are hard-copied from the online networks (tau = 1) once, then Polyak-updated
with `config.tau` after every update.
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core.learner.learner import Learner
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.core.rl_module.apis import TargetNetworkAPI
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import ALL_MODULES, NUM_TARGET_UPDATES
from ray.rllib.utils.typing import ModuleID, ParamDict, TensorType

from acodm_ray.agent import ddpg
from policies.acodm.rl_module import (
    ACTOR_LOSS,
    CRITIC_LOSS,
    IN_WARMUP,
    OPTIMUM_GAP,
    TD_ERROR,
    TEMPERATURE,
    VALUE_SPREAD,
    WEIGHT_ENTROPY,
    ACODMTorchRLModule,
)

ACTOR_OPTIM = "actor"
CRITIC_OPTIM = "critic"
NUM_UPDATES = "num_updates"
TARGET_HARD_COPIES = "target_hard_copies"


class ACODMTorchLearner(TorchLearner):
    @override(Learner)
    def build(self) -> None:
        super().build()
        self.module.foreach_module(
            lambda mid, mod: (
                mod.make_target_networks() if isinstance(mod, TargetNetworkAPI) else None
            )
        )
        # (module_id, optimizer name) -> loss tensor of the current update.
        self._temp_losses: dict[tuple[ModuleID, str], TensorType] = {}

    @override(Learner)
    def add_module(
        self, *, module_id, module_spec, config_overrides=None, new_should_module_be_updated=None
    ):
        spec = super().add_module(
            module_id=module_id,
            module_spec=module_spec,
            config_overrides=config_overrides,
            new_should_module_be_updated=new_should_module_be_updated,
        )
        mod = self.module[module_id].unwrapped()
        if isinstance(mod, TargetNetworkAPI):
            mod.make_target_networks()
        return spec

    @classmethod
    @override(Learner)
    def rl_module_required_apis(cls) -> list[type]:
        return [TargetNetworkAPI]

    @override(TorchLearner)
    def configure_optimizers_for_module(
        self, module_id: ModuleID, config: AlgorithmConfig = None
    ) -> None:
        module = self._module[module_id].unwrapped()
        actor_params = self.get_parameters(module.actor)
        critic_params = self.get_parameters(module.critic)
        self.register_optimizer(
            module_id=module_id,
            optimizer_name=ACTOR_OPTIM,
            optimizer=torch.optim.Adam(actor_params),
            params=actor_params,
            lr_or_lr_schedule=config.actor_lr,
        )
        self.register_optimizer(
            module_id=module_id,
            optimizer_name=CRITIC_OPTIM,
            optimizer=torch.optim.Adam(critic_params),
            params=critic_params,
            lr_or_lr_schedule=config.critic_lr,
        )

    @override(Learner)
    def compute_loss_for_module(
        self,
        *,
        module_id: ModuleID,
        config: AlgorithmConfig,
        batch: dict[str, Any],
        fwd_out: dict[str, TensorType],
    ) -> TensorType:
        a_loss = fwd_out[ACTOR_LOSS]
        c_loss = fwd_out[CRITIC_LOSS]
        self._temp_losses[(module_id, ACTOR_OPTIM)] = a_loss
        self._temp_losses[(module_id, CRITIC_OPTIM)] = c_loss
        self.metrics.log_dict(
            {
                "actor_loss": a_loss,
                "critic_loss": c_loss,
                "in_warmup": float(fwd_out[IN_WARMUP]),
                "mean_abs_td_error": float(fwd_out[TD_ERROR]),  # not "td_error": DQN reads that key
                "weight_entropy": float(fwd_out[WEIGHT_ENTROPY]),
                "value_spread": float(fwd_out[VALUE_SPREAD]),
                "temperature": float(fwd_out[TEMPERATURE]),
                "optimum_gap": float(fwd_out[OPTIMUM_GAP]),
            },
            key=module_id,
            window=1,
        )
        return a_loss + c_loss

    @override(TorchLearner)
    def compute_gradients(self, loss_per_module: dict[ModuleID, TensorType], **kwargs) -> ParamDict:
        """Back-propagate each optimizer's own loss and keep only that optimizer's gradients."""
        grads: ParamDict = {}
        for module_id in set(loss_per_module) - {ALL_MODULES}:
            for optim_name, optim in self.get_optimizers_for_module(module_id):
                # Clears whatever an earlier loss may have left on these parameters.
                optim.zero_grad(set_to_none=True)
                loss = self._temp_losses.pop((module_id, optim_name))
                if loss.requires_grad:
                    loss.backward(retain_graph=True)
                sq = 0.0
                for ref, param in self.filter_param_dict_for_optimizer(self._params, optim).items():
                    if param.grad is not None:
                        # A copy: a later backward must not accumulate into this optimizer's grads.
                        grads[ref] = param.grad.detach().clone()
                        sq += float(param.grad.detach().pow(2).sum())
                self.metrics.log_value((module_id, f"{optim_name}_grad_norm"), sq**0.5, window=1)
        self._temp_losses.clear()
        # Leave no stray .grad behind: `apply_gradients` installs exactly the grads returned here.
        for optim in self._optimizer_parameters:
            optim.zero_grad(set_to_none=True)
        return grads

    @override(TorchLearner)
    def after_gradient_based_update(self, *, timesteps: dict[str, Any]) -> None:
        """Advance the update count; hard-copy targets at the end of warm-up, else Polyak."""
        super().after_gradient_based_update(timesteps=timesteps)
        for module_id, module in self.module._rl_modules.items():
            mod = module.unwrapped()
            if not isinstance(mod, ACODMTorchRLModule):
                continue
            config = self.config.get_config_for_module(module_id)
            mod.num_updates += 1
            done = int(mod.num_updates.item())
            warmup = mod.warmup_updates  # the module's own setting decides its losses too
            if done < warmup:
                tau = None  # targets are unused during warm-up
            elif done == warmup:
                tau = 1.0  # warm-up just ended: targets = online networks
                self.metrics.log_value((module_id, TARGET_HARD_COPIES), 1, reduce="lifetime_sum")
            else:
                tau = float(config.tau)
            if tau is not None:
                for main_net, target_net in mod.get_target_network_pairs():
                    ddpg.soft_update(target_net, main_net, tau)
                self.metrics.log_value((module_id, NUM_TARGET_UPDATES), 1, reduce="lifetime_sum")
            self.metrics.log_value((module_id, NUM_UPDATES), done, reduce="max")

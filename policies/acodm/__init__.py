"""AC-ODM on RLlib's new API stack: config/algorithm, RLModule, learner, learner connector."""

from policies.acodm.acodm import ACODM, ACODMConfig, acodm_config_from
from policies.acodm.rl_module import ACODMTorchRLModule

__all__ = ["ACODM", "ACODMConfig", "ACODMTorchRLModule", "acodm_config_from"]

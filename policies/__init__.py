"""The RLlib side of acodm-ray: the AC-ODM algorithm (policies.acodm), the registry mapping
`--algo acodm|ppo|sac|appo` to AlgorithmConfigs (policies.registry) and the export of the trained
actor to a standalone policy file (policies.export). Only this package imports RLlib."""

from policies.registry import ALGOS, build_algo_config

__all__ = ["ALGOS", "build_algo_config"]

"""acodm-ray: actor-critic online data mixing (AC-ODM) for LM pretraining, on Ray.

This core package holds everything the jobs, the environment and the RLlib policies share; it
never imports RLlib.
"""

__version__ = "0.1.0"

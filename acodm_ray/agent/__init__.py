"""Pure-torch AC-ODM agent pieces (networks, DDPG losses, policy files); no RLlib import here."""

"""Learner connector: per-domain vector rewards and executed weights into the train batch.

A replay-buffer sample of a 1-step transition (s, a, r, s') carries infos [info_t, info_t+1];
`info_t+1` is the one the env returned together with s' -- the transition's own. The stock
`AddInfosFromEpisodesToTrainBatch` takes `info_t` (the previous step's), so this piece reads the
episode's infos from index 1 on:
  - info["scores"]  -> batch["vector_rewards"] (float32[K]): the vector critic's reward, NaN where
    info["scored"] is 0 (the domain was not scored: the critic loss masks it out);
  - info["weights"] -> batch[ACTIONS]: the weights actually executed. They differ from the
    module's output during the env's warm-up (ODM chose them) and by the env's renormalisation;
    the executed weights are always the truth for Q(s, a) and for the imitation target.
It must run after `AddObservationsFromEpisodesToBatch` (which gives every sampled episode the
unique id that batch rows are grouped by) and before `AddColumnsFromEpisodesToTrainBatch` (which
then finds ACTIONS present and leaves them alone); ACODMConfig.build_learner_connector puts it there.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModule
from ray.rllib.utils.annotations import override
from ray.rllib.utils.typing import EpisodeType

from policies.acodm.rl_module import BEHAVIOUR_WARMUP, VECTOR_REWARDS

SCORES_KEY = "scores"
SCORED_KEY = "scored"
WEIGHTS_KEY = "weights"
WARMUP_KEY = "warmup"


class AddVectorRewardsAndExecutedActions(ConnectorV2):
    """Adds `vector_rewards`, executed-weight `actions` and `behaviour_warmup` columns."""

    @override(ConnectorV2)
    def __call__(
        self,
        *,
        rl_module: RLModule,
        batch: dict[str, Any],
        episodes: list[EpisodeType],
        explore: bool | None = None,
        shared_data: dict | None = None,
        **kwargs,
    ) -> Any:
        for sa_episode in self.single_agent_episode_iterator(
            episodes, agents_that_stepped_only=False
        ):
            n = len(sa_episode)
            if n == 0:
                continue
            # infos[i + 1] was returned with observation i + 1, i.e. by the step taking action i.
            own_infos = sa_episode.get_infos(slice(1, n + 1))
            actions = sa_episode.get_actions(slice(0, n))
            scores, executed, warm = [], [], []
            for i, info in enumerate(own_infos):
                if not isinstance(info, dict) or SCORES_KEY not in info:
                    raise KeyError(
                        "AC-ODM needs the per-domain reward vector in info['scores'] of every "
                        f"env step; got info keys {sorted(info) if isinstance(info, dict) else info!r}"
                    )
                vector = np.asarray(info[SCORES_KEY], dtype=np.float32)
                if SCORED_KEY in info:
                    vector = np.where(np.asarray(info[SCORED_KEY]) > 0, vector, np.float32(np.nan))
                scores.append(vector)
                w = info.get(WEIGHTS_KEY)
                executed.append(np.asarray(actions[i] if w is None else w, dtype=np.float32))
                warm.append(bool(info.get(WARMUP_KEY, False)))
            self.add_n_batch_items(
                batch,
                VECTOR_REWARDS,
                items_to_add=scores,
                num_items=n,
                single_agent_episode=sa_episode,
            )
            self.add_n_batch_items(
                batch,
                Columns.ACTIONS,
                items_to_add=executed,
                num_items=n,
                single_agent_episode=sa_episode,
            )
            self.add_n_batch_items(
                batch,
                BEHAVIOUR_WARMUP,
                items_to_add=warm,
                num_items=n,
                single_agent_episode=sa_episode,
            )
        return batch

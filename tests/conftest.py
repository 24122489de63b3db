import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from sb3_elmur import TMaze


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


class DictTMaze(gym.Wrapper):
    """T-Maze with a Dict observation (a Box and a Discrete part)."""

    def __init__(self, corridor_length: int = 10):
        super().__init__(TMaze(corridor_length))
        self.observation_space = spaces.Dict(
            {"vector": spaces.Box(0.0, 1.0, (2,), np.float32), "junction": spaces.Discrete(2)}
        )

    def _convert(self, obs):
        return {"vector": obs[:2], "junction": int(obs[2])}

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return self._convert(obs), info

    def step(self, action):
        obs, *rest = self.env.step(action)
        return (self._convert(obs), *rest)


def zoo_optimize_arguments(timesteps: int, *params: str) -> list[str]:
    """``rl_zoo3.train`` arguments of a tiny random search: study ``s``, two trials of ``timesteps`` steps on one
    env, one evaluation of two episodes each, no pruning or plots; ``params`` are more ``-params`` entries."""
    return [
        "-optimize",
        "--study-name",
        "s",
        "--max-total-trials",
        "2",
        "-n",
        str(timesteps),
        "--n-evaluations",
        "1",
        "--eval-episodes",
        "2",
        "--sampler",
        "random",
        "--pruner",
        "none",
        "--no-optim-plots",
        "-params",
        "n_envs:1",
        *params,
    ]

"""A passive T-Maze (Ni et al. 2023, "When do transformers shine in RL?"): memory without credit assignment."""

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

MOVE_ON, UP, DOWN = 0, 1, 2


class TMaze(gym.Env):
    """Passive T-Maze: remember the cue of the first observation until the junction at the corridor's end.

    Observation ``[cue_up, cue_down, at_junction]``: the cue (one of the first two entries is 1) is shown only in
    the first observation; the corridor looks the same everywhere (no position); the last entry is 1 at the
    junction. Actions: 0 move on, 1 up, 2 down. In the corridor, up/down waste a step and cost
    ``1 / corridor_length``; at the junction, up/down end the episode with reward 1 if they match the cue
    (``info["is_success"] = True``) and 0 otherwise. The episode is truncated after ``corridor_length + 1`` steps,
    so the optimal policy moves on ``corridor_length`` times and then turns to the cue: it must hold the cue for
    ``corridor_length`` steps. The cue is drawn at each reset; ``reset(options={"cue": UP})`` (or ``DOWN``) sets it.

    :param corridor_length: steps from the start to the junction
    :param last_step_terminates: end the episode at the time limit as terminated instead of truncated: the limit is
        part of the task, so PPO does not bootstrap a value beyond it (with truncation, moving on at the junction is
        valued as if the agent could still turn at a next step)
    :param render_mode: ``"rgb_array"`` to render frames (corridor in grey, agent in white, cue arm in green)
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}  # type: ignore[misc]

    def __init__(self, corridor_length: int = 10, render_mode: str | None = None, last_step_terminates: bool = False):
        if corridor_length < 1:
            raise ValueError(f"corridor_length must be >= 1, got {corridor_length}")
        self.corridor_length = corridor_length
        self.last_step_terminates = last_step_terminates
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0.0, 1.0, shape=(3,), dtype=np.float32)
        self.action_space = spaces.Discrete(3)
        self._position = 0
        self._steps = 0
        self._cue = UP

    def _observation(self) -> np.ndarray:
        obs = np.zeros(3, dtype=np.float32)
        if self._steps == 0:
            obs[self._cue - 1] = 1.0
        obs[2] = float(self._position == self.corridor_length)
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._position, self._steps = 0, 0
        cue = (options or {}).get("cue")
        if cue is not None and cue not in (UP, DOWN):
            raise ValueError(f"the cue must be UP ({UP}) or DOWN ({DOWN}), got {cue!r}")
        self._cue = int(self.np_random.choice([UP, DOWN]) if cue is None else cue)
        return self._observation(), {}

    def step(self, action: int):
        action = int(action)
        self._steps += 1
        at_junction = self._position == self.corridor_length
        reward, terminated, success = 0.0, False, False
        if at_junction and action != MOVE_ON:
            terminated, success = True, action == self._cue
            reward = float(success)
        elif action == MOVE_ON and not at_junction:
            self._position += 1
        else:
            reward = -1.0 / self.corridor_length
        out_of_time = not terminated and self._steps >= self.corridor_length + 1
        terminated = terminated or (out_of_time and self.last_step_terminates)
        truncated = out_of_time and not self.last_step_terminates
        info = {"is_success": success} if terminated or truncated else {}
        return self._observation(), reward, terminated, truncated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        cells, scale = min(self.corridor_length + 1, 64), 8  # long corridors are drawn to scale in 64 cells
        frame = np.zeros((3, cells, 3), dtype=np.uint8)
        frame[1, :] = 80
        frame[[0, 2], -1] = 80
        frame[0 if self._cue == UP else 2, -1] = (0, 160, 0)
        frame[1, round(self._position / self.corridor_length * (cells - 1))] = 255
        return np.kron(frame, np.ones((scale, scale, 1), dtype=np.uint8))


class SampledTMaze(TMaze):
    """Passive T-Maze whose corridor length is drawn uniformly from ``[min_length, max_length]`` at every reset.

    :param max_length: longest corridor
    :param min_length: shortest corridor
    """

    def __init__(
        self,
        max_length: int = 30,
        min_length: int = 1,
        render_mode: str | None = None,
        last_step_terminates: bool = False,
    ):
        if not 1 <= min_length <= max_length:
            raise ValueError(f"need 1 <= min_length <= max_length, got {min_length}, {max_length}")
        super().__init__(max_length, render_mode, last_step_terminates)
        self.min_length, self.max_length = min_length, max_length

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        _, info = super().reset(seed=seed, options=options)
        self.corridor_length = int(self.np_random.integers(self.min_length, self.max_length + 1))
        return self._observation(), info  # the first observation does not depend on the length (cue only)


class SuccessOnPositiveReward(gym.Wrapper):
    """Report ``info["is_success"]`` at the end of each episode: true when the last reward was positive (MiniGrid:
    a reward only for reaching the goal)."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            info = {**info, "is_success": reward > 0}
        return obs, reward, terminated, truncated, info


def register_envs() -> None:
    """Register ``PassiveTMaze-v0`` (kwarg ``corridor_length``, default 10), ``PassiveTMaze30-v0`` (corridor 30 by
    default: the RL Zoo keys its tuned entries by env id, one per corridor length) and ``SampledTMaze-v0`` (a corridor
    length drawn per episode: kwargs ``max_length``, ``min_length``)."""
    if "PassiveTMaze-v0" not in gym.registry:
        gym.register(id="PassiveTMaze-v0", entry_point="sb3_elmur.envs:TMaze")
    if "PassiveTMaze30-v0" not in gym.registry:
        gym.register(id="PassiveTMaze30-v0", entry_point="sb3_elmur.envs:TMaze", kwargs={"corridor_length": 30})
    if "SampledTMaze-v0" not in gym.registry:  # kwargs max_length, min_length
        gym.register(id="SampledTMaze-v0", entry_point="sb3_elmur.envs:SampledTMaze")

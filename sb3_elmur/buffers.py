"""Rollout buffer that hands PPO whole-segment training sequences with the memory they start from."""

import itertools
from collections.abc import Generator
from typing import NamedTuple, cast

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.type_aliases import PyTorchObs

from sb3_elmur.model import ElmurConfig, SegmentStart
from sb3_elmur.policies import Observations, map_observations


class ElmurSequenceSamples(NamedTuple):
    """A minibatch of B training sequences of S segments of L steps; per-step fields are (B * S * L, ...)."""

    observations: PyTorchObs
    actions: th.Tensor
    old_values: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    returns: th.Tensor
    previous_actions: th.Tensor  # (B * S * L, A) the action taken at the step before each token (its input)
    loss_mask: th.Tensor  # (B * S * L,) true for steps of this rollout (not padding, not the previous rollout's)
    start: SegmentStart  # memory, anchors and the cached keys and values before each sequence
    start_step: th.Tensor  # (B, S) episode step of each segment's first token
    episode_start: th.Tensor  # (B, S) the segment begins an episode
    valid: th.Tensor  # (B, S, L) real tokens


class ElmurRolloutBuffer(RolloutBuffer):
    """PPO rollout buffer for ELMUR policies (Box and Dict observations alike).

    Besides SB3's per-step data it keeps, per step, the episode step of the observation; per environment, the
    observations of the current segment so far (carried from one rollout to the next: the next rollout's "prefix");
    and the :class:`~sb3_elmur.model.SegmentStart` (memory, the cached keys and values before it) at the start of
    every segment the rollout touches. :meth:`get` cuts each environment's rollout (after its prefix, which
    carries no loss) into segments on each episode's own grid, groups ``sequence_segments`` consecutive segments
    into a training sequence, and yields shuffled minibatches of whole sequences (as many minibatches as SB3's PPO
    makes of the rollout for the same ``batch_size``).

    :param elmur_config: the policy's ELMUR configuration (its segment length L)
    :param sequence_segments: segments per training sequence (the truncation of backpropagation through memory)
    :param previous_action_dim: size A of the encoded previous action each step's input sees (0: none), kept per
        step and per segment as the observations are
    """

    observations: Observations  # type: ignore[assignment]
    # the per-step arrays as rows of training tokens (see _flat), made by get
    flat_observations: Observations
    flat_previous_actions: np.ndarray
    flat_actions: np.ndarray
    flat_values: np.ndarray
    flat_log_probs: np.ndarray
    flat_advantages: np.ndarray
    flat_returns: np.ndarray

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        gae_lambda: float = 1,
        gamma: float = 0.99,
        n_envs: int = 1,
        elmur_config: ElmurConfig | None = None,
        sequence_segments: int = 4,
        previous_action_dim: int = 0,
    ):
        elmur_config = elmur_config or ElmurConfig()
        self.segment_len = elmur_config.segment_len
        self.sequence_segments = sequence_segments
        self.previous_action_dim = previous_action_dim
        super().__init__(buffer_size, observation_space, action_space, device, gae_lambda, gamma, n_envs)
        self.segment_observations = self._zeros(n_envs, max(self.segment_len - 1, 0))
        self.segment_previous_actions = self._zero_actions(n_envs, max(self.segment_len - 1, 0))

    def _zeros(self, *leading: int) -> Observations:
        shape = self.obs_shape
        if isinstance(shape, dict):
            space = self.observation_space.spaces
            return {k: np.zeros((*leading, *s), dtype=space[k].dtype) for k, s in shape.items()}
        return np.zeros((*leading, *shape), dtype=self.observation_space.dtype)

    def _zero_actions(self, *leading: int) -> np.ndarray:
        """Encoded previous actions (..., A), all zero (an episode's first step sees no action)."""
        return np.zeros((*leading, self.previous_action_dim), dtype=np.float32)

    def reset(self) -> None:
        T, E = self.buffer_size, self.n_envs
        self.observations = self._zeros(T, E)
        self.actions = np.zeros((T, E, self.action_dim), dtype=self.action_space.dtype)
        for name in ("rewards", "returns", "episode_starts", "values", "log_probs", "advantages"):
            setattr(self, name, np.zeros((T, E), dtype=np.float32))
        self.episode_steps = np.zeros((T, E), dtype=np.int64)
        self.previous_actions = self._zero_actions(T, E)
        self.prefix_observations = self._zeros(E, max(self.segment_len - 1, 0))
        self.prefix_previous_actions = self._zero_actions(E, max(self.segment_len - 1, 0))
        self.prefix_len = np.zeros(E, dtype=np.int64)
        self.memory_index = np.full((T, E), -1, dtype=np.int64)
        self._segment_starts: list[SegmentStart] = []
        self._n_memories = 0
        self.generator_ready = False
        self.pos, self.full = 0, False

    def start_rollout(self, episode_step: np.ndarray) -> None:
        """Keep each environment's observations of its current segment so far (``episode_step``: (n_envs,) step of
        the rollout's first observation); they begin the rollout's first training sequence without loss."""
        self.prefix_len = episode_step % self.segment_len
        self.prefix_observations = map_observations(np.copy, self.segment_observations)
        self.prefix_previous_actions = self.segment_previous_actions.copy()

    def add_segment_starts(self, start: SegmentStart, episode_step: np.ndarray) -> None:
        """Store the segment start (memory, the cached keys and values before it) of the environments whose segment
        starts at this step (all of them at the rollout's first step)."""
        envs = np.arange(self.n_envs) if self.pos == 0 else np.flatnonzero(episode_step % self.segment_len == 0)
        if len(envs) == 0:
            return
        rows = th.as_tensor(envs, device=start.memory.device)
        self._segment_starts.append(SegmentStart(*(a[rows] for a in start)))
        self.memory_index[self.pos, envs] = self._n_memories + np.arange(len(envs))
        self._n_memories += len(envs)

    def add(  # type: ignore[override]
        self,
        obs: Observations,
        action: np.ndarray,
        reward: np.ndarray,
        episode_start: np.ndarray,
        value: th.Tensor,
        log_prob: th.Tensor,
        episode_step: np.ndarray,
        previous_action: np.ndarray,
    ) -> None:
        """SB3's per-step data plus the episode step of ``obs`` (n_envs,) and the previous action (n_envs, A) that
        its step's input saw."""
        shape = self.obs_shape
        if isinstance(obs, dict):
            shapes = cast(dict[str, tuple[int, ...]], shape)
            for key in self.observations:
                self.observations[key][self.pos] = np.asarray(obs[key]).reshape((self.n_envs, *shapes[key]))
        else:
            self.observations[self.pos] = np.asarray(obs).reshape((self.n_envs, *shape))  # type: ignore[index]
        self.episode_steps[self.pos] = episode_step
        position = episode_step % self.segment_len
        envs = np.flatnonzero(position < self.segment_len - 1)  # keep the current segment's observations so far
        if isinstance(self.observations, dict):
            for key, cache in self.segment_observations.items():  # type: ignore[union-attr]
                cache[envs, position[envs]] = self.observations[key][self.pos, envs]
        else:
            self.segment_observations[envs, position[envs]] = self.observations[self.pos, envs]  # type: ignore[index]
        self.previous_actions[self.pos] = previous_action
        self.segment_previous_actions[envs, position[envs]] = previous_action[envs]
        self.actions[self.pos] = np.asarray(action).reshape((self.n_envs, self.action_dim))
        self.rewards[self.pos] = np.asarray(reward)
        self.episode_starts[self.pos] = np.asarray(episode_start)
        self.values[self.pos] = value.clone().cpu().numpy().flatten()
        self.log_probs[self.pos] = log_prob.clone().cpu().numpy()
        self.pos += 1
        self.full = self.pos == self.buffer_size

    # --- training sequences ---------------------------------------------------------------------------------------

    def _build_sequences(self) -> None:
        """Cut each env's rollout into sequences of S consecutive segments (the last one padded).

        Segments follow the episodes' own grid (step t in segment t // L), so an episode start opens a new segment;
        the previous rollout's steps of the first segment (the prefix) are included without loss. Each sequence
        gets its token index (into the flat per-step arrays), per-segment start step and episode-start flag, and
        the stored segment start (memory, the cached keys and values before it) at its first segment.
        """
        L, S, T, E = self.segment_len, self.sequence_segments, self.buffer_size, self.n_envs
        n_tokens = T * E  # flat index e * T + i for step i of env e; then the prefixes; then one padding row
        self.n_loss_tokens, self.pad_index = n_tokens, n_tokens + E * max(L - 1, 0)
        index, start_step, memory_at = [], [], []
        for e in range(E):
            prefix = int(self.prefix_len[e])
            tokens = np.concatenate([n_tokens + e * (L - 1) + np.arange(prefix), e * T + np.arange(T)])
            steps = np.concatenate([self.episode_steps[0, e] - prefix + np.arange(prefix), self.episode_steps[:, e]])
            segment_starts = np.union1d([0], np.flatnonzero(steps % L == 0))
            n_sequences = -(-len(segment_starts) // S)
            env_index = np.full((n_sequences, S, L), self.pad_index, dtype=np.int64)
            env_start_step = np.full((n_sequences, S), -1, dtype=np.int64)  # -1: padding segment
            for k, (a, b) in enumerate(itertools.pairwise(np.append(segment_starts, len(tokens)))):
                env_index[k // S, k % S, : b - a] = tokens[a:b]
                env_start_step[k // S, k % S] = steps[a]
            index.append(env_index)
            start_step.append(env_start_step)
            memory_at.append(self.memory_index[np.maximum(segment_starts[::S] - prefix, 0), e])
        self.sequence_index = np.concatenate(index)
        self.sequence_start_step = np.concatenate(start_step)
        self.sequence_memory = np.concatenate(memory_at)
        assert (self.sequence_memory >= 0).all(), "a sequence starts where no memory was stored"

    def _flat(self, array: np.ndarray, prefix: np.ndarray | None = None) -> np.ndarray:
        """Per-step (T, E, ...) array as rows e * T + i, then prefix rows (or zeros), then one zero padding row."""
        flat = self.swap_and_flatten(array)
        extra_rows = self.n_envs * max(self.segment_len - 1, 0) + 1
        if prefix is None:
            tail = np.zeros((extra_rows, *flat.shape[1:]), dtype=flat.dtype)
        else:
            rows = prefix.reshape(extra_rows - 1, *flat.shape[1:])
            tail = np.concatenate([rows, np.zeros((1, *flat.shape[1:]), flat.dtype)])
        return np.concatenate([flat, tail])

    def get(self, batch_size: int | None = None) -> Generator[ElmurSequenceSamples, None, None]:  # type: ignore[override]
        """Shuffled minibatches of whole sequences: ``ceil(n_steps * n_envs / batch_size)`` of them (as in SB3's PPO;
        at most one per sequence), the sequences spread evenly over them; one minibatch of all if None."""
        assert self.full, "the rollout buffer is not full"
        if not self.generator_ready:
            self._build_sequences()
            self.flat_observations = (
                {k: self._flat(v, self.prefix_observations[k]) for k, v in self.observations.items()}
                if isinstance(self.observations, dict)
                else self._flat(self.observations, cast(np.ndarray, self.prefix_observations))
            )
            self.flat_previous_actions = self._flat(self.previous_actions, self.prefix_previous_actions)
            for name in ("actions", "values", "log_probs", "advantages", "returns"):
                self.__dict__["flat_" + name] = self._flat(self.__dict__[name])
            self.stored_starts = SegmentStart(*(th.cat(field) for field in zip(*self._segment_starts, strict=True)))
            self.generator_ready = True
        n_sequences = len(self.sequence_index)
        steps = self.buffer_size * self.n_envs
        n_minibatches = 1 if batch_size is None else min(-(-steps // batch_size), n_sequences)
        for sequences in np.array_split(np.random.permutation(n_sequences), n_minibatches):
            yield self._get_samples(sequences)

    def _get_samples(self, sequences: np.ndarray) -> ElmurSequenceSamples:  # type: ignore[override]
        tokens = self.sequence_index[sequences].reshape(-1)
        memory_rows = th.as_tensor(self.sequence_memory[sequences], device=self.stored_starts.memory.device)
        obs = self.flat_observations
        return ElmurSequenceSamples(
            observations=map_observations(lambda o: self.to_torch(o[tokens]), obs),  # type: ignore[arg-type]
            actions=self.to_torch(self.flat_actions[tokens]),
            previous_actions=self.to_torch(self.flat_previous_actions[tokens]),
            old_values=self.to_torch(self.flat_values[tokens].flatten()),
            old_log_prob=self.to_torch(self.flat_log_probs[tokens].flatten()),
            advantages=self.to_torch(self.flat_advantages[tokens].flatten()),
            returns=self.to_torch(self.flat_returns[tokens].flatten()),
            loss_mask=th.as_tensor(tokens < self.n_loss_tokens, device=self.device),
            start=SegmentStart(*(a[memory_rows].to(self.device) for a in self.stored_starts)),
            start_step=th.as_tensor(self.sequence_start_step[sequences], device=self.device),
            episode_start=th.as_tensor(self.sequence_start_step[sequences] == 0, device=self.device),
            valid=th.as_tensor(
                (tokens != self.pad_index).reshape(len(sequences), self.sequence_segments, -1), device=self.device
            ),
        )

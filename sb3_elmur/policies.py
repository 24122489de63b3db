"""Actor-critic policies whose recurrent state is the ELMUR layer memory (see :mod:`sb3_elmur.model`)."""

import copy
import dataclasses
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.distributions import (
    BernoulliDistribution,
    CategoricalDistribution,
    Distribution,
    MultiCategoricalDistribution,
)
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.preprocessing import get_flattened_obs_dim, preprocess_obs
from stable_baselines3.common.torch_layers import (
    BaseFeaturesExtractor,
    CombinedExtractor,
    FlattenExtractor,
    MlpExtractor,
    NatureCNN,
)
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.common.utils import obs_as_tensor
from torch import nn

from sb3_elmur.model import ElmurConfig, ElmurState, ElmurTransformer, MemoryReconstruction, SegmentStart

if TYPE_CHECKING:
    from sb3_elmur.buffers import ElmurSequenceSamples

Observations = np.ndarray | dict[str, np.ndarray]
SUPPORTED_OBSERVATION_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary, spaces.Dict)


def map_observations(fn, obs: Observations) -> Observations:
    """Apply ``fn`` to an observation array, or to each array of a Dict observation."""
    return {key: fn(value) for key, value in obs.items()} if isinstance(obs, dict) else fn(obs)


class ElmurActorCriticPolicy(ActorCriticPolicy):
    """Actor-critic policy with an ELMUR transformer between the features extractor and the MLP heads.

    The recurrent state (:class:`~sb3_elmur.model.ElmurState`) is the per-layer memory of every trunk plus the
    current segment's cache; :meth:`predict` passes it as a tuple of numpy arrays, batch axis first.
    SB3's arguments keep their meaning (see ``ActorCriticPolicy``); ``net_arch`` is the MLP on the trunk output.

    :param elmur_kwargs: the ELMUR knobs (``d_model``, ``n_layers``, ``n_heads``, ``memory_size``, ``segment_len``,
        ``lru_alpha``, ``memory_init``, ``norm_first``, ``sliding_window``, ``attention_segments``, ``recency_bias``,
        ``memory_gradient``, ``separate_critic_trunk``, ``actor_value_coef``, ``features_skip``,
        ``reconstruction_coef``, ``uniform_kl_coef``, ``episode_clock``, ``segment_position``, ``previous_action``,
        ``previous_action_embedding``): see :class:`~sb3_elmur.model.ElmurConfig`, which holds their meaning, defaults
        and validation
    """

    critic_gradient_scale: th.Tensor  # () buffer, see __init__

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.Tanh,
        ortho_init: bool = True,
        use_sde: bool = False,
        log_std_init: float = 0.0,
        full_std: bool = True,
        use_expln: bool = False,
        squash_output: bool = False,
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        share_features_extractor: bool = True,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        **elmur_kwargs: Any,
    ):
        check_observation_space(observation_space)
        self.config = config = ElmurConfig(**elmur_kwargs)
        if not share_features_extractor and not config.separate_critic_trunk:
            raise ValueError("share_features_extractor=False needs separate_critic_trunk=True")
        optimizer_kwargs = dict(optimizer_kwargs or {})
        if optimizer_class is th.optim.Adam and not {"foreach", "fused"} & set(optimizer_kwargs):
            optimizer_kwargs["fused"] = True  # one kernel for all of the many small tensors
        # Adam keeps torch's eps (1e-8): SB3 sets 1e-5 only when optimizer_kwargs is None (docs/results.md measures it)
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch,
            activation_fn,
            ortho_init,
            use_sde,
            log_std_init,
            full_std,
            use_expln,
            squash_output,
            features_extractor_class,
            features_extractor_kwargs,
            share_features_extractor,
            normalize_images,
            optimizer_class,
            optimizer_kwargs,
        )
        self.segment_len = config.segment_len
        if isinstance(self.action_dist, MultiCategoricalDistribution):  # numpy ints would enter torch.compile's graph
            self.action_dist.action_dims = [int(n) for n in self.action_dist.action_dims]  # as tensors, not sizes
        # trunk 0 acts (and carries the value head unless there is a critic trunk); trunk 1 is the critic trunk
        n_trunks = 2 if config.separate_critic_trunk else 1
        self.trunks = nn.ModuleList(
            ElmurTransformer(self.trunk_input_dim, config, self.previous_action_dim) for _ in range(n_trunks)
        )
        self.reconstruction = (
            MemoryReconstruction(config.d_model, config.n_heads, config.segment_len, self.trunk_input_dim)
            if config.reconstruction_coef > 0
            else None
        )
        # with a critic trunk, the actor's trunk may keep a value branch of its own (as the one trunk has): an MLP
        # shaped as the critic's, then a linear head, trained on the returns and never used for the advantages
        self.actor_value_net = (
            nn.Sequential(copy.deepcopy(self.mlp_extractor.value_net), nn.Linear(self.mlp_extractor.latent_dim_vf, 1))
            if config.separate_critic_trunk and config.actor_value_coef > 0
            else None
        )
        # in training, the value gradient that the critic sends back into what it shares with the actor (the one
        # trunk, the features) is multiplied by this; PPOELMUR's critic_share sets it before each update
        self.register_buffer("critic_gradient_scale", th.ones(()), persistent=False)
        self.optimizer = self.optimizer_class(  # type: ignore[call-arg]
            self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs
        )

    @property
    def _trunks(self) -> list[ElmurTransformer]:
        return cast(list[ElmurTransformer], list(self.trunks))

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return dict(super()._get_constructor_parameters(), **dataclasses.asdict(self.config))

    @property
    def pulls_towards_uniform(self) -> bool:
        """Whether the loss has the KL-from-uniform term (``uniform_kl_coef > 0``, discrete actions only)."""
        return self.config.uniform_kl_coef > 0 and not isinstance(self.action_space, spaces.Box)

    @property
    def has_auxiliary_loss(self) -> bool:
        """Whether :meth:`evaluate_sequences` adds any auxiliary term (reconstruction, actor value, KL from uniform)."""
        return self.reconstruction is not None or self.actor_value_net is not None or self.pulls_towards_uniform

    @property
    def previous_action_dim(self) -> int:
        """Size of an encoded action in the tokens' input (0 without ``previous_action``)."""
        return get_flattened_obs_dim(self.action_space) if self.config.previous_action else 0

    @property
    def trunk_input_dim(self) -> int:
        """Size of a step's input to the trunks: the features, then the encoded previous action."""
        return self.features_dim + self.previous_action_dim

    def encode_actions(self, actions: th.Tensor) -> th.Tensor:
        """Actions (n, ...) as the next step's ``previous_action`` input (n, A): one-hot for discrete spaces."""
        return preprocess_obs(actions, self.action_space).float().reshape(len(actions), -1)  # type: ignore[union-attr]

    def _build_mlp_extractor(self) -> None:
        latent_dim = self.config.d_model + (self.trunk_input_dim if self.config.features_skip else 0)
        self.mlp_extractor = MlpExtractor(latent_dim, self.net_arch, self.activation_fn, self.device)

    def _heads_input(self, outputs: list[th.Tensor], features: list[th.Tensor]) -> list[th.Tensor]:
        """What the MLPs read from each trunk: its output (and the current step's features, with features_skip)."""
        if self.config.features_skip:
            return [th.cat([o, f], dim=-1) for o, f in zip(outputs, features, strict=True)]
        return outputs

    def _latents(self, heads_input: list[th.Tensor]) -> tuple[th.Tensor, th.Tensor]:
        """Actor and critic latents from what the MLPs read (:meth:`_heads_input`; the actor's trunk is the first,
        the critic's the last)."""
        return self.mlp_extractor.forward_actor(heads_input[0]), self.mlp_extractor.forward_critic(heads_input[-1])

    # --- state -------------------------------------------------------------------------------------------------

    @property
    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-environment shape of each state field, by field name (layer axis: the layers of every trunk)."""
        c = self.config
        n, m, d, L, P = c.n_layers * len(self.trunks), c.memory_size, c.d_model, c.segment_len, c.previous_len
        shapes = [
            (n, m, d),
            (n, m),
            (n, P + L - 1, d),
            (n, P + L - 1, d),
            (n, L - 1, d),
            (),
            (self.previous_action_dim,),
        ]
        return dict(zip(ElmurState._fields, shapes, strict=True))

    def initial_state(self, n_envs: int) -> ElmurState:
        """State of ``n_envs`` fresh episodes."""
        return _join([trunk.initial_state(n_envs) for trunk in self._trunks])

    def reset_state(self, state: ElmurState, episode_starts: th.Tensor) -> ElmurState:
        """Fresh state where ``episode_starts`` (n_envs,) is true."""
        episode_starts = episode_starts.bool()
        return _join([t.reset(s, episode_starts) for t, s in zip(self._trunks, self._split(state), strict=True)])

    def _split(self, state: ElmurState) -> list[ElmurState]:
        n = self.config.n_layers
        return [
            ElmurState._make([*(a[:, i * n : (i + 1) * n] for a in state[:5]), state.step, state.previous_action])
            for i in range(len(self.trunks))
        ]

    def segment_start(self, state: ElmurState) -> SegmentStart:
        """What a training sequence that begins at this state's segment start needs, for every trunk (see
        :class:`~sb3_elmur.model.SegmentStart`)."""
        return self._trunks[0].segment_start(state)  # the trunks share the layout: one slice serves all

    def _trunk_features(self, obs: PyTorchObs, previous_action: th.Tensor) -> list[th.Tensor]:
        """Each trunk's input: its features of ``obs`` (n, ...), then ``previous_action`` (n, A)."""
        extracted = self.extract_features(obs)
        features = list(extracted) if isinstance(extracted, tuple) else [extracted] * len(self.trunks)
        if self.previous_action_dim == 0:
            return features
        return [th.cat([f, previous_action], dim=-1) for f in features]

    # --- step mode (acting) ---------------------------------------------------------------------------------------

    def compile_acting(self) -> None:
        """From now on run each trunk's acting step (rollouts, :meth:`predict`) through ``torch.compile``: the same
        computation up to floating-point rounding, faster once compiled; each new batch size compiles first."""
        # A trunk's modules do not change once built (weights change in place; no layer behaves differently in training
        # mode), so the compiled step does not re-check their attributes at every call (about 8% of a rollout's time);
        # the compiled step's wrapper code is C++ rather than Python (a one-step graph spends much of its time there)
        options: dict[str, Any] = {
            "guard_filter_fn": th.compiler.skip_guard_on_all_nn_modules_unsafe,
            "cpp_wrapper": True,
        }
        for trunk in self._trunks:
            trunk.step = th.compile(trunk.step, dynamic=False, options=options)  # type: ignore[method-assign]

    def _step_trunks(self, obs: PyTorchObs, state: ElmurState) -> tuple[list[th.Tensor], list[th.Tensor], ElmurState]:
        features = self._trunk_features(obs, state.previous_action)
        outputs, states = zip(
            *(trunk.step(f, s) for trunk, f, s in zip(self._trunks, features, self._split(state), strict=True)),
            strict=True,
        )
        return features, list(outputs), _join(list(states))

    def recompute_segment_cache(
        self, state: ElmurState, segment_observations: Observations, segment_previous_actions: np.ndarray
    ) -> ElmurState:
        """The state with its current segment's cache recomputed by the current weights.

        :param state: the state of n_envs environments, ``step % L`` steps into their segments
        :param segment_observations: (n_envs, L-1, ...) each environment's observations of its segment so far
        :param segment_previous_actions: (n_envs, L-1, A) the previous action that each of those steps saw
        """
        if not (state.step % self.config.segment_len).any():
            return state
        n_envs, prefix = len(state.step), max(self.config.segment_len - 1, 0)
        flat = map_observations(lambda o: o.reshape(n_envs * prefix, *o.shape[2:]), segment_observations)
        previous_actions = th.as_tensor(segment_previous_actions, device=self.device).reshape(n_envs * prefix, -1)
        features = self._trunk_features(obs_as_tensor(flat, self.device), previous_actions)
        states = [
            trunk.replay_segment(f.reshape(n_envs, prefix, -1), s)
            for trunk, f, s in zip(self._trunks, features, self._split(state), strict=True)
        ]
        return _join(states)

    def _step_latents(self, obs: PyTorchObs, state: ElmurState, episode_starts: th.Tensor):
        features, outputs, state = self._step_trunks(obs, self.reset_state(state, episode_starts))
        return *self._latents(self._heads_input(outputs, features)), state

    def forward(  # type: ignore[override]
        self, obs: PyTorchObs, state: ElmurState, episode_starts: th.Tensor, deterministic: bool = False
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor, ElmurState]:
        """One step: actions, values, log-probabilities and the next state (``episode_starts`` resets first)."""
        latent_pi, latent_vf, state = self._step_latents(obs, state, episode_starts)
        distribution = self._get_action_dist_from_latent(latent_pi)
        actions = distribution.get_actions(deterministic=deterministic)
        log_prob = distribution.log_prob(actions)
        actions = actions.reshape((-1, *self.action_space.shape))  # type: ignore[misc]
        return actions, self.value_net(latent_vf), log_prob, self.took(state, actions)

    def took(self, state: ElmurState, actions: th.Tensor) -> ElmurState:
        """The state after this step's ``actions`` (n_envs, ...): they become the next step's previous action."""
        if self.previous_action_dim == 0:
            return state
        return state._replace(previous_action=self.encode_actions(actions))

    def get_distribution(  # type: ignore[override]
        self, obs: PyTorchObs, state: ElmurState, episode_starts: th.Tensor
    ) -> tuple[Distribution, ElmurState]:
        latent_pi, _, state = self._step_latents(obs, state, episode_starts)
        return self._get_action_dist_from_latent(latent_pi), state

    def predict_values(  # type: ignore[override]
        self, obs: PyTorchObs, state: ElmurState, episode_starts: th.Tensor
    ) -> th.Tensor:
        _, latent_vf, _ = self._step_latents(obs, state, episode_starts)
        return self.value_net(latent_vf)

    # --- segment mode (training) ----------------------------------------------------------------------------------

    def evaluate_sequences(
        self, batch: "ElmurSequenceSamples"
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor | None, th.Tensor]:
        """Values, log-probabilities and entropy of the actions of a minibatch of B sequences of S segments of L
        steps (see :class:`~sb3_elmur.buffers.ElmurSequenceSamples`).

        :return: values, log-probabilities and entropy, each (B * S * L,), and the sum of the auxiliary terms weighted
            by their coefficients (reconstruction, actor value, KL from uniform; 0 when all are off)
        """
        B, S, L = batch.valid.shape
        n = self.config.n_layers
        features, outputs = self._trunk_features(batch.observations, batch.previous_actions), []
        auxiliary_loss = th.zeros((), device=batch.valid.device)
        for i, (trunk, trunk_features) in enumerate(zip(self.trunks, features, strict=True)):
            trunk_features = trunk_features.reshape(B, S, L, -1)
            reconstruct = i == 0 and self.reconstruction is not None
            y, memories, _ = trunk(
                trunk_features,
                SegmentStart(*(a[:, i * n : (i + 1) * n] for a in batch.start)),
                batch.start_step,
                batch.episode_start,
                batch.valid,
                write_last=reconstruct,  # otherwise the memory after the sequence is not used
            )
            outputs.append(y.reshape(B * S * L, -1))
            if reconstruct and self.reconstruction is not None:  # every segment decoded, complete ones scored
                decoded = self.reconstruction(memories.flatten(0, 1))  # (B * S, L, features_dim)
                errors = (decoded - trunk_features.flatten(0, 1).detach()).pow(2).mean(dim=(1, 2))  # (B * S,)
                complete = batch.valid.all(dim=-1).flatten()  # segments that wrote memory
                auxiliary_loss = self.config.reconstruction_coef * masked_mean(errors, complete)
        heads_input = self._heads_input(outputs, features)
        critic_input = heads_input[-1]
        if len(self.trunks) == 1:
            critic_input = ScaleGradient.apply(critic_input, self.critic_gradient_scale)
        latent_pi, latent_vf = self._latents([heads_input[0], critic_input])
        if self.actor_value_net is not None:  # the actor's trunk also learns to predict the returns
            actor_values = self.actor_value_net(heads_input[0]).flatten()
            actor_value_loss = masked_mean((batch.returns - actor_values) ** 2, batch.loss_mask)
            auxiliary_loss = auxiliary_loss + self.config.actor_value_coef * actor_value_loss
        distribution = self._get_action_dist_from_latent(latent_pi)
        if self.pulls_towards_uniform:
            uniform_kl = masked_mean(kl_from_uniform(distribution), batch.loss_mask)
            auxiliary_loss = auxiliary_loss + self.config.uniform_kl_coef * uniform_kl
        values = self.value_net(latent_vf).flatten()
        actions = batch.actions
        if isinstance(self.action_space, spaces.Discrete):
            actions = actions.long().flatten()
        return values, distribution.log_prob(actions), distribution.entropy(), auxiliary_loss

    # --- user-facing predict --------------------------------------------------------------------------------------

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Action for an observation (single or vectorized) and the next state.

        :param observation: one observation, or a batch of n_envs of them
        :param state: the state returned by the previous call (tuple of numpy arrays, batch axis first), or None
            for fresh episodes
        :param episode_start: (n_envs,) true where a new episode begins (its state is reset first)
        :param deterministic: take the most likely action instead of sampling
        :return: the action(s) and the next state (an :class:`~sb3_elmur.model.ElmurState` of numpy arrays)
        """
        self.set_training_mode(False)
        for array in observation.values() if isinstance(observation, dict) else [observation]:
            dtype = np.asarray(array).dtype
            if dtype.kind not in "biuf":  # bool, int, unsigned, float
                raise ValueError(
                    f"observation has dtype {dtype}, expected a real number dtype like {self.observation_space}"
                )
        obs_tensor, vectorized = self.obs_to_tensor(observation)
        n_envs = len(next(iter(obs_tensor.values())) if isinstance(obs_tensor, dict) else obs_tensor)
        state_tensors = self.initial_state(n_envs) if state is None else self.state_from_numpy(state, n_envs)
        if episode_start is None:
            episode_start = np.zeros(n_envs, dtype=bool)
        episode_start = np.asarray(episode_start).reshape(-1)
        if len(episode_start) != n_envs:
            raise ValueError(f"episode_start has {len(episode_start)} entries for {n_envs} observations")
        with th.inference_mode():
            starts = th.as_tensor(episode_start, dtype=th.bool, device=self.device)
            distribution, state_tensors = self.get_distribution(obs_tensor, state_tensors, starts)
            actions = distribution.get_actions(deterministic=deterministic)
            state_tensors = self.took(state_tensors, actions)
        chosen: np.ndarray = actions.cpu().numpy().reshape((-1, *self.action_space.shape))  # type: ignore[misc]
        if isinstance(self.action_space, spaces.Box):
            if self.squash_output:
                chosen = self.unscale_action(chosen)
            else:
                chosen = np.clip(chosen, self.action_space.low, self.action_space.high)
        if not vectorized:
            chosen = chosen.squeeze(axis=0)
        next_state = ElmurState._make([a.cpu().numpy() for a in state_tensors])  # a tuple with named fields
        return chosen, cast(tuple[np.ndarray, ...], next_state)

    def state_from_numpy(self, state: tuple[np.ndarray, ...], n_envs: int) -> ElmurState:
        """Check a state from :meth:`predict` against this policy and ``n_envs``, and move it to the device."""
        expected = self.state_shapes
        if not isinstance(state, tuple | list) or len(state) != len(expected):
            raise ValueError(f"state must be a tuple of {len(expected)} arrays ({', '.join(ElmurState._fields)})")
        fields = []
        for (name, shape), array in zip(expected.items(), state, strict=True):
            array = np.asarray(array)
            if array.shape != (n_envs, *shape):
                raise ValueError(f"state.{name} has shape {array.shape}, expected {(n_envs, *shape)} for {n_envs} envs")
            integer = name in ("anchors", "step")
            if integer != np.issubdtype(array.dtype, np.integer):
                raise ValueError(f"state.{name} has dtype {array.dtype}, expected {'int64' if integer else 'float32'}")
            fields.append(th.as_tensor(array, dtype=th.long if integer else th.float32, device=self.device))
        return ElmurState._make(fields)


class ScaleGradient(th.autograd.Function):
    """Identity in the forward pass; the backward pass multiplies the gradient by ``scale`` (a scalar tensor)."""

    @staticmethod
    def forward(ctx: Any, x: th.Tensor, scale: th.Tensor) -> th.Tensor:
        ctx.save_for_backward(scale)
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: th.Tensor) -> tuple[th.Tensor, None]:
        (scale,) = ctx.saved_tensors
        return grad * scale, None


def masked_mean(values: th.Tensor, mask: th.Tensor) -> th.Tensor:
    """The mean of ``values`` over the steps where ``mask`` is true, with no data-dependent shape (it compiles)."""
    weights = mask.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp(min=1)  # 0 where the mask is all false


def kl_from_uniform(distribution: Distribution) -> th.Tensor:
    """KL(uniform || policy) of a categorical or Bernoulli action distribution at each step, summed over the action's
    components: (N,)."""
    if isinstance(distribution, BernoulliDistribution):
        logits = distribution.distribution.logits  # (N, k)
        log_p, log_not_p = -F.softplus(-logits), -F.softplus(logits)
        return (-np.log(2) - (log_p + log_not_p) / 2).sum(dim=-1)
    if isinstance(distribution, CategoricalDistribution):
        components = [distribution.distribution]
    elif isinstance(distribution, MultiCategoricalDistribution):
        components = distribution.distribution
    else:
        raise ValueError(f"KL from uniform is defined for discrete actions, not for {type(distribution).__name__}")
    # torch's Categorical keeps its logits normalised: log-probabilities (N, n)
    return sum(-np.log(c.logits.shape[-1]) - c.logits.mean(dim=-1) for c in components)


def _join(states: list[ElmurState]) -> ElmurState:
    """Concatenate the per-trunk states along the layer axis (the step counter is shared)."""
    if len(states) == 1:
        return states[0]
    return ElmurState._make(
        [*(th.cat([s[i] for s in states], 1) for i in range(5)), states[0].step, states[0].previous_action]
    )


def check_observation_space(observation_space: spaces.Space) -> None:
    """Raise a ValueError that names the wrapper to use for spaces the policies do not take."""
    if isinstance(observation_space, spaces.Dict):
        for sub in observation_space.spaces.values():
            if isinstance(sub, spaces.Dict):
                raise ValueError(
                    "nested Dict observations are not supported: flatten them (gymnasium FlattenObservation)"
                )
            check_observation_space(sub)
        return
    if not isinstance(observation_space, SUPPORTED_OBSERVATION_SPACES):
        name = type(observation_space).__name__
        wrapper = (
            "gymnasium.wrappers.FlattenObservation"
            if isinstance(observation_space, spaces.Tuple)
            else "a gymnasium.ObservationWrapper that encodes it as a fixed-size Box"
        )
        raise ValueError(
            f"observation space {name} is not supported (Box, Discrete, MultiDiscrete, MultiBinary or Dict of them): "
            f"wrap the env with {wrapper}"
        )


class ElmurActorCriticCnnPolicy(ElmurActorCriticPolicy):
    """:class:`ElmurActorCriticPolicy` with SB3's NatureCNN features extractor for image observations."""

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        features_extractor_class: type[BaseFeaturesExtractor] = NatureCNN,
        **kwargs: Any,
    ):
        super().__init__(
            observation_space, action_space, lr_schedule, features_extractor_class=features_extractor_class, **kwargs
        )


class ElmurMultiInputActorCriticPolicy(ElmurActorCriticPolicy):
    """:class:`ElmurActorCriticPolicy` with SB3's CombinedExtractor for Dict observations."""

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor,
        **kwargs: Any,
    ):
        super().__init__(
            observation_space, action_space, lr_schedule, features_extractor_class=features_extractor_class, **kwargs
        )


ElmurPolicy = ElmurActorCriticPolicy
CnnElmurPolicy = ElmurActorCriticCnnPolicy
MultiInputElmurPolicy = ElmurMultiInputActorCriticPolicy

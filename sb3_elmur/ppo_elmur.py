"""PPO with an ELMUR policy: the recurrent state is the transformer's layer memory."""

import dataclasses
import io
import pathlib
import zipfile
from typing import Any, ClassVar, NamedTuple, TypeVar, cast

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import maybe_make_env
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.save_util import json_to_data
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule, LinearSchedule, explained_variance, obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv
from torch import nn
from torch.utils.hooks import RemovableHandle

from sb3_elmur.buffers import ElmurRolloutBuffer, ElmurSequenceSamples
from sb3_elmur.model import ElmurLayer, ElmurState, ElmurTransformer
from sb3_elmur.policies import (
    CnnElmurPolicy,
    ElmurActorCriticPolicy,
    ElmurPolicy,
    MultiInputElmurPolicy,
    check_observation_space,
)

# ELMUR knobs whose default changed or that were added after checkpoints were first saved without them: a checkpoint
# whose policy_kwargs lack one was trained with this value
EARLIER_DEFAULTS: dict[str, Any] = {
    "sliding_window": False,
    "separate_critic_trunk": False,
    "actor_value_coef": 0.0,
    "uniform_kl_coef": 0.0,
    "segment_position": False,
}
# the critic's share of a checkpoint saved before ``critic_share`` was on by default (or existed) names none: it was off
EARLIER_CRITIC_SHARE = 0.0
SUPPORTED_ACTION_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
SelfPPOELMUR = TypeVar("SelfPPOELMUR", bound="PPOELMUR")
# the default learning rate: 3e-4 at the start of ``learn``, decaying linearly to 0 at its end
LINEAR_DECAY_3E_4 = LinearSchedule(3e-4, 0.0, 1.0)


DEFAULT_CRITIC_SHARE = 0.2  # critic_share's value with one trunk for actor and critic, unless given
MAX_CRITIC_GRADIENT_SCALE = 1e4  # the most that critic_share multiplies the critic's gradient into the trunk by


def gradient_norm(loss: th.Tensor, parameters: list[nn.Parameter]) -> float:
    """Norm of the gradient of ``loss`` with respect to ``parameters`` (the graph is kept)."""
    grads = th.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True)
    return float(th.sqrt(sum(((g**2).sum() for g in grads if g is not None), th.zeros(()))))


class PPOLoss(NamedTuple):
    """One minibatch's PPO loss and its terms (scalars)."""

    loss: th.Tensor  # what the update minimises: policy + ent_coef * entropy + vf_coef * scale * value + auxiliary
    policy_loss: th.Tensor  # clipped surrogate of the (normalised) advantages
    value_loss: th.Tensor  # squared error of the (clipped) values against the returns
    entropy_loss: th.Tensor  # minus the entropy
    auxiliary_loss: th.Tensor  # reconstruction, actor value and KL-from-uniform terms, weighted by their coefficients
    approx_kl: th.Tensor  # KL(old || new) estimate, no gradient
    clip_fraction: th.Tensor  # share of steps whose ratio was clipped, no gradient


class PPOELMUR(OnPolicyAlgorithm):
    """Proximal Policy Optimization (clip version) with an ELMUR transformer-memory policy.

    Arguments keep the meaning they have in SB3's PPO and sb3-contrib's RecurrentPPO; what differs:

    :param batch_size: minibatch size in environment steps, as in SB3's PPO: each epoch makes
        ``ceil(n_steps * n_envs / batch_size)`` minibatches of the rollout (at most one per training sequence). A
        minibatch holds whole training sequences (``sequence_segments`` segments of one environment), spread evenly
        over the minibatches, so its size in steps is ``batch_size`` on average, not exactly
    :param learning_rate: a float (constant) or a schedule of the remaining progress (1 -> 0); by default it decays
        linearly from 3e-4 to 0 over the ``total_timesteps`` of ``learn`` (the RL Zoo's ``lin_3e-4``), so a policy
        that has learned to carry a cue through the memory is not pushed off it late in training (the measurement
        behind this default is in the documentation's results page)
    :param ent_coef: entropy coefficient; 0.01 by default (SB3's PPO: 0), which keeps the choices that only memory
        can inform explored until the memory informs them (measured on the T-Maze: results page)
    :param sequence_segments: segments per training sequence. Each sequence starts from the memory (and the cached
        keys and values before it) stored during the rollout and runs its segments in order, so the memory written by
        one segment is read by the next
        (with gradient when the policy's ``memory_gradient`` is on)
    :param normalize_value_loss: divide the value loss by the variance of the returns (SB3's ``RunningMeanStd`` over
        the returns of every rollout so far), so that the critic's share of the gradient through the trunk it shares
        with the actor does not depend on the scale of the rewards
    :param critic_share: with one trunk for actor and critic (no ``separate_critic_trunk``), the least share of the
        gradient into that trunk that the value term sends, as a fraction of the policy term's (0 = off; None:
        ``DEFAULT_CRITIC_SHARE`` with one trunk, off with ``separate_critic_trunk``, which has no shared trunk).
        Before each update the norms of the two terms' gradients into the trunk are measured on one minibatch; where
        the value term's is below ``critic_share`` times the policy term's, the gradient that the critic sends back
        into the trunk (and the shared features) is scaled up to that for the update, never down (the critic's own
        layers keep their gradient; at most by ``MAX_CRITIC_GRADIENT_SCALE``). Logged: ``train/critic_share`` (as
        measured) and ``train/critic_gradient_scale``
    :param compile_update: run the update's minibatch forward and backward passes through ``torch.compile``: the same
        computation up to floating-point rounding, faster once compiled, but each new minibatch shape first compiles
        (a minute or more on a small CPU; cached on disk by torch for later processes). Worth it for long runs; needs
        what ``torch.compile`` needs on the device (a C++ compiler on CPU)
    :param compile_acting: run the policy's acting step (rollouts and ``predict``) through ``torch.compile``: the same
        computation up to floating-point rounding, faster once compiled; each new number of environments first
        compiles (tens of seconds on a small CPU, cached on disk). Needs what ``compile_update`` needs

    The other parameters: ``n_steps`` (steps per environment per rollout), ``n_epochs``,
    ``gamma``, ``gae_lambda``, ``clip_range``, ``clip_range_vf``, ``normalize_advantage``,
    ``vf_coef``, ``max_grad_norm``, ``use_sde``, ``sde_sample_freq``, ``target_kl``, ``stats_window_size``,
    ``tensorboard_log``, ``policy_kwargs`` (SB3's policy arguments and the ELMUR knobs of
    :class:`~sb3_elmur.model.ElmurConfig`), ``verbose``, ``seed``, ``device``: as in SB3's PPO.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "ElmurPolicy": ElmurPolicy,
        "CnnElmurPolicy": CnnElmurPolicy,
        "MultiInputElmurPolicy": MultiInputElmurPolicy,
    }
    policy: ElmurActorCriticPolicy
    rollout_buffer: ElmurRolloutBuffer

    def __init__(
        self,
        policy: str | type[ElmurActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = LINEAR_DECAY_3E_4,
        n_steps: int = 128,
        batch_size: int = 256,
        n_epochs: int = 10,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_range: float | Schedule = 0.2,
        clip_range_vf: float | Schedule | None = None,
        normalize_advantage: bool = True,
        ent_coef: float = 0.01,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        sequence_segments: int = 4,
        normalize_value_loss: bool = False,
        critic_share: float | None = None,
        compile_update: bool = False,
        compile_acting: bool = False,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        target_kl: float | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        env = maybe_make_env(env, verbose)
        if env is not None:  # before SB3 wraps it, which fails obscurely on some spaces
            check_observation_space(env.observation_space)
            if not isinstance(env.action_space, SUPPORTED_ACTION_SPACES):
                raise ValueError(
                    f"action space {type(env.action_space).__name__} is not supported: use Box, Discrete, "
                    "MultiDiscrete or MultiBinary actions"
                    " (wrap the env in a gymnasium.ActionWrapper that maps one of them to yours)"
                )
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            gamma=gamma,
            gae_lambda=gae_lambda,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
        )
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.clip_range = clip_range
        self.clip_range_vf = clip_range_vf
        self.normalize_advantage = normalize_advantage
        self.target_kl = target_kl
        self.sequence_segments = sequence_segments
        self.normalize_value_loss = normalize_value_loss
        self.critic_share = critic_share
        self.compile_update = compile_update
        self.compile_acting = compile_acting
        self.returns_rms = RunningMeanStd(shape=())  # here, not in _setup_model: a loaded model keeps its statistics
        self._last_state: ElmurState | None = None
        self._rollout_write_sizes: list[th.Tensor] = []  # per write step, the mean size of the writes (layers,)
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        if self.sequence_segments < 1:
            raise ValueError(f"sequence_segments must be >= 1, got {self.sequence_segments}")
        if self.critic_share is not None and self.critic_share < 0:
            raise ValueError(f"critic_share must be >= 0, got {self.critic_share}")
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        self.policy = self.policy_class(  # type: ignore[assignment]
            self.observation_space, self.action_space, self.lr_schedule, use_sde=self.use_sde, **self.policy_kwargs
        )
        self.policy = self.policy.to(self.device)
        if not isinstance(self.policy, ElmurActorCriticPolicy):
            raise ValueError("Policy must subclass ElmurActorCriticPolicy")
        self.critic_share = resolve_critic_share(self.critic_share, self.policy.config.separate_critic_trunk)
        # every ELMUR knob in the saved policy_kwargs, so a checkpoint keeps its model when a default changes
        self.policy_kwargs = {**self.policy_kwargs, **dataclasses.asdict(self.policy.config)}
        self._evaluate_sequences = self.policy.evaluate_sequences
        if self.compile_update:
            self._evaluate_sequences = th.compile(self.policy.evaluate_sequences, dynamic=False)
        if self.compile_acting:
            self.policy.compile_acting()
        if self.batch_size is None or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive number of environment steps, got {self.batch_size}")
        self.rollout_buffer = ElmurRolloutBuffer(
            self.n_steps,
            self.observation_space,
            self.action_space,
            self.device,
            gamma=self.gamma,
            gae_lambda=self.gae_lambda,
            n_envs=self.n_envs,
            elmur_config=self.policy.config,
            sequence_segments=self.sequence_segments,
            previous_action_dim=self.policy.previous_action_dim,
        )
        self._reset_state()
        self.clip_range = FloatSchedule(self.clip_range)
        if self.clip_range_vf is not None:
            if isinstance(self.clip_range_vf, float | int):
                assert self.clip_range_vf > 0, "`clip_range_vf` must be positive, pass `None` to deactivate vf clipping"
            self.clip_range_vf = FloatSchedule(self.clip_range_vf)

    def _reset_state(self) -> None:
        """Fresh recurrent state for the current training envs (also after ``set_env``)."""
        self._last_state = self.policy.initial_state(self.n_envs)

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ) -> tuple[int, BaseCallback]:
        env_reset = reset_num_timesteps or self._last_obs is None
        result = super()._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)
        if env_reset or self._last_state is None or len(self._last_state.step) != self.n_envs:
            self._reset_state()  # the envs were reset: their episodes start fresh
        return result

    def collect_rollouts(
        self, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer, n_rollout_steps: int
    ) -> bool:
        """Step the envs with the cached ELMUR state and fill the buffer (see :class:`ElmurRolloutBuffer`)."""
        assert isinstance(rollout_buffer, ElmurRolloutBuffer)
        assert self._last_obs is not None, "No previous observation was provided"
        self.policy.set_training_mode(False)
        n_steps = 0
        rollout_buffer.reset()
        if self.use_sde:
            self.policy.reset_noise(env.num_envs)
        callback.on_rollout_start()
        state = self._last_state
        assert state is not None, "no recurrent state: call learn (which sets it up) first"
        segment_len, write_sizes = self.policy.config.segment_len, []
        no_reset = th.zeros(env.num_envs, dtype=th.bool, device=self.device)

        while n_steps < n_rollout_steps:
            if self.use_sde and self.sde_sample_freq > 0 and n_steps % self.sde_sample_freq == 0:
                self.policy.reset_noise(env.num_envs)
            with th.inference_mode():
                obs_tensor = obs_as_tensor(self._last_obs, self.device)  # type: ignore[arg-type]
                episode_starts = th.as_tensor(self._last_episode_starts, dtype=th.bool, device=self.device)
                state = self.policy.reset_state(state, episode_starts)
                step = state.step.cpu().numpy()
                previous_action = state.previous_action.cpu().numpy()  # what this step's input sees
                if n_steps == 0:  # the segment begun in the last rollout: its cache by the updated weights
                    rollout_buffer.start_rollout(step)
                    state = self.policy.recompute_segment_cache(
                        state, rollout_buffer.prefix_observations, rollout_buffer.prefix_previous_actions
                    )
                rollout_buffer.add_segment_starts(self.policy.segment_start(state), step)
                actions, values, log_probs, new_state = self.policy(obs_tensor, state, no_reset)
                writes = step % segment_len == segment_len - 1  # these envs wrote their memory with this step
                if writes.any():
                    write_sizes.append((new_state.memory - state.memory)[writes].norm(dim=-1).mean(dim=(0, 2)))
            actions = actions.cpu().numpy()
            clipped_actions = actions
            if isinstance(self.action_space, spaces.Box):
                clipped_actions = np.clip(actions, self.action_space.low, self.action_space.high)

            new_obs, rewards, dones, infos = env.step(clipped_actions)
            self.num_timesteps += env.num_envs
            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._update_info_buffer(infos, dones)
            n_steps += 1
            if isinstance(self.action_space, spaces.Discrete):
                actions = actions.reshape(-1, 1)

            # Timeout: bootstrap with the value of the terminal observation, given the episode's state
            for idx, done in enumerate(dones):
                if (
                    done
                    and infos[idx].get("terminal_observation") is not None
                    and infos[idx].get("TimeLimit.truncated", False)
                ):
                    terminal_obs = self.policy.obs_to_tensor(infos[idx]["terminal_observation"])[0]
                    with th.inference_mode():
                        terminal_state = ElmurState(*(a[idx : idx + 1] for a in new_state))
                        terminal_value = self.policy.predict_values(terminal_obs, terminal_state, no_reset[:1])[0]
                    rewards[idx] += self.gamma * terminal_value.item()

            rollout_buffer.add(
                self._last_obs,  # type: ignore[arg-type]
                actions,
                rewards,
                self._last_episode_starts,  # type: ignore[arg-type]
                values,
                log_probs,
                step,
                previous_action,
            )
            self._last_obs = new_obs  # type: ignore[assignment]
            self._last_episode_starts = dones
            state = new_state

        self._last_state = state
        self._rollout_write_sizes = write_sizes
        with th.inference_mode():
            starts = th.as_tensor(dones, dtype=th.bool, device=self.device)
            values = self.policy.predict_values(obs_as_tensor(new_obs, self.device), state, starts)  # type: ignore[arg-type]
        rollout_buffer.compute_returns_and_advantage(last_values=values, dones=dones)
        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def _record_memory(self, update_norms: dict[str, list[th.Tensor]]) -> None:
        """Log, per layer of every trunk, the mean slot norm at the rollout's end, the mean size of a write (norm of a
        slot's change) during the rollout and the memory read's share of the attention updates of the first
        minibatch, ``|read| / (|read| + |self-attention|)`` (mean norms of the two residual updates over its tokens):
        ``memory/slot_norm_<layer>``, ``memory/write_size_<layer>``, ``memory/read_share_<layer>``."""
        assert self._last_state is not None
        slot_norms = self._last_state.memory.norm(dim=-1).mean(dim=(0, 2))  # (layers,)
        sizes = self._rollout_write_sizes
        write_sizes = th.stack(sizes).mean(dim=0) if sizes else None
        for layer in range(len(slot_norms)):
            self.logger.record(f"memory/slot_norm_{layer}", slot_norms[layer].item())
            if write_sizes is not None:
                self.logger.record(f"memory/write_size_{layer}", write_sizes[layer].item())
            read, attend = (th.stack(update_norms[f"{kind}_{layer}"]).mean() for kind in ("read", "self"))
            self.logger.record(f"memory/read_share_{layer}", (read / (read + attend)).item())

    def _watch_attention_updates(self, update_norms: dict[str, list[th.Tensor]]) -> list[RemovableHandle]:
        """Forward hooks that collect, per layer of every trunk, the mean norm of the self-attention's and the
        memory read's output (the updates added to the residual stream) into ``update_norms``."""
        handles = []
        layers = [
            cast(ElmurLayer, layer) for trunk in self.policy.trunks for layer in cast(ElmurTransformer, trunk).layers
        ]
        for i, layer in enumerate(layers):
            for kind, attention in (("self", layer.self_attn), ("read", layer.read_attn)):

                def hook(module: nn.Module, args: Any, output: th.Tensor, key: str = f"{kind}_{i}") -> None:
                    update_norms.setdefault(key, []).append(output.detach().norm(dim=-1).mean())

                handles.append(attention.register_forward_hook(hook))
        return handles

    def train(self) -> None:
        """Update the policy on whole-segment sequences of the rollout (see :class:`ElmurRolloutBuffer`)."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)  # type: ignore[operator]
        clip_range_vf = (
            None if self.clip_range_vf is None else self.clip_range_vf(self._current_progress_remaining)  # type: ignore[operator]
        )
        if self.normalize_value_loss:
            self.returns_rms.update(self.rollout_buffer.returns.flatten())
        if self.critic_share:
            self._set_critic_gradient_scale(clip_range, clip_range_vf)
        entropy_losses, pg_losses, value_losses, clip_fractions, auxiliary_losses = [], [], [], [], []
        continue_training = True
        update_norms: dict[str, list[th.Tensor]] = {}
        watching = self._watch_attention_updates(update_norms)  # during the first minibatch's forward pass only
        for epoch in range(self.n_epochs):
            approx_kl_divs = []
            for data in self.rollout_buffer.get(self.batch_size):
                terms = self.minibatch_loss(data, clip_range, clip_range_vf, eager=bool(watching))
                for handle in watching:
                    handle.remove()
                watching = []
                pg_losses.append(terms.policy_loss.item())
                value_losses.append(terms.value_loss.item())
                entropy_losses.append(terms.entropy_loss.item())
                auxiliary_losses.append(terms.auxiliary_loss.item())
                clip_fractions.append(terms.clip_fraction.item())
                approx_kl_div = terms.approx_kl.cpu().numpy()
                approx_kl_divs.append(approx_kl_div)
                if self.target_kl is not None and approx_kl_div > 1.5 * self.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(f"Early stopping at step {epoch} due to reaching max kl: {approx_kl_div:.2f}")
                    break

                self.policy.optimizer.zero_grad()
                terms.loss.backward()
                th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                self.policy.optimizer.step()

            self._n_updates += 1
            if not continue_training:
                break

        explained_var = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())
        self.logger.record("train/entropy_loss", np.mean(entropy_losses))
        self.logger.record("train/policy_gradient_loss", np.mean(pg_losses))
        self.logger.record("train/value_loss", np.mean(value_losses))
        self.logger.record("train/approx_kl", np.mean(approx_kl_divs))
        self.logger.record("train/clip_fraction", np.mean(clip_fractions))
        self.logger.record("train/loss", terms.loss.item())
        if self.policy.has_auxiliary_loss:
            self.logger.record("train/auxiliary_loss", np.mean(auxiliary_losses))
        self.logger.record("train/explained_variance", explained_var)
        self._record_memory(update_norms)
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
        if clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", clip_range_vf)

    def _set_critic_gradient_scale(self, clip_range: float, clip_range_vf: float | None) -> None:
        """Measure the critic's share of the trunk's gradient on one minibatch and set the policy's
        ``critic_gradient_scale`` for this update (see ``critic_share``)."""
        self.policy.critic_gradient_scale.fill_(1.0)
        shuffle = np.random.get_state()  # the update's first minibatch, leaving the update's shuffling as it was
        data = next(iter(self.rollout_buffer.get(self.batch_size)))
        np.random.set_state(shuffle)
        terms = self.minibatch_loss(data, clip_range, clip_range_vf, eager=True)
        value_term = self.vf_coef * self.value_loss_scale() * terms.value_loss
        trunk = list(self.policy.trunks[0].parameters())
        policy_norm, value_norm = (gradient_norm(term, trunk) for term in (terms.policy_loss, value_term))
        share = value_norm / max(policy_norm, 1e-12)
        floor = self.critic_share or 0.0  # resolved by _setup_model
        scale = min(max(1.0, floor / max(share, 1e-12)), MAX_CRITIC_GRADIENT_SCALE)
        self.policy.critic_gradient_scale.fill_(scale)
        self.logger.record("train/critic_share", share)
        self.logger.record("train/critic_gradient_scale", scale)

    def value_loss_scale(self) -> float:
        """The factor of the value loss besides ``vf_coef``: 1 / variance of the returns seen so far with
        ``normalize_value_loss``, else 1."""
        return 1 / float(self.returns_rms.var + 1e-8) if self.normalize_value_loss else 1.0

    def minibatch_loss(
        self, data: ElmurSequenceSamples, clip_range: float, clip_range_vf: float | None, eager: bool = False
    ) -> PPOLoss:
        """The PPO loss of one minibatch of whole-segment sequences (its steps outside the rollout, the ``loss_mask``,
        left out), term by term, and its statistics; ``clip_range_vf`` None: the value is not clipped. ``eager``:
        not compiled even with ``compile_update`` (the first minibatch of an update, whose layers are watched)."""
        mask = data.loss_mask
        evaluate = self.policy.evaluate_sequences if eager else self._evaluate_sequences
        values, log_prob, entropy, auxiliary_loss = evaluate(data)
        advantages = data.advantages
        if self.normalize_advantage and mask.sum() > 1:
            advantages = (advantages - advantages[mask].mean()) / (advantages[mask].std() + 1e-8)
        ratio = th.exp(log_prob - data.old_log_prob)
        policy_loss_1 = advantages * ratio
        policy_loss_2 = advantages * th.clamp(ratio, 1 - clip_range, 1 + clip_range)
        policy_loss = -th.mean(th.min(policy_loss_1, policy_loss_2)[mask])
        if clip_range_vf is None:
            values_pred = values
        else:
            values_pred = data.old_values + th.clamp(values - data.old_values, -clip_range_vf, clip_range_vf)
        value_loss = th.mean(((data.returns - values_pred) ** 2)[mask])
        entropy_loss = -th.mean(-log_prob[mask]) if entropy is None else -th.mean(entropy[mask])
        value_term = self.vf_coef * self.value_loss_scale() * value_loss
        with th.no_grad():
            log_ratio = log_prob - data.old_log_prob
            approx_kl = th.mean(((th.exp(log_ratio) - 1) - log_ratio)[mask])
            clip_fraction = th.mean((th.abs(ratio - 1) > clip_range).float()[mask])
        return PPOLoss(
            loss=policy_loss + self.ent_coef * entropy_loss + value_term + auxiliary_loss,
            policy_loss=policy_loss,
            value_loss=value_loss,
            entropy_loss=entropy_loss,
            auxiliary_loss=auxiliary_loss,
            approx_kl=approx_kl,
            clip_fraction=clip_fraction,
        )

    def learn(
        self: SelfPPOELMUR,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "PPOELMUR",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfPPOELMUR:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    @classmethod
    def load(
        cls: type[SelfPPOELMUR],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs,
    ) -> SelfPPOELMUR:
        """Load a model saved by :meth:`save` (arguments as SB3's ``load``); a corrupt file raises ValueError.

        A checkpoint whose policy_kwargs do not name a knob added or changed since (``EARLIER_DEFAULTS``) loads with
        that knob's value of the time, the model it was trained as; one that does not name ``critic_share`` goes on
        training with it off (``EARLIER_CRITIC_SHARE``), as it was trained.
        """
        path = checkpoint_path(path)
        check_checkpoint(path)
        custom_objects = dict(custom_objects or {})
        with zipfile.ZipFile(path) as archive:
            data = json_to_data(archive.read("data").decode(), custom_objects=custom_objects)
        if isinstance(path, io.BufferedIOBase):
            path.seek(0)
        if "policy_kwargs" not in custom_objects:
            saved = data.get("policy_kwargs") or {}
            if missing := {k: v for k, v in EARLIER_DEFAULTS.items() if k not in saved}:
                custom_objects["policy_kwargs"] = {**saved, **missing}
        if "critic_share" not in data and "critic_share" not in kwargs:
            kwargs["critic_share"] = EARLIER_CRITIC_SHARE
        return super().load(path, env, device, custom_objects, print_system_info, force_reset, **kwargs)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_last_state", "_rollout_write_sizes", "_evaluate_sequences"]


def resolve_critic_share(critic_share: float | None, separate_critic_trunk: bool) -> float:
    """PPOELMUR's ``critic_share`` as it acts: None is ``DEFAULT_CRITIC_SHARE`` with one trunk for actor and critic
    and off with ``separate_critic_trunk``; a floor given with ``separate_critic_trunk`` is a ValueError."""
    if critic_share is None:
        return 0.0 if separate_critic_trunk else DEFAULT_CRITIC_SHARE
    if critic_share > 0 and separate_critic_trunk:
        raise ValueError("critic_share is for a trunk shared by actor and critic: not with separate_critic_trunk")
    return critic_share


def checkpoint_path(path: str | pathlib.Path | io.BufferedIOBase) -> pathlib.Path | io.BufferedIOBase:
    """The file SB3's ``load`` reads for ``path``: ``path`` itself, or ``path.zip`` if ``path`` does not exist.
    Raises FileNotFoundError naming ``path`` if neither exists."""
    if isinstance(path, io.BufferedIOBase):
        return path
    path = pathlib.Path(path)
    if path.exists():
        return path
    if (zipped := pathlib.Path(f"{path}.zip")).exists():
        return zipped
    raise FileNotFoundError(f"no PPOELMUR checkpoint at {path}" + ("" if path.suffix == ".zip" else f" nor {zipped}"))


def check_checkpoint(path: str | pathlib.Path | io.BufferedIOBase) -> None:
    """Raise ValueError unless ``path`` is a readable SB3 checkpoint (a zip with intact ``data`` and ``policy.pth``)."""
    path = checkpoint_path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            missing = {"data", "policy.pth"} - set(archive.namelist())
            corrupt = archive.testzip()
    except zipfile.BadZipFile as error:
        raise ValueError(f"{path} is not a PPOELMUR checkpoint: not a valid zip file ({error})") from error
    if missing:
        raise ValueError(f"{path} is not a PPOELMUR checkpoint: it lacks {sorted(missing)}")
    if corrupt is not None:
        raise ValueError(f"{path} is a corrupt checkpoint: zip member {corrupt!r} fails its checksum")
    if isinstance(path, io.BufferedIOBase):
        path.seek(0)

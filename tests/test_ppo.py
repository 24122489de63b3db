"""PPOELMUR: the PPO update sees exactly the rollout's policy; predict, save and load behave as in SB3."""

import logging

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.distributions import (
    BernoulliDistribution,
    CategoricalDistribution,
    MultiCategoricalDistribution,
)
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from torch.distributions import kl_divergence

from sb3_elmur import PPOELMUR, TMaze, evaluate_success
from sb3_elmur.policies import kl_from_uniform
from sb3_elmur.ppo_elmur import DEFAULT_CRITIC_SHARE, EARLIER_CRITIC_SHARE, MAX_CRITIC_GRADIENT_SCALE
from tests.conftest import DictTMaze

CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"))

SEGMENT = 4
TINY = dict(d_model=16, n_layers=2, n_heads=2, memory_size=2, segment_len=SEGMENT)


def make_model(
    env_class=TMaze, policy="ElmurPolicy", n_envs=3, device="cpu", learning_rate=None, **policy_kwargs
) -> PPOELMUR:
    # corridor 20: episodes of up to 21 steps cross 5 segment boundaries and blend memory (2 slots);
    # n_steps = 30 is not a multiple of the segment length, so segments cross rollout boundaries
    env = make_vec_env(env_class, n_envs=n_envs, env_kwargs=dict(corridor_length=20), seed=1)
    return PPOELMUR(
        policy,
        env,
        **({} if learning_rate is None else dict(learning_rate=learning_rate)),
        n_steps=30,
        batch_size=8 * 1000,  # one minibatch
        n_epochs=1,
        sequence_segments=2,
        policy_kwargs=dict(TINY, **policy_kwargs),
        seed=0,
        device=device,
    )


def rollout_log_prob_error(model: PPOELMUR) -> tuple[float, float]:
    """Collect a rollout, then recompute it in segment mode: max |log-prob| and |value| differences."""
    callback = CallbackList([])
    callback.init_callback(model)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    (data,) = list(model.rollout_buffer.get(None))
    with torch.no_grad():
        values, log_prob, _, _ = model.policy.evaluate_sequences(data)
    mask = data.loss_mask
    assert mask.sum() == model.n_steps * model.n_envs  # every rollout step is trained on exactly once
    return (log_prob - data.old_log_prob)[mask].abs().max().item(), (values - data.old_values)[mask].abs().max().item()


@pytest.mark.parametrize(
    "env_class, policy, policy_kwargs",
    [
        (TMaze, "ElmurPolicy", {}),
        (TMaze, "ElmurPolicy", dict(separate_critic_trunk=True, norm_first=True, memory_gradient=False)),
        (TMaze, "ElmurPolicy", dict(features_skip=True, memory_init="zeros", reconstruction_coef=1.0)),
        (TMaze, "ElmurPolicy", dict(sliding_window=False)),
        (TMaze, "ElmurPolicy", dict(sliding_window=False, separate_critic_trunk=True, actor_value_coef=0.5)),
        (TMaze, "ElmurPolicy", dict(episode_clock=True)),
        (TMaze, "ElmurPolicy", dict(segment_position=False)),
        (TMaze, "ElmurPolicy", dict(previous_action=True)),
        (TMaze, "ElmurPolicy", dict(previous_action=True, separate_critic_trunk=True, sliding_window=False)),
        (TMaze, "ElmurPolicy", dict(previous_action=True, previous_action_embedding=True)),
        (TMaze, "ElmurPolicy", dict(attention_segments=3, recency_bias=True)),
        (DictTMaze, "MultiInputElmurPolicy", {}),
        (DictTMaze, "MultiInputElmurPolicy", dict(sliding_window=False)),
        (DictTMaze, "MultiInputElmurPolicy", dict(previous_action=True)),
    ],
)
@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_ppo_update_is_exact(env_class, policy, policy_kwargs, device):
    # a constant learning rate: the last update changes the weights, so the next rollout must recompute the cache of
    # the segment it begins in (the default rate decays to 0 by the last update)
    model = make_model(env_class, policy, device=device, learning_rate=1e-3, **policy_kwargs)
    model.learn(3 * 30 * 3)  # three rollouts: later ones start mid-episode and mid-segment
    assert model.logger.name_to_value["train/approx_kl"] <= 1e-6
    assert model.logger.name_to_value["train/clip_fraction"] == 0
    log_prob_error, value_error = rollout_log_prob_error(model)
    assert log_prob_error <= 1e-5 and value_error <= 1e-5
    assert model.rollout_buffer.prefix_len.max() > 0  # the check covered segments begun in the previous rollout


@pytest.mark.parametrize(
    "env_class, policy, policy_kwargs",
    [
        (TMaze, "ElmurPolicy", {}),
        (TMaze, "ElmurPolicy", dict(previous_action=True, separate_critic_trunk=True)),
        (TMaze, "ElmurPolicy", dict(segment_position=False)),
        (TMaze, "ElmurPolicy", dict(attention_segments=3)),
        (DictTMaze, "MultiInputElmurPolicy", dict(previous_action=True, previous_action_embedding=True)),
    ],
)
def test_recomputed_segment_cache_with_unchanged_weights_is_the_cache(env_class, policy, policy_kwargs):
    """What the rollout buffer keeps of each env's current segment (its observations and the previous actions its
    steps saw) rebuilds the cache that stepping made: with the same weights, the recomputation changes nothing."""
    model = make_model(env_class, policy, **policy_kwargs)
    model.learn(90)
    callback = CallbackList([])
    callback.init_callback(model)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)  # no update after it
    state, buffer = model._last_state, model.rollout_buffer
    buffer.start_rollout(state.step.numpy())
    assert buffer.prefix_len.max() > 0
    with torch.no_grad():
        recomputed = model.policy.recompute_segment_cache(
            state, buffer.prefix_observations, buffer.prefix_previous_actions
        )
    for name, a, b in zip(state._fields, recomputed, state, strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), name


@pytest.mark.parametrize("batch_size, minibatches", [(96, 1), (48, 2), (40, 3), (8, 12), (1, 96)])
def test_batch_size_gives_ppo_number_of_minibatches(batch_size: int, minibatches: int):
    """As in SB3's PPO, an epoch makes ceil(n_steps * n_envs / batch_size) minibatches (at most one per sequence);
    with the whole rollout in one minibatch, one epoch's approx_kl is that of unchanged weights: ~0."""
    env = make_vec_env(TMaze, n_envs=4, env_kwargs=dict(corridor_length=30), seed=0)
    model = PPOELMUR(
        "ElmurPolicy",
        env,
        n_steps=24,
        batch_size=batch_size,
        n_epochs=1,
        sequence_segments=2,
        learning_rate=3e-3,  # constant: later minibatches of the epoch see clearly changed weights
        seed=0,
        policy_kwargs=TINY,
    ).learn(2 * 24 * 4)  # the second rollout starts mid-episode and mid-segment
    sizes = [len(batch.valid) for batch in model.rollout_buffer.get(batch_size)]
    n_sequences = len(model.rollout_buffer.sequence_index)
    assert len(sizes) == min(minibatches, n_sequences) and sum(sizes) == n_sequences
    assert max(sizes) - min(sizes) <= 1  # spread evenly
    if minibatches == 1:
        assert model.logger.name_to_value["train/approx_kl"] <= 1e-9
    else:
        assert model.logger.name_to_value["train/approx_kl"] > 1e-9


def test_invalid_batch_size_and_segment_len_raise():
    env = make_vec_env(TMaze, n_envs=1)
    with pytest.raises(ValueError, match="batch_size"):
        PPOELMUR("ElmurPolicy", env, batch_size=0)
    with pytest.raises(ValueError, match="segment_len"):
        PPOELMUR("ElmurPolicy", env, policy_kwargs=dict(segment_len=0))


def test_predict_save_load(tmp_path):
    model = make_model()
    model.learn(90)
    env = TMaze(corridor_length=20)

    def episode_actions(m: PPOELMUR) -> list[int]:
        obs, _ = env.reset(seed=3)
        state, start, actions = None, np.array([True]), []
        for _ in range(21):
            action, state = m.predict(obs, state=state, episode_start=start, deterministic=True)
            actions.append(int(action))
            obs, _, terminated, truncated, _ = env.step(action)
            start = np.array([False])
            if terminated or truncated:
                break
        return actions

    before = episode_actions(model)
    model.save(tmp_path / "model.zip")
    loaded = PPOELMUR.load(tmp_path / "model.zip")
    assert loaded.policy.config == model.policy.config
    assert episode_actions(loaded) == before

    # single and vectorized observations
    single, state = loaded.predict(env.reset(seed=0)[0])
    assert np.shape(single) == () and state[0].shape[0] == 1
    batch, state = loaded.predict(np.stack([env.reset(seed=0)[0]] * 4))
    assert batch.shape == (4,) and all(s.shape[0] == 4 for s in state)
    with pytest.raises(ValueError, match="state"):
        loaded.predict(np.stack([env.reset(seed=0)[0]] * 3), state=state)


def test_evaluate_policy_carries_the_state():
    model = make_model()
    success = []

    def record(local_vars, _):
        if local_vars["done"]:
            success.append(local_vars["info"]["is_success"])

    rewards, lengths = evaluate_policy(
        model, model.env, n_eval_episodes=6, return_episode_rewards=True, callback=record
    )
    assert len(rewards) == 6 and len(success) == 6
    assert all(1 <= n <= 21 for n in lengths)


def test_episode_start_resets_per_environment():
    model = make_model()
    model.learn(90)
    rng = np.random.default_rng(0)
    obs = rng.random((3, 3)).astype(np.float32)
    _, state = model.predict(obs)
    for _ in range(6):  # move into the second segment, with a memory write
        _, state = model.predict(rng.random((3, 3)).astype(np.float32), state=state)
    start = np.array([True, False, True])
    _, after_reset = model.predict(obs, state=state, episode_start=start)
    _, fresh = model.predict(obs)
    for a, f in zip(after_reset[:6], fresh[:6], strict=True):  # (previous_action is this step's action)
        np.testing.assert_allclose(a[start], f[start], atol=1e-6)
        assert not np.allclose(a[~start], f[~start])


def test_reconstruction_loss_trains_the_write_path():
    """With reconstruction_coef > 0 the auxiliary loss reaches the write attention even without memory_gradient."""
    model = make_model(reconstruction_coef=1.0, memory_gradient=False)
    model.learn(90)
    assert model.logger.name_to_value["train/auxiliary_loss"] > 0
    (data,) = list(model.rollout_buffer.get(None))
    *_, auxiliary_loss = model.policy.evaluate_sequences(data)
    model.policy.zero_grad()
    auxiliary_loss.backward()
    write = model.policy.trunks[0].layers[0].write_attn.query.weight.grad
    assert write is not None and write.abs().sum() > 0


@pytest.mark.parametrize(
    "distribution, n",
    [(CategoricalDistribution(3), 3), (MultiCategoricalDistribution([3, 4]), 7), (BernoulliDistribution(2), 2)],
)
def test_kl_from_uniform_is_torchs_kl_divergence(distribution, n):
    logits = torch.randn(5, n, generator=torch.Generator().manual_seed(0))
    distribution.proba_distribution(logits)
    components = distribution.distribution
    components = components if isinstance(components, list) else [components]
    expected = sum(
        kl_divergence(type(c)(logits=torch.zeros_like(c.logits)), c).reshape(5, -1).sum(dim=-1) for c in components
    )
    torch.testing.assert_close(kl_from_uniform(distribution), expected)


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_uniform_kl_term_vanishes_at_the_uniform_policy_and_pulls_towards_it(device):
    model = make_model(device=device, uniform_kl_coef=0.5)
    model.learn(90)
    assert model.logger.name_to_value["train/auxiliary_loss"] > 0
    (data,) = list(model.rollout_buffer.get(None))
    action_net = model.policy.action_net
    with torch.no_grad():
        action_net.weight.zero_()
        action_net.bias.zero_()
    assert model.policy.evaluate_sequences(data)[-1].item() == 0  # uniform over the actions: no KL
    with torch.no_grad():
        action_net.bias.copy_(torch.tensor([2.0, 0.0, -2.0], device=device))
    auxiliary_loss = model.policy.evaluate_sequences(data)[-1]
    model.policy.zero_grad()
    auxiliary_loss.backward()
    probabilities = torch.softmax(action_net.bias.detach(), dim=0)  # the gradient on the bias: coef * (p - 1/n)
    torch.testing.assert_close(action_net.bias.grad, 0.5 * (probabilities - 1 / 3))


def test_uniform_kl_term_changes_nothing_for_continuous_actions():
    def trained(coef: float) -> dict[str, torch.Tensor]:
        env = make_vec_env("Pendulum-v1", n_envs=2, seed=1)
        model = PPOELMUR(
            "ElmurPolicy", env, n_steps=30, batch_size=64, n_epochs=1, seed=0, device="cpu",
            policy_kwargs=dict(TINY, uniform_kl_coef=coef),
        )  # fmt: skip
        model.learn(60)
        assert not model.policy.has_auxiliary_loss and "train/auxiliary_loss" not in model.logger.name_to_value
        return model.policy.state_dict()

    with_term, without = trained(0.5), trained(0.0)
    assert all(torch.equal(weights, with_term[name]) for name, weights in without.items())


def test_actor_value_head_trains_the_actors_trunk_on_the_returns():
    """actor_value_coef > 0 with a critic trunk: an auxiliary value loss on a value branch of the actor's trunk, whose
    gradient reaches the actor's trunk and not the critic's trunk or MLP; the values PPO uses still come from the
    critic's trunk."""
    model = make_model(separate_critic_trunk=True, actor_value_coef=0.5)
    assert model.policy.actor_value_net is not None and len(model.policy.trunks) == 2
    model.learn(90)
    assert model.logger.name_to_value["train/auxiliary_loss"] > 0
    (data,) = list(model.rollout_buffer.get(None))
    *_, auxiliary_loss = model.policy.evaluate_sequences(data)
    model.policy.zero_grad()
    auxiliary_loss.backward()
    actor, critic = model.policy.trunks
    assert sum(float(p.grad.abs().sum()) for p in actor.parameters() if p.grad is not None) > 0
    assert all(p.grad is None or not p.grad.any() for p in critic.parameters())
    critic_heads = [*model.policy.mlp_extractor.value_net.parameters(), *model.policy.value_net.parameters()]
    assert all(p.grad is None or not p.grad.any() for p in critic_heads)
    plain = make_model(separate_critic_trunk=True, actor_value_coef=0.0).policy.state_dict()
    with_head = make_model(separate_critic_trunk=True, actor_value_coef=0.5).policy.state_dict()
    assert {name.split(".")[0] for name in set(with_head) - set(plain)} == {"actor_value_net"}
    assert all(torch.equal(weights, with_head[name]) for name, weights in plain.items())  # the head is built last
    assert make_model(separate_critic_trunk=False).policy.actor_value_net is None  # no critic trunk: no effect


def test_evaluate_success():
    model = make_model()
    success, mean_return = evaluate_success(model, model.env, n_eval_episodes=6)
    assert 0.0 <= success <= 1.0 and -2.0 <= mean_return <= 1.0
    cartpole = make_vec_env("CartPole-v1", n_envs=1)  # no is_success: None
    assert evaluate_success(PPOELMUR("ElmurPolicy", cartpole, n_steps=64), cartpole, 1)[0] is None


def test_default_learning_rate_decays_to_zero():
    """The default learning rate falls linearly from 3e-4 to 0 over ``learn``; a float stays constant."""
    from stable_baselines3.common.callbacks import BaseCallback

    class RecordRate(BaseCallback):
        def __init__(self):
            super().__init__()
            self.rates: list[float] = []

        def _on_rollout_start(self) -> None:  # after the previous update
            self.rates.append(self.model.policy.optimizer.param_groups[0]["lr"])

        def _on_step(self) -> bool:
            return True

    env = make_vec_env(TMaze, n_envs=2, env_kwargs=dict(corridor_length=3))
    tiny = dict(n_steps=16, batch_size=32, n_epochs=1, policy_kwargs=TINY)
    record = RecordRate()
    model = PPOELMUR("ElmurPolicy", env, **tiny).learn(96, callback=record)  # 3 rollouts of 32 steps
    assert [model.lr_schedule(p) for p in (1.0, 0.5, 0.0)] == pytest.approx([3e-4, 1.5e-4, 0.0])
    # the updates after rollouts 1 and 2 ran at 3e-4 * (1 - 32/96) and 3e-4 * (1 - 64/96)
    assert record.rates[1:] == pytest.approx([2e-4, 1e-4])
    record = RecordRate()
    PPOELMUR("ElmurPolicy", env, learning_rate=1e-3, **tiny).learn(96, callback=record)
    assert record.rates[1:] == pytest.approx([1e-3, 1e-3])


def test_memory_is_logged_and_recorded():
    """TensorBoard scalars of the memory (slot norms, write sizes, the read's share of the attention updates) and one
    episode's memory for plotting."""
    from sb3_elmur import record_memory

    model = make_model()
    model.learn(3 * 30 * 3)
    values = model.logger.name_to_value
    n_layers = model.policy.config.n_layers * len(model.policy.trunks)  # every trunk's layers
    for layer in range(n_layers):
        assert values[f"memory/slot_norm_{layer}"] > 0 and values[f"memory/write_size_{layer}"] > 0
        assert 0 < values[f"memory/read_share_{layer}"] < 1
    env = make_vec_env(TMaze, n_envs=2, env_kwargs=dict(corridor_length=9), seed=1)
    recorded = record_memory(model, env)
    T = len(recorded["rewards"])
    assert T >= 10  # the cue, at least 9 corridor steps, the turn
    assert recorded["memory"].shape == (T, n_layers, model.policy.config.memory_size, model.policy.config.d_model)
    initial = model.policy.initial_state(1)
    assert np.allclose(recorded["memory"][0], initial.memory[0].numpy())
    L = model.policy.config.segment_len
    assert (recorded["anchors"][L] == L - 1).any() and (recorded["anchors"][L - 1] == -1).all()


def test_predict_returns_a_named_state():
    model = make_model()
    obs = np.zeros((2, *model.observation_space.shape), dtype=np.float32)
    _, state = model.predict(obs)
    assert isinstance(state, tuple) and state.memory.shape[0] == 2 and state.step.tolist() == [1, 1]
    _, state = model.predict(obs, state=state)
    assert state.step.tolist() == [2, 2]


@pytest.mark.parametrize("embedding", [False, True])
def test_previous_action_is_carried_by_the_state_and_read_by_the_next_step(embedding: bool):
    model = make_model(previous_action=True, previous_action_embedding=embedding)
    obs = np.zeros((2, *model.observation_space.shape), dtype=np.float32)
    assert model.policy.initial_state(2).previous_action.abs().sum() == 0  # an episode starts with no action
    actions, state = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(state.previous_action, np.eye(model.action_space.n, dtype=np.float32)[actions])

    def action_probs(previous_action: np.ndarray) -> torch.Tensor:
        given = model.policy.state_from_numpy(state._replace(previous_action=previous_action), 2)
        with torch.no_grad():
            distribution, _ = model.policy.get_distribution(torch.as_tensor(obs), given, torch.zeros(2, dtype=bool))
        return distribution.distribution.probs

    # the next step's input sees it: another previous action, other action probabilities
    assert not torch.allclose(action_probs(state.previous_action), action_probs(np.roll(state.previous_action, 1, 1)))


def test_checkpoint_keeps_its_model_across_default_changes(tmp_path):
    """Saved policy_kwargs name every ELMUR knob; a checkpoint from before sliding_window was on by default (its
    policy_kwargs do not name it, nor the knobs added later, nor critic_share) loads with it off, as it was trained,
    and with the later defaults of uniform_kl_coef, critic_share and segment_position off."""
    import json
    import zipfile

    model = make_model()
    assert model.policy_kwargs["sliding_window"] is True and model.policy_kwargs["segment_len"] == SEGMENT
    assert model.policy_kwargs["separate_critic_trunk"] is False and model.policy_kwargs["actor_value_coef"] == 0.0
    model.save(tmp_path / "new.zip")
    new = PPOELMUR.load(tmp_path / "new.zip")
    assert new.policy.config == model.policy.config and new.critic_share == model.critic_share == DEFAULT_CRITIC_SHARE

    # revision 1's model
    old = make_model(
        sliding_window=False,
        separate_critic_trunk=False,
        actor_value_coef=0.0,
        uniform_kl_coef=0.0,
        segment_position=False,
    )
    old.save(tmp_path / "old.zip")
    with zipfile.ZipFile(tmp_path / "old.zip") as archive:  # as saved before the knob existed
        members = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(members["data"])
    data["policy_kwargs"] = {"segment_len": SEGMENT, "d_model": 16, "n_layers": 2, "n_heads": 2, "memory_size": 2}
    del data["critic_share"]
    members["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(tmp_path / "old.zip", "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    loaded = PPOELMUR.load(tmp_path / "old.zip")
    assert loaded.policy.config.sliding_window is False and loaded.policy.config.separate_critic_trunk is False
    assert loaded.policy.config.actor_value_coef == 0.0 and loaded.policy.config.uniform_kl_coef == 0.0
    assert loaded.policy.config.segment_position is False
    assert loaded.critic_share == EARLIER_CRITIC_SHARE
    obs = np.zeros((1, *old.observation_space.shape), dtype=np.float32)
    assert np.array_equal(loaded.predict(obs, deterministic=True)[0], old.predict(obs, deterministic=True)[0])


def test_normalize_value_loss_divides_the_value_loss_by_the_variance_of_the_returns(tmp_path):
    def train(**kwargs) -> PPOELMUR:
        env = make_vec_env(TMaze, n_envs=3, env_kwargs=dict(corridor_length=20), seed=1)
        model = PPOELMUR("ElmurPolicy", env, n_steps=30, learning_rate=1e-3, policy_kwargs=TINY, seed=0, **kwargs)
        return model.learn(90)  # one rollout, one update

    normalized = train(normalize_value_loss=True)
    variance = float(normalized.returns_rms.var)
    assert np.isclose(variance, normalized.rollout_buffer.returns.var(), rtol=1e-3)  # one rollout seen so far
    assert variance < 0.5  # the T-Maze's returns: not the statistics' initial variance of 1
    scaled = train(vf_coef=0.5 / (variance + 1e-8))
    for a, b in zip(normalized.policy.parameters(), scaled.policy.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    plain = train()
    pairs = zip(normalized.policy.parameters(), plain.policy.parameters(), strict=True)
    assert not all(torch.equal(a, b) for a, b in pairs)

    normalized.save(tmp_path / "model")
    loaded = PPOELMUR.load(tmp_path / "model")
    assert loaded.normalize_value_loss and loaded.returns_rms.var == normalized.returns_rms.var


def test_critic_share_scales_the_critics_gradient_into_the_trunk_only():
    """critic_share: each update measures the value term's share of the trunk's gradient and, where it is below
    critic_share, multiplies the gradient that the critic sends into the trunk up to it (never down); the critic's own
    layers keep their gradient and the forward pass is unchanged."""
    model = make_model()
    model.critic_share = 1e6  # far above the share measured: the scale is 1e6 / share, or the cap
    model.learn(90)
    share = model.logger.name_to_value["train/critic_share"]
    scale = model.logger.name_to_value["train/critic_gradient_scale"]
    assert 0 < share and scale == min(1e6 / share, MAX_CRITIC_GRADIENT_SCALE) and scale > 1
    assert float(model.policy.critic_gradient_scale) == pytest.approx(scale)  # float32
    model.critic_share = 1e-12  # far below: not scaled
    model.learn(90)
    assert model.logger.name_to_value["train/critic_gradient_scale"] == 1.0

    (data,) = list(model.rollout_buffer.get(None))
    policy = model.policy
    critic = [*policy.mlp_extractor.value_net.parameters(), *policy.value_net.parameters()]

    def value_gradients(scale: float) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        policy.critic_gradient_scale.fill_(scale)
        values, *_ = policy.evaluate_sequences(data)
        policy.zero_grad()
        ((values - data.returns) ** 2).mean().backward()
        trunk = [p.grad.clone() for p in policy.trunks[0].parameters() if p.grad is not None]
        return values.detach(), trunk, [p.grad.clone() for p in critic]

    values, trunk, heads = value_gradients(1.0)
    scaled_values, scaled_trunk, scaled_heads = value_gradients(3.0)
    assert torch.equal(values, scaled_values) and len(trunk) > 0
    for a, b in zip(trunk, scaled_trunk, strict=True):
        torch.testing.assert_close(b, 3 * a)
    assert all(torch.equal(a, b) for a, b in zip(heads, scaled_heads, strict=True))


def test_critic_share_needs_a_shared_trunk():
    env = make_vec_env(TMaze, n_envs=2, seed=1)
    assert PPOELMUR("ElmurPolicy", env, policy_kwargs=TINY).critic_share == DEFAULT_CRITIC_SHARE
    separate = PPOELMUR("ElmurPolicy", env, policy_kwargs=dict(TINY, separate_critic_trunk=True))
    assert separate.critic_share == 0.0  # no shared trunk: off unless given
    with pytest.raises(ValueError, match="critic_share must be >= 0"):
        PPOELMUR("ElmurPolicy", env, critic_share=-0.1)
    with pytest.raises(ValueError, match="not with separate_critic_trunk"):
        PPOELMUR("ElmurPolicy", env, critic_share=0.1, policy_kwargs=dict(separate_critic_trunk=True))


@pytest.mark.slow  # compiles: minutes on 2 cores the first time (torch caches it on disk)
@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_compiled_update_equals_the_eager_one(device):
    """compile_update changes how the update runs, not what it computes: on a minibatch, the compiled pass gives the
    eager pass's values, log-probabilities and gradients up to floating-point rounding, and training runs with it."""
    env = make_vec_env(TMaze, n_envs=2, env_kwargs=dict(corridor_length=10), seed=1)
    model = PPOELMUR(
        "ElmurPolicy",
        env,
        n_steps=16,
        batch_size=1000,  # one minibatch shape: one compilation
        n_epochs=2,  # the first minibatch of an update runs eager (its layers are watched), the second compiled
        sequence_segments=2,
        policy_kwargs=dict(TINY, n_layers=1),
        seed=0,
        compile_update=True,
        device=device,
    ).learn(32)
    data = next(model.rollout_buffer.get(None))

    def gradients(eager: bool) -> tuple[torch.Tensor, torch.Tensor]:
        model.policy.zero_grad()
        loss = model.minibatch_loss(data, 0.2, None, eager=eager)
        loss.loss.backward()
        return loss.loss.detach(), torch.cat(
            [p.grad.flatten() for p in model.policy.parameters() if p.grad is not None]
        )

    (eager_loss, eager), (compiled_loss, compiled) = gradients(True), gradients(False)
    torch.testing.assert_close(compiled_loss, eager_loss, atol=1e-6, rtol=1e-5)
    assert eager.norm() > 0 and (compiled - eager).norm() <= 1e-5 * eager.norm()
    with torch.no_grad():
        for a, b in zip(model.policy.evaluate_sequences(data), model._evaluate_sequences(data), strict=True):
            torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-5)


class MultiDiscreteTMaze(gym.Wrapper):
    """T-Maze whose action is a MultiDiscrete pair: the T-Maze's move and an unused second choice."""

    def __init__(self, corridor_length: int = 10):
        super().__init__(TMaze(corridor_length))
        self.action_space = spaces.MultiDiscrete([self.env.action_space.n, 3])

    def step(self, action):
        return self.env.step(int(action[0]))


@pytest.mark.slow  # compiles: minutes on 2 cores the first time (torch caches it on disk)
def test_compiled_update_compiles_multidiscrete_actions(caplog):
    """The update of a MultiDiscrete policy compiles whole: no graph of it fails in the backend and falls back to
    eager (SB3 keeps the action's sizes as numpy ints, which the compiled graph would take as tensors)."""
    env = make_vec_env(MultiDiscreteTMaze, n_envs=2, env_kwargs=dict(corridor_length=10), seed=1)
    kwargs = dict(n_steps=16, batch_size=1000, n_epochs=2, sequence_segments=2, policy_kwargs=dict(TINY, n_layers=1))
    model = PPOELMUR("ElmurPolicy", env, seed=0, compile_update=True, **kwargs)
    dynamo_log = logging.getLogger("torch._dynamo")  # torch's loggers do not propagate to the root's handler
    dynamo_log.addHandler(caplog.handler)
    try:
        model.learn(32)
    finally:
        dynamo_log.removeHandler(caplog.handler)
    assert not [r for r in caplog.records if "Backend compiler exception" in r.getMessage()]


@pytest.mark.slow  # compiles: minutes on 2 cores the first time (torch caches it on disk)
def test_compiled_update_with_reconstruction_compiles_once():
    """The reconstruction loss has no data-dependent shape: minibatches with different numbers of complete segments
    run through the graph the first update compiled, none is compiled again."""
    from torch._dynamo.utils import counters

    env = make_vec_env(TMaze, n_envs=4, env_kwargs=dict(corridor_length=20), seed=0)
    kwargs = dict(n_steps=64, batch_size=64, n_epochs=2, policy_kwargs=dict(TINY, reconstruction_coef=0.1))
    model = PPOELMUR("ElmurPolicy", env, seed=0, compile_update=True, **kwargs).learn(256)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs > 0
    model.learn(1024, reset_num_timesteps=False)  # episodes end at other places in these rollouts
    assert counters["stats"]["unique_graphs"] == graphs


@pytest.mark.slow  # compiles: a minute on 2 cores the first time (torch caches it on disk)
@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_compiled_acting_equals_the_eager_one(tmp_path, device):
    """compile_acting changes how a step runs, not what it computes: stepping the same observations from the same
    state, through segment writes and an episode reset, gives the eager step's actions' distribution, values and
    state up to floating-point rounding, also after training has changed the weights; the option is saved."""
    env = make_vec_env(TMaze, n_envs=2, env_kwargs=dict(corridor_length=10), seed=1)
    kwargs = dict(n_steps=16, batch_size=32, n_epochs=1, policy_kwargs=dict(TINY, segment_len=4), seed=0, device=device)
    eager = PPOELMUR("ElmurPolicy", env, **kwargs)
    compiled = PPOELMUR("ElmurPolicy", env, compile_acting=True, learning_rate=1e-2, **kwargs)
    assert "step" in vars(compiled.policy.trunks[0])  # the compiled step, in place of the method
    generator = torch.Generator().manual_seed(0)
    observations = torch.rand(11, 2, *env.observation_space.shape, generator=generator).to(device)
    starts = torch.zeros(11, 2, dtype=torch.bool, device=device)
    starts[6, 1] = True  # env 1 begins a new episode mid-segment

    def assert_same_steps() -> None:
        eager.policy.load_state_dict(compiled.policy.state_dict())
        states = [eager.policy.initial_state(2), compiled.policy.initial_state(2)]
        with torch.inference_mode():
            for obs, start in zip(observations, starts, strict=True):  # 11 steps, segments of 4: writes at 3 and 7
                outputs = []
                for i, policy in enumerate((eager.policy, compiled.policy)):
                    distribution, states[i] = policy.get_distribution(obs, states[i], start)
                    outputs.append((distribution.distribution.probs, policy.predict_values(obs, states[i], start)))
                for a, b in zip(*outputs, strict=True):
                    torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
                for a, b in zip(*states, strict=True):
                    torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
        assert (states[0].anchors.amax(-1) >= 0).all()  # both envs wrote their memory (env 1 after its reset)

    assert_same_steps()
    before = [p.detach().clone() for p in compiled.policy.parameters()]
    compiled.learn(64)  # the optimizer changes the weights in place: the compiled step must use the new ones
    assert any(not torch.equal(a, b) for a, b in zip(before, compiled.policy.parameters(), strict=True))
    assert_same_steps()
    compiled.save(tmp_path / "model")
    assert PPOELMUR.load(tmp_path / "model").compile_acting

"""Bad input fails loudly, episodes do not leak into each other, runs are reproducible and resumable."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import SubprocVecEnv, VecFrameStack, VecNormalize

from sb3_elmur import PPOELMUR, TMaze
from tests.conftest import DictTMaze

TINY = dict(d_model=16, n_layers=1, n_heads=2, memory_size=2, segment_len=4)


def tiny_model(env, **kwargs) -> PPOELMUR:
    kwargs = dict(dict(n_steps=16, batch_size=32, n_epochs=2, sequence_segments=2, seed=0), **kwargs)
    return PPOELMUR(kwargs.pop("policy", "ElmurPolicy"), env, policy_kwargs=kwargs.pop("policy_kwargs", TINY), **kwargs)


@pytest.fixture(scope="module")
def model() -> PPOELMUR:
    return tiny_model(make_vec_env(TMaze, n_envs=2, seed=0)).learn(64)


class SpaceEnv(gym.Env):
    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space | None = None):
        self.observation_space, self.action_space = observation_space, action_space or spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


# --- predict ------------------------------------------------------------------------------------------------------


def test_wrong_observation_shape_names_both_shapes(model):
    with pytest.raises(ValueError, match=r"\(4,\).*\(3,\)"):
        model.predict(np.zeros(4, dtype=np.float32))


def test_wrong_observation_dtype(model):
    with pytest.raises(ValueError, match="dtype"):
        model.predict(np.array(["a", "b", "c"]))


def test_state_from_another_number_of_envs(model):
    _, state = model.predict(np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"state\.memory has shape .* for 3 envs"):
        model.predict(np.zeros((3, 3), dtype=np.float32), state=state)


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda s: s[:-1], "tuple of 7"),
        (lambda s: [*s[:2], s[2][:, :, :1], *s[3:]], r"state\.keys has shape"),
        (lambda s: [s[0], s[1].astype(np.float32), *s[2:]], r"state\.anchors has dtype"),
        (lambda s: "state", "tuple of 7"),
    ],
)
def test_malformed_state(model, corrupt, message):
    obs = np.zeros((2, 3), dtype=np.float32)
    _, state = model.predict(obs)
    with pytest.raises(ValueError, match=message):
        model.predict(obs, state=corrupt(state))


def test_wrong_episode_start_length(model):
    with pytest.raises(ValueError, match="episode_start"):
        model.predict(np.zeros((2, 3), dtype=np.float32), episode_start=np.array([True, False, True]))


# --- construction -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "space, wrapper",
    [
        (spaces.Tuple((spaces.Discrete(2), spaces.Discrete(3))), "FlattenObservation"),
        (spaces.Sequence(spaces.Discrete(2)), "ObservationWrapper"),
        (spaces.Graph(spaces.Box(0, 1, (2,)), None), "ObservationWrapper"),
        (spaces.Text(5), "ObservationWrapper"),
    ],
)
def test_unsupported_observation_space_suggests_a_wrapper(space, wrapper):
    with pytest.raises(ValueError, match=f"{type(space).__name__}.*{wrapper}"):
        PPOELMUR("ElmurPolicy", SpaceEnv(space))


def test_unsupported_action_space():
    with pytest.raises(ValueError, match=r"action space Tuple.*ActionWrapper"):
        PPOELMUR("ElmurPolicy", SpaceEnv(spaces.Box(0, 1, (2,)), spaces.Tuple((spaces.Discrete(2),))))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(policy_kwargs=dict(segment_len=0)), "segment_len"),
        (dict(policy_kwargs=dict(memory_size=0)), "memory_size"),
        (dict(policy_kwargs=dict(d_model=30, n_heads=4)), "divisible"),
        (dict(policy_kwargs=dict(lru_alpha=0.0)), "lru_alpha"),
        (dict(policy_kwargs=dict(lru_alpha=1.01)), "lru_alpha"),
        (dict(batch_size=-1), "batch_size"),
        (dict(sequence_segments=0), "sequence_segments"),
    ],
)
def test_invalid_knobs_raise_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PPOELMUR("ElmurPolicy", make_vec_env(TMaze, n_envs=1), **kwargs)


# --- checkpoints --------------------------------------------------------------------------------------------------


def test_corrupt_checkpoint(tmp_path, model):
    path = tmp_path / "model.zip"
    model.save(path)
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="zip"):
        PPOELMUR.load(truncated)
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="zip"):
        PPOELMUR.load(garbage)
    with pytest.raises(FileNotFoundError, match=r"missing\.zip$"):
        PPOELMUR.load(tmp_path / "missing.zip")
    with pytest.raises(FileNotFoundError, match=r"missing nor .*missing\.zip$"):
        PPOELMUR.load(tmp_path / "missing")


def test_checkpoint_keeps_configuration_and_loads_with_other_number_of_envs(tmp_path):
    kwargs = dict(TINY, memory_size=3, lru_alpha=0.5, norm_first=True, separate_critic_trunk=True)
    model = tiny_model(make_vec_env(TMaze, n_envs=2, seed=0), policy_kwargs=kwargs).learn(32)
    model.save(tmp_path / "model.zip")
    loaded = PPOELMUR.load(tmp_path / "model.zip", env=make_vec_env(TMaze, n_envs=3, seed=1))
    assert {k: getattr(loaded.policy.config, k) for k in kwargs} == kwargs
    assert loaded.n_envs == 3
    loaded.learn(48)  # state and buffer were re-initialised for 3 envs
    assert loaded._last_state.memory.shape[0] == 3


# --- no leak across episodes --------------------------------------------------------------------------------------


def test_episode_does_not_depend_on_earlier_episodes(model):
    """Env 0 and env 1 see different first episodes, then the same second episode: identical outputs there."""
    rng = np.random.default_rng(0)
    first = rng.random((2, 7, 3)).astype(np.float32)  # 7 steps: crosses a segment and writes memory
    second = rng.random((9, 3)).astype(np.float32)
    state = None
    for t in range(7):
        _, state = model.predict(first[:, t], state=state, episode_start=np.array([t == 0, t == 0]))
    probs = []
    for t in range(9):
        obs = np.stack([second[t], second[t]])
        obs_tensor, _ = model.policy.obs_to_tensor(obs)
        with torch.no_grad():
            starts = torch.tensor([t == 0, t == 0], device=model.device)
            dist, next_state = model.policy.get_distribution(
                obs_tensor, model.policy.state_from_numpy(state, 2), starts
            )
        state = tuple(a.cpu().numpy() for a in next_state)
        probs.append(dist.distribution.probs.cpu().numpy())
    probs = np.stack(probs)
    np.testing.assert_allclose(probs[:, 0], probs[:, 1], atol=1e-6)


# --- reproducibility and resume -----------------------------------------------------------------------------------


def test_same_seed_same_run():
    def run():
        model = tiny_model(make_vec_env(TMaze, n_envs=2, seed=0))
        model.learn(64)
        losses = {k: v for k, v in model.logger.name_to_value.items() if k.startswith("train/")}
        return losses, [p.detach().clone() for p in model.policy.parameters()]

    (losses_a, params_a), (losses_b, params_b) = run(), run()
    assert losses_a == losses_b and "train/loss" in losses_a
    assert all(torch.equal(a, b) for a, b in zip(params_a, params_b, strict=True))


def test_resume_training(tmp_path):
    model = tiny_model(make_vec_env(TMaze, n_envs=2, seed=0)).learn(64)
    model.save(tmp_path / "model.zip")
    loaded = PPOELMUR.load(tmp_path / "model.zip", env=make_vec_env(TMaze, n_envs=2, seed=0))
    loaded.learn(64, reset_num_timesteps=False)
    assert loaded.num_timesteps == 128


# --- wrappers, spaces and devices ---------------------------------------------------------------------------------


def test_vec_normalize_and_box_actions():
    env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2, seed=0))
    model = tiny_model(env).learn(64)
    action, _ = model.predict(env.reset())
    assert action.shape == (2, 1) and np.all(np.abs(action) <= 2)


def test_subproc_vec_env():
    env = make_vec_env(TMaze, n_envs=2, seed=0, vec_env_cls=SubprocVecEnv)
    try:
        tiny_model(env).learn(64)
    finally:
        env.close()


def test_dict_observations():
    model = tiny_model(make_vec_env(DictTMaze, n_envs=2, seed=0), policy="MultiInputElmurPolicy").learn(64)
    action, _ = model.predict({"vector": np.zeros((2, 2), np.float32), "junction": np.array([0, 1])})
    assert action.shape == (2,)


class ImageTMaze(gym.ObservationWrapper):
    """T-Maze rendered as a 36x36 grey image (the smallest NatureCNN accepts)."""

    def __init__(self):
        super().__init__(TMaze(corridor_length=6))
        self.observation_space = spaces.Box(0, 255, (36, 36, 1), np.uint8)

    def observation(self, obs):
        image = np.zeros((36, 36, 1), np.uint8)
        image[:12], image[12:24], image[24:] = (obs * 255).astype(np.uint8)[:, None, None]
        return image


def test_frame_stacked_images():
    env = VecFrameStack(make_vec_env(ImageTMaze, n_envs=2, seed=0), n_stack=2)
    model = tiny_model(
        env, policy="CnnElmurPolicy", policy_kwargs=dict(TINY, features_extractor_kwargs=dict(features_dim=32))
    )
    model.learn(32)
    action, _ = model.predict(env.reset())
    assert action.shape == (2,)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda():
    model = tiny_model(make_vec_env(TMaze, n_envs=2, seed=0), device="cuda").learn(64)
    assert next(model.policy.parameters()).is_cuda
    action, state = model.predict(np.zeros((2, 3), np.float32))
    assert action.shape == (2,) and state[0].shape[0] == 2


@pytest.mark.slow
def test_million_step_episode_stays_finite_and_bounded():
    """10^6 steps (62,500 segments of 16): finite outputs, slot norms within Proposition 2's bound, exact anchors."""
    from sb3_elmur.model import ElmurConfig, ElmurTransformer

    torch.manual_seed(0)
    L, S, steps = 16, 250, 10**6
    config = dict(memory_size=4, segment_len=L, lru_alpha=0.79, memory_init="learned", norm_first=False)
    model = ElmurTransformer(3, ElmurConfig(d_model=32, n_layers=2, n_heads=2, **config)).eval()
    # candidates leave a LayerNorm: norm <= sqrt(d) * max|gamma| + |beta|; the initial memory is below that too
    bound = max(
        layer.norm_memory_ff.weight.abs().max().item() * 32**0.5 + layer.norm_memory_ff.bias.norm().item()
        for layer in model.layers
    )
    assert model.initial_memory.norm(dim=-1).max() <= bound
    state = model.initial_state(1)
    start = model.segment_start(state)
    valid = torch.ones(1, S, L, dtype=torch.bool)
    with torch.no_grad():
        for first in range(0, steps, S * L):
            features = torch.rand(1, S, L, 3)
            start_step = first + torch.arange(S)[None] * L
            outputs, memories, start = model(features, start, start_step, start_step == 0, valid)
            memory, anchors = memories[:, -1], start.anchors
            assert torch.isfinite(outputs).all() and torch.isfinite(memory).all()
            assert memory.norm(dim=-1).max() <= bound * (1 + 1e-5)
        assert anchors.max().item() == steps - 1
        y, _ = model.step(torch.rand(1, 3), state._replace(memory=memory, anchors=anchors, step=torch.tensor([steps])))
    assert torch.isfinite(y).all()

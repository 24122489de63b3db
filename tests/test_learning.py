"""Learning checks with the library defaults (slow: minutes each; run by benchmarks/slow_checks.sh, not by CI)."""

import pytest
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from sb3_elmur import PPOELMUR, evaluate_success

pytestmark = pytest.mark.slow


def tmaze_env(corridor_length: int, seed: int):
    return make_vec_env("PassiveTMaze-v0", n_envs=8, env_kwargs=dict(corridor_length=corridor_length), seed=seed)


def train_tmaze(
    corridor_length: int, segment_len: int, steps: int, seed: int, sampled: bool = False, **ppo_kwargs
) -> PPOELMUR:
    """PPOELMUR with the library defaults (but ``segment_len`` and any ``ppo_kwargs``, for measuring an option)
    trained on the T-Maze: one corridor length, or with ``sampled`` a length drawn from 1..``corridor_length`` per
    episode."""
    env = (
        make_vec_env("SampledTMaze-v0", n_envs=8, env_kwargs=dict(max_length=corridor_length), seed=seed)
        if sampled
        else tmaze_env(corridor_length, seed)
    )
    model = PPOELMUR("ElmurPolicy", env, policy_kwargs=dict(segment_len=segment_len), seed=seed, **ppo_kwargs)
    return model.learn(steps)


def tmaze_success(model: PPOELMUR, corridor_length: int, seed: int) -> float:
    """Success over 100 deterministic episodes on fresh envs."""
    success, _ = evaluate_success(model, tmaze_env(corridor_length, seed + 1000))
    print(f"T-Maze corridor {corridor_length}, segment {model.policy.segment_len}, seed {seed}: success {success:.2f}")
    return success


@pytest.mark.parametrize("seed", [0, 1])
def test_tmaze_across_segment_boundaries(seed: int):
    """Corridor 30, segments of 10: the cue reaches the junction only through 3 memory writes."""
    assert tmaze_success(train_tmaze(30, 10, 300_000, seed), 30, seed) >= 0.95


@pytest.mark.parametrize("seed", [0, 1])
def test_tmaze_horizon(seed: int):
    """Trained on corridors of 1..30 steps (0 to 3 writes before the junction), segments of 10; then the same model,
    unchanged, at corridor 300 (30 writes, each a blend of the single slot)."""
    model = train_tmaze(30, 10, 300_000, seed, sampled=True)
    assert tmaze_success(model, 300, seed) >= 0.95


@pytest.mark.parametrize("seed", [0, 1])
def test_tmaze_within_one_segment(seed: int):
    """Corridor 10 with segment_len 16 > the 11-step episode: self-attention alone carries the cue."""
    assert tmaze_success(train_tmaze(10, 16, 150_000, seed), 10, seed) >= 0.95


@pytest.mark.parametrize("seed", [0, 1])
def test_cartpole_without_velocities(seed: int):
    """CartPoleNoVel-v1 (rl_zoo3's velocity-masked CartPole) in a VecNormalize: velocities must be inferred."""
    pytest.importorskip("rl_zoo3")
    import rl_zoo3.import_envs  # noqa: F401  (registers CartPoleNoVel-v1)

    env = VecNormalize(make_vec_env("CartPoleNoVel-v1", n_envs=8, seed=seed))
    model = PPOELMUR("ElmurPolicy", env, seed=seed).learn(50_000)
    eval_env = VecNormalize(make_vec_env("CartPoleNoVel-v1", n_envs=8, seed=seed + 1000), training=False)
    eval_env.obs_rms, eval_env.norm_reward = env.obs_rms.copy(), False
    _, mean_return = evaluate_success(model, eval_env)
    print(f"CartPoleNoVel-v1 seed {seed}: mean return {mean_return:.1f} after 50k steps")
    assert mean_return >= 450

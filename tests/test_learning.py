"""Learning sanity checks (slow: minutes each; run by benchmarks/slow_checks.sh, not by CI)."""

import pytest
from stable_baselines3.common.env_util import make_vec_env

from sb3_elmur import PPOELMUR, evaluate_success

pytestmark = pytest.mark.slow


def evaluate(model: PPOELMUR, env_id: str, env_kwargs: dict | None = None) -> tuple[float, float | None]:
    """Mean return and success rate over 100 deterministic episodes on fresh envs."""
    success, mean_return = evaluate_success(model, make_vec_env(env_id, n_envs=8, env_kwargs=env_kwargs, seed=1000))
    return mean_return, success


@pytest.mark.parametrize("seed", [0, 1])
def test_cartpole(seed: int):
    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    model = PPOELMUR("ElmurPolicy", env, seed=seed).learn(100_000)
    mean_return, _ = evaluate(model, "CartPole-v1")
    print(f"CartPole-v1 seed {seed}: mean return {mean_return:.1f} after 100k steps")
    assert mean_return >= 475


@pytest.mark.parametrize("seed", [0, 1])
def test_tmaze_within_one_segment(seed: int):
    """Corridor 10 with segment_len 16 > the 11-step episode: self-attention alone carries the cue."""
    env_kwargs = dict(corridor_length=10)
    env = make_vec_env("PassiveTMaze-v0", n_envs=8, env_kwargs=env_kwargs, seed=seed)
    # ent_coef 0.03 as in the zoo's PassiveTMaze-v0 entry (library default 0.01: seed 0 100%, seed 1 44%)
    model = PPOELMUR("ElmurPolicy", env, ent_coef=0.03, policy_kwargs=dict(segment_len=16), seed=seed)
    model.learn(150_000)
    _, success = evaluate(model, "PassiveTMaze-v0", env_kwargs)
    print(f"T-Maze corridor 10, segment 16, seed {seed}: success {success:.2f} after 150k steps")
    assert success >= 0.95

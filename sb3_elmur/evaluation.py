"""Success rate and mean return of a model (SB3's ``evaluate_policy`` carries the recurrent state), and the memory of
one episode for plotting."""

from typing import cast

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv

from sb3_elmur.policies import ElmurActorCriticPolicy


def evaluate_success(
    model: BaseAlgorithm,
    env: VecEnv,
    n_eval_episodes: int = 100,
    deterministic: bool = True,
    return_episode_returns: bool = False,
) -> tuple[float | None, float] | tuple[float | None, float, list[float]]:
    """Fraction of episodes whose last ``info`` says ``is_success`` (None if the env never says) and mean return.

    :param model: any SB3 model (PPOELMUR, RecurrentPPO, PPO, ...)
    :param env: the evaluation envs
    :param n_eval_episodes: episodes to run (spread over the envs as ``evaluate_policy`` does)
    :param deterministic: take the most likely actions
    :param return_episode_returns: also return each episode's return (as ``evaluate_policy``'s
        ``return_episode_rewards``)
    """
    successes: list[bool] = []

    def record(local_vars: dict, _: dict) -> None:
        if local_vars["done"] and "is_success" in local_vars["info"]:
            successes.append(bool(local_vars["info"]["is_success"]))

    returns, _ = evaluate_policy(
        model, env, n_eval_episodes, deterministic=deterministic, callback=record, return_episode_rewards=True
    )
    episode_returns = [float(r) for r in cast(list[float], returns)]
    success = float(np.mean(successes)) if successes else None
    if return_episode_returns:
        return success, float(np.mean(episode_returns)), episode_returns
    return success, float(np.mean(episode_returns))


def record_memory(model: BaseAlgorithm, env: VecEnv, max_steps: int = 10_000, deterministic: bool = True) -> dict:
    """Run one episode in the first of ``env``'s environments and record the PPOELMUR memory before every step.

    :param model: a PPOELMUR model
    :param env: a VecEnv (its first environment is recorded)
    :param max_steps: stop after this many steps if the episode has not ended
    :param deterministic: take the most likely actions
    :return: ``memory`` (T, layers, M, d) and ``anchors`` (T, layers, M) before each step (the layers of every trunk,
        the actor's first, then the critic trunk's), ``rewards`` (T,)
    """
    policy = cast(ElmurActorCriticPolicy, model.policy)
    obs = cast(np.ndarray, env.reset())
    state: tuple[np.ndarray, ...] | None = tuple(a.cpu().numpy() for a in policy.initial_state(env.num_envs))
    episode_start = np.ones(env.num_envs, dtype=bool)
    memories, anchors, rewards = [], [], []
    for _ in range(max_steps):  # the state before each step: at the first, what a fresh episode reads
        assert state is not None
        memories.append(state[0][0].copy())
        anchors.append(state[1][0].copy())
        action, state = model.predict(obs, state=state, episode_start=episode_start, deterministic=deterministic)
        obs, reward, done, _ = cast(tuple[np.ndarray, np.ndarray, np.ndarray, list], env.step(action))
        rewards.append(float(reward[0]))
        episode_start = done
        if done[0]:
            break
    return dict(memory=np.stack(memories), anchors=np.stack(anchors), rewards=np.asarray(rewards))

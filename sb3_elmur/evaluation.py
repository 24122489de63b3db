"""Success rate and mean return of a model, by SB3's ``evaluate_policy`` (which carries the recurrent state)."""

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv


def evaluate_success(
    model: BaseAlgorithm, env: VecEnv, n_eval_episodes: int = 100, deterministic: bool = True
) -> tuple[float | None, float]:
    """Fraction of episodes whose last ``info`` says ``is_success`` (None if the env never says) and mean return.

    :param model: any SB3 model (PPOELMUR, RecurrentPPO, PPO, ...)
    :param env: the evaluation envs
    :param n_eval_episodes: episodes to run (spread over the envs as ``evaluate_policy`` does)
    :param deterministic: take the most likely actions
    """
    successes: list[bool] = []

    def record(local_vars: dict, _: dict) -> None:
        if local_vars["done"] and "is_success" in local_vars["info"]:
            successes.append(bool(local_vars["info"]["is_success"]))

    mean_return, _ = evaluate_policy(model, env, n_eval_episodes, deterministic=deterministic, callback=record)
    return (float(np.mean(successes)) if successes else None), float(mean_return)

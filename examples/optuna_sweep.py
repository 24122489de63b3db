"""An Optuna sweep of PPOELMUR from user code (no RL Zoo), with the package's search space, on a shared storage.

Start it in as many processes (or machines) as you like, with the same --storage and --study-name: each one joins
the study, and together they stop once the study holds --total-trials finished or running trials.

    pip install torch==2.13.0 && pip install -e ".[zoo]"
    python examples/optuna_sweep.py --storage optuna_sweep.log &        # one machine: a journal file ...
    python examples/optuna_sweep.py --storage optuna_sweep.log          # ... a second worker joins the same study
    python examples/optuna_sweep.py --storage sqlite:///optuna_sweep.db # or SQLite (one machine)
    python examples/optuna_sweep.py --storage postgresql://user:password@db-host/optuna  # several machines

(PostgreSQL needs `pip install "psycopg[binary]"` on each machine, and a database that all of them reach.)
"""

import argparse

import numpy as np
import optuna
import torch
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_elmur import PPOELMUR
from sb3_elmur.zoo import optuna_storage, sample_ppo_elmur_params


def objective(trial: optuna.Trial, args: argparse.Namespace) -> float:
    hyperparams = sample_ppo_elmur_params(trial, n_envs=args.n_envs)
    env_kwargs = dict(corridor_length=args.corridor_length)
    env = make_vec_env("PassiveTMaze-v0", n_envs=args.n_envs, env_kwargs=env_kwargs, seed=trial.number)
    eval_env = make_vec_env("PassiveTMaze-v0", n_envs=1, env_kwargs=env_kwargs, seed=10_000 + trial.number)
    model = PPOELMUR("ElmurPolicy", env, device="cpu", seed=trial.number, **hyperparams)
    chunk = max(args.timesteps // args.n_evaluations, 1)
    mean_reward = -np.inf
    try:
        for step in range(args.n_evaluations):
            model.learn(chunk, reset_num_timesteps=step == 0)
            mean_reward, _ = evaluate_policy(model, eval_env, n_eval_episodes=args.eval_episodes)
            trial.report(mean_reward, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
    finally:
        env.close()
        eval_env.close()
    return float(mean_reward)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--storage", default="optuna_sweep.log", help="journal .log path, sqlite:///..., postgresql://..."
    )
    parser.add_argument("--study-name", default="ppo_elmur_tmaze")
    parser.add_argument("--total-trials", type=int, default=20, help="for the whole study, all workers together")
    parser.add_argument("--timesteps", type=int, default=20_000, help="training steps per trial")
    parser.add_argument("--n-evaluations", type=int, default=4)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--n-envs", type=int, default=4)
    parser.add_argument("--corridor-length", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)

    study = optuna.create_study(
        study_name=args.study_name,
        storage=optuna_storage(args.storage),
        load_if_exists=True,  # the second worker joins the first one's study
        direction="maximize",
        sampler=optuna.samplers.TPESampler(n_startup_trials=5, multivariate=True),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
    )
    counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    if len(study.get_trials(states=counted)) < args.total_trials:
        study.optimize(
            lambda trial: objective(trial, args),
            callbacks=[MaxTrialsCallback(args.total_trials, states=counted)],
            gc_after_trial=True,
        )
    finished = study.get_trials(states=(TrialState.COMPLETE,))
    print(f"{len(study.trials)} trials in study {args.study_name!r}, {len(finished)} complete")
    if finished:
        print(f"best value {study.best_value:.3f} with {study.best_params}")


if __name__ == "__main__":
    main()

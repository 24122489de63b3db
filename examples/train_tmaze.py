"""Train PPO-ELMUR on the passive T-Maze, report its success rate, save, reload and check the reload.

python examples/train_tmaze.py                      # corridor 10, 150k steps
python examples/train_tmaze.py --corridor 30 --segment-len 10 --steps 300000
"""

import argparse

import torch
from stable_baselines3.common.env_util import make_vec_env

from sb3_elmur import PPOELMUR, evaluate_success


def success_rate(model: PPOELMUR, corridor: int, episodes: int, seed: int) -> float:
    """Fraction of ``episodes`` T-Maze episodes that end at the cued arm, acting deterministically."""
    env = make_vec_env("PassiveTMaze-v0", n_envs=8, env_kwargs=dict(corridor_length=corridor), seed=seed)
    return evaluate_success(model, env, episodes)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corridor", type=int, default=10, help="T-Maze corridor length")
    parser.add_argument("--segment-len", type=int, default=16, help="ELMUR segment length (steps)")
    parser.add_argument("--steps", type=int, default=150_000, help="training environment steps")
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", default="ppo_elmur_tmaze.zip", help="where to save the trained model")
    args = parser.parse_args()
    torch.set_num_threads(1)  # small models are fastest on one thread

    env_kwargs = dict(corridor_length=args.corridor)
    env = make_vec_env("PassiveTMaze-v0", n_envs=args.n_envs, env_kwargs=env_kwargs, seed=args.seed)
    model = PPOELMUR("ElmurPolicy", env, policy_kwargs=dict(segment_len=args.segment_len), seed=args.seed, verbose=1)
    model.learn(args.steps)
    rate = success_rate(model, args.corridor, 100, seed=args.seed + 1000)
    print(f"success rate (corridor {args.corridor}, 100 episodes, deterministic): {rate:.2f}")

    model.save(args.save)
    reloaded = PPOELMUR.load(args.save)
    reloaded_rate = success_rate(reloaded, args.corridor, 100, seed=args.seed + 1000)
    print(f"reloaded from {args.save}: success rate {reloaded_rate:.2f}")


if __name__ == "__main__":
    main()

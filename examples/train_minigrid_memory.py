"""Train PPO-ELMUR on MiniGrid's Memory task from the agent's own partial view, evaluate, save, and draw a strip.

The agent sees an object in a small room, walks down a corridor where it can no longer see it, and must step to the
matching one of two objects at the end. Observation: the 7x7 partial view as an RGB image (MiniGrid's
``RGBImgPartialObsWrapper`` then ``ImgObsWrapper``: 56x56x3, no mission string), so ``CnnElmurPolicy`` (NatureCNN).

    pip install torch==2.13.0 && pip install -e ".[envs]" matplotlib
    python examples/train_minigrid_memory.py                                   # MemoryS7, 1M steps
    python examples/train_minigrid_memory.py --env MiniGrid-MemoryS11-v0 --steps 3000000
    python examples/train_minigrid_memory.py --load logs/ppo_elmur/MiniGrid-MemoryS7-v0_1/MiniGrid-MemoryS7-v0.zip
                                                       # a saved model (e.g. the RL Zoo's): evaluate and draw only

Prints the success rate over 100 episodes on fresh envs, acting deterministically and by sampling (a policy that
must guess scores about 0.5), saves the model, and writes a PNG strip of one successful episode (the agent's view
at every step).
"""

import argparse

import gymnasium as gym
import minigrid  # noqa: F401  (registers the MiniGrid-* ids)
import numpy as np
import torch
from minigrid.wrappers import ImgObsWrapper, RGBImgPartialObsWrapper
from stable_baselines3.common.env_util import make_vec_env

from sb3_elmur import PPOELMUR, SuccessOnPositiveReward, evaluate_success


def partial_rgb_view(env: gym.Env) -> gym.Env:
    return SuccessOnPositiveReward(ImgObsWrapper(RGBImgPartialObsWrapper(env)))


def make_env(env_id: str, n_envs: int, seed: int):
    return make_vec_env(env_id, n_envs=n_envs, seed=seed, wrapper_class=partial_rgb_view)


def successful_episode(model: PPOELMUR, env_id: str, seed: int, tries: int = 20) -> list[np.ndarray] | None:
    """The agent's views over one episode that ends at the matching object (deterministic actions), or None."""
    env = make_env(env_id, 1, seed)
    for _ in range(tries):
        obs, state, start, frames = env.reset(), None, np.ones(1, dtype=bool), []
        while True:
            frames.append(obs[0])
            action, state = model.predict(obs, state=state, episode_start=start, deterministic=True)
            obs, _, start, infos = env.step(action)
            if start[0]:
                if infos[0].get("is_success"):
                    return frames
                break
    return None


def save_strip(frames: list[np.ndarray], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(frames), figsize=(1.2 * len(frames), 1.5), squeeze=False)
    for t, (ax, frame) in enumerate(zip(axes[0], frames, strict=True)):
        ax.imshow(frame)
        ax.set_title(f"t={t}", fontsize=7)
        ax.axis("off")
    fig.savefig(path, dpi=100, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="MiniGrid-MemoryS7-v0")
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", default="ppo_elmur_minigrid_memory.zip")
    parser.add_argument("--strip", default="minigrid_memory_episode.png", help="PNG strip of a successful episode")
    parser.add_argument("--load", default=None, help="a saved model to evaluate and draw instead of training one")
    args = parser.parse_args()
    torch.set_num_threads(1)

    if args.load:
        model = PPOELMUR.load(args.load)
    else:
        model = PPOELMUR("CnnElmurPolicy", make_env(args.env, args.n_envs, args.seed), seed=args.seed, verbose=1)
        model.learn(args.steps, progress_bar=False)
    for deterministic in (True, False):
        success, mean_return = evaluate_success(model, make_env(args.env, 8, args.seed + 1000), 100, deterministic)
        mode = "deterministic" if deterministic else "sampled"
        print(f"{args.env}, {mode} actions, 100 episodes: success {success:.2f}, mean return {mean_return:.3f}")
    if not args.load:
        model.save(args.save)
    frames = successful_episode(model if args.load else PPOELMUR.load(args.save), args.env, args.seed + 2000)
    if frames is None:
        print("no successful episode in 20 tries: no strip")
    else:
        save_strip(frames, args.strip)
        print(f"strip of a successful episode ({len(frames)} steps): {args.strip}")


if __name__ == "__main__":
    main()

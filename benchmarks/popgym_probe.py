"""Right answers by episode step of the cached POPGym models: where in an episode a policy knows the answer.

    python -m benchmarks.popgym_probe --task CountRecallEasy --algorithms ppo_elmur recurrent_ppo --seeds 0
    python -m benchmarks.popgym_probe --task RepeatPreviousEasy --block 16
    python -m benchmarks.popgym_probe --name popgym_ablation --algorithms ppo_elmur \
        --hyperparams '{"ppo_elmur": {"policy_kwargs": {"episode_clock": true}}}'

For the card tasks (Repeat*, CountRecall, Autoencode's answer phase, HigherLower) each step's reward is positive
for a right answer and negative for a wrong one; the table gives the fraction of positive rewards at each episode
step (deterministic actions, fresh evaluation envs, in blocks of ``--block`` steps), so a block that straddles a
segment boundary shows what only the memory carries. For CountRecallEasy it adds what a policy without memory
that knows the episode step can reach (from the step and the card it sees, the most likely count of the queried
colour: a hypergeometric mode), the bar for a policy that counts.
Trains nothing: the jobs must be in the cache (``python -m benchmarks.popgym_suite ...``).
"""

from __future__ import annotations

import argparse
import json
from math import comb
from pathlib import Path

import numpy as np

from benchmarks import harness


def right_by_step(model, env, episodes: int) -> np.ndarray:
    """Fraction of steps with a positive reward at each episode step, over ``episodes`` episodes of ``env``."""
    n = env.num_envs
    obs, state, episode_start = env.reset(), None, np.ones(n, dtype=bool)
    step, finished = np.zeros(n, dtype=int), 0
    right: dict[int, list[bool]] = {}
    while finished < episodes:
        action, state = model.predict(obs, state=state, episode_start=episode_start, deterministic=True)
        obs, reward, episode_start, _ = env.step(action)
        for i in range(n):
            right.setdefault(int(step[i]), []).append(bool(reward[i] > 0))
        step = np.where(episode_start, 0, step + 1)
        finished += int(episode_start.sum())
    return np.array([np.mean(right[t]) for t in sorted(right)])


def count_recall_timer_bound(steps: int, deck: int = 52) -> np.ndarray:
    """Chance of answering CountRecallEasy right at each step t = 0, 1, ... for a policy that sees the current card
    and the query and knows t, but remembers nothing: t + 1 cards have been dealt from a deck with ``deck / 2`` of
    each colour, the last is the one it sees (of the queried colour with chance 1/2, then counted), and of the t
    before it answers the most likely count (hypergeometric mode over the remaining ``deck - 1`` cards)."""
    half, rest = deck // 2, deck - 1

    def mode(of_colour: int, t: int) -> float:  # most likely count of a colour among t cards drawn from `rest`
        return max(comb(of_colour, k) * comb(rest - of_colour, t - k) / comb(rest, t) for k in range(t + 1))

    return np.array([(mode(half - 1, t) + mode(half, t)) / 2 for t in range(steps)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="CountRecallEasy")
    parser.add_argument("--algorithms", nargs="+", default=["ppo_elmur", "recurrent_ppo"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=500_000, help="training budget of the cached jobs")
    parser.add_argument("--name", default="popgym_easy")
    parser.add_argument(
        "--hyperparams", type=json.loads, default={}, help="JSON dict {algorithm: {argument: value}} of the jobs"
    )
    parser.add_argument("--episodes", type=int, default=400)
    parser.add_argument("--block", type=int, default=8, help="episode steps per column")
    parser.add_argument("--results", type=Path, default=harness.RESULTS)
    args = parser.parse_args(argv)

    rows = []
    for algorithm in args.algorithms:
        for seed in args.seeds:
            hyperparameters = args.hyperparams.get(algorithm, {})
            job = harness.make_job(
                algorithm,
                f"popgym-{args.task}-v0",
                args.steps,
                seed,
                hyperparameters=hyperparameters,
                wrappers=["float_box"],
            )
            if harness.cached_result(job, args.name, args.results) is None:
                print(f"{algorithm} seed {seed}: not in the cache, skipped")
                continue
            model = harness.load_model(job, args.name, args.results, device="cpu")
            env = harness.evaluation_env(job)
            rows.append((f"{algorithm} s{seed}", right_by_step(model, env, args.episodes)))
            env.close()
    if not rows:
        return
    length = max(len(r) for _, r in rows)
    if args.task == "CountRecallEasy":
        rows.append(("no memory, knows the step", count_recall_timer_bound(length)))
    blocks = range(0, length, args.block)
    print(f"\n{args.task}: fraction of right answers by episode step ({args.episodes} episodes, deterministic)\n")
    print("| policy | all | " + " | ".join(f"{b}-{min(b + args.block, length) - 1}" for b in blocks) + " |")
    print("|---|---|" + "---|" * len(blocks))
    for label, right in rows:
        cells = " | ".join(f"{right[b : b + args.block].mean():.2f}" for b in blocks)
        print(f"| {label} | {right.mean():.2f} | {cells} |")


if __name__ == "__main__":
    main()

"""POPGym card tasks: where in an episode the answers of trained harness models are right.

    python -m benchmarks.recall_by_position --task CountRecallEasy --algorithms ppo_elmur recurrent_ppo
    python -m benchmarks.recall_by_position --task RepeatPreviousEasy --lag 3 --name popgym_ablation \\
        --hyperparams '{"policy_kwargs": {"sliding_window": false}}' '{}'

For the card tasks (Repeat*, CountRecall, Autoencode's answer phase, HigherLower) a step's reward is positive for a
right answer and negative for a wrong one. For each cached model (algorithm, seed and, for PPOELMUR, each
``--hyperparams`` JSON given, one per variant) the first table gives the share of right answers at each episode step,
in blocks of ``--block`` steps, over ``--episodes`` deterministic episodes on fresh evaluation envs. With ``--lag k``
(RepeatPrevious, whose answer at step t is the card shown at t - k; k = 3 in the Easy task) a second table splits
the answers by where that card lies: in the answer's own segment of ``segment_len`` steps, or in the previous one,
where only the memory (or attention to the previous segment) can carry it. For CountRecallEasy the first table adds
what a policy without memory that knows the episode step reaches: from the step and the card in view, the most
likely count of the queried colour (a hypergeometric mode), the bar for a policy that counts.
Trains nothing: the jobs must be in the cache (``python -m benchmarks.popgym_suite ...``). The counts of each model
are cached too (``<name>/recall_by_position/``), so the tables reprint where the model zips are gone (they are not
committed); a model with neither is skipped, with a line that says so.
"""

from __future__ import annotations

import argparse
from collections import Counter
from math import comb
from pathlib import Path

import numpy as np

from benchmarks import harness, popgym_suite


def right_by_step(model, env, episodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Right answers (positive rewards) and answers at each episode step, over ``episodes`` episodes of ``env``."""
    n = env.num_envs
    obs, state, episode_start = env.reset(), None, np.ones(n, dtype=bool)
    step, finished = np.zeros(n, dtype=int), 0
    right, answers = Counter[int](), Counter[int]()
    while finished < episodes:
        action, state = model.predict(obs, state=state, episode_start=episode_start, deterministic=True)
        obs, reward, episode_start, _ = env.step(action)
        answers.update(step.tolist())
        right.update(step[reward > 0].tolist())
        step = np.where(episode_start, 0, step + 1)
        finished += int(episode_start.sum())
    steps = range(max(answers) + 1)
    return np.array([right[t] for t in steps]), np.array([answers[t] for t in steps])


def counts(job: dict, name: str, episodes: int, results: Path = harness.RESULTS) -> dict | None:
    """Right answers and answers at each episode step of the job's cached model (:func:`right_by_step`, cached JSON),
    with the model's ``segment_len`` (None but for PPOELMUR); None if neither the counts nor the model are on disk."""

    def compute() -> dict:
        import torch

        torch.set_num_threads(1)
        model = harness.load_model(job, name, results, device="cpu")
        env = harness.evaluation_env(job)
        right, answers = right_by_step(model, env, episodes)
        env.close()
        config = getattr(model.policy, "config", None)
        segment_len = config.segment_len if config is not None else None
        return dict(job=job, episodes=episodes, right=right.tolist(), answers=answers.tolist(), segment_len=segment_len)

    return harness.cached_probe(job, name, "recall_by_position", episodes, compute, results)


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
    popgym_suite.add_cached_model_arguments(parser, task="CountRecallEasy")
    parser.add_argument("--episodes", type=int, default=400)
    parser.add_argument("--block", type=int, default=8, help="episode steps per column")
    parser.add_argument("--lag", type=int, default=None, help="RepeatPrevious: steps back the asked-for card lies")
    args = parser.parse_args(argv)
    harness.apply_revision(args)

    rows, by_segment = [], []
    name, jobs = popgym_suite.cached_model_jobs(args)
    for label, job in jobs:
        found = counts(job, name, args.episodes)
        if found is None:
            print(f"{label}: neither its counts nor its model are on disk, skipped")
            continue
        right, answers = np.array(found["right"]), np.array(found["answers"])
        rows.append((label, right / answers))
        if args.lag is not None and found["segment_len"] is not None:
            L, t = found["segment_len"], np.arange(len(right))
            same = (t - args.lag) // L == t // L
            scored = t >= args.lag
            shares = [right[scored & s].sum() / answers[scored & s].sum() for s in (same, ~same)]
            by_segment.append((label, L, *shares))
    if not rows:
        return
    length = max(len(r) for _, r in rows)
    if args.task == "CountRecallEasy":
        rows.append(("no memory, knows the step", count_recall_timer_bound(length)))
    blocks = range(0, length, args.block)
    print(f"\n{args.task}: share of right answers by episode step ({args.episodes} episodes, deterministic)\n")
    print("| policy | all | " + " | ".join(f"{b}-{min(b + args.block, length) - 1}" for b in blocks) + " |")
    print("|---|---|" + "---|" * len(blocks))
    for label, share in rows:
        cells = " | ".join(f"{share[b : b + args.block].mean():.2f}" for b in blocks)
        print(f"| {label} | {share.mean():.2f} | {cells} |")
    if by_segment:
        print(f"\nby where the card asked for (lag {args.lag}) lies\n")
        print("| model | L | right, card in the same segment | right, card in the previous segment |")
        print("|---|---|---|---|")
        for label, L, same, previous in by_segment:
            print(f"| {label} | {L} | {same:.3f} | {previous:.3f} |")


if __name__ == "__main__":
    main()

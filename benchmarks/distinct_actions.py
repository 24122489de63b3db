"""POPGym tasks: how many distinct actions trained harness models take per episode, deterministic against sampled.

    python -m benchmarks.distinct_actions --task BattleshipEasy --algorithms ppo_elmur recurrent_ppo --seeds 0 1 2
    python -m benchmarks.distinct_actions --task ConcentrationEasy --seeds 0

On Battleship (an 8 x 8 board; a shot at a cell already fired at scores as a miss) and Concentration (flipping a card
that is already face up is penalised) a policy must remember its own moves: one that narrows to a few actions when it
takes the most likely one each step loses what its sampled actions win. For each cached model (algorithm, seed and,
for PPOELMUR, each ``--hyperparams`` JSON given) the table gives, over the first episode of each of ``--episodes``
fresh evaluation envs, the distinct actions per episode (mean, least and most), how many steps repeat the action of
the step before, the steps per episode and the mean return, with deterministic and with sampled actions. Each count is
cached as JSON beside the models (``<name>/distinct_actions/``), so the table reprints without the model zips, which
are not committed; a job with neither is skipped. Trains nothing: the jobs come from ``python -m
benchmarks.popgym_suite ...``.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from benchmarks import harness, popgym_suite


def first_episodes(model, env, deterministic: bool) -> tuple[list[list[tuple]], list[float]]:
    """The actions (each as a tuple) and the return of the first episode of every env of the VecEnv ``env``."""
    n = env.num_envs
    obs, state, episode_start = env.reset(), None, np.ones(n, dtype=bool)
    actions: list[list[tuple]] = [[] for _ in range(n)]
    returns, running = np.zeros(n), np.ones(n, dtype=bool)
    while running.any():
        action, state = model.predict(obs, state=state, episode_start=episode_start, deterministic=deterministic)
        obs, reward, episode_start, _ = env.step(action)
        for i in np.flatnonzero(running):
            actions[i].append(tuple(np.atleast_1d(action[i]).tolist()))
        returns += np.where(running, reward, 0.0)
        running &= ~episode_start
    return actions, returns.tolist()


def repeated_steps(actions: list[tuple]) -> int:
    """How many steps of an episode take the same action as the step before."""
    return sum(x == y for x, y in itertools.pairwise(actions))


def count(job: dict, name: str, episodes: int, results: Path = harness.RESULTS) -> dict | None:
    """Distinct actions per episode of the job's cached model, deterministic and sampled (cached JSON); None if
    neither the counts nor the model zip are on disk."""

    def compute() -> dict:
        import torch

        torch.set_num_threads(1)
        model = harness.load_model(job, name, results, device="cpu")
        out: dict = dict(job=job, episodes=episodes)
        for mode, deterministic in (("deterministic", True), ("sampled", False)):
            torch.manual_seed(0)
            env = harness.evaluation_env(dict(job, n_envs=episodes))
            actions, returns = first_episodes(model, env, deterministic)
            env.close()
            out[mode] = dict(
                distinct=[len(set(a)) for a in actions],
                repeats=[repeated_steps(a) for a in actions],
                steps=[len(a) for a in actions],
                returns=returns,
            )
        return out

    counts = harness.cached_probe(job, name, "distinct_actions", episodes, compute, results)
    model_path = harness.job_paths(job, name, results)[1]
    if counts is not None and "repeats" not in counts["deterministic"] and model_path.exists():
        counts = compute()  # counted before repeats were: count again
        harness.write_json(harness.probe_path(job, name, "distinct_actions", episodes, results), counts)
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    popgym_suite.add_cached_model_arguments(parser, task="BattleshipEasy")
    parser.add_argument("--episodes", type=int, default=8, help="fresh evaluation envs, one episode each")
    args = parser.parse_args(argv)
    harness.apply_revision(args)

    rows = []
    name, jobs = popgym_suite.cached_model_jobs(args)
    for label, job in jobs:
        counts = count(job, name, args.episodes)
        if counts is None:
            print(f"{label}: neither its counts nor its model are on disk, skipped")
            continue
        rows += [(label, mode, counts[mode]) for mode in ("deterministic", "sampled")]
    if not rows:
        return
    print(f"\n{args.task}: distinct actions per episode (first episode of {args.episodes} fresh envs)\n")
    print(
        "| model | actions | distinct per episode: mean (least-most) | repeats of the step before's action per "
        "episode: mean (least-most) | steps per episode | mean return |"
    )
    print("|---|---|---|---|---|---|")
    for label, mode, c in rows:
        distinct, repeats = (
            f"{np.mean(c[k]):.1f} ({min(c[k])}-{max(c[k])})" if k in c else "-" for k in ("distinct", "repeats")
        )
        print(
            f"| {label} | {mode} | {distinct} | {repeats} | {np.mean(c['steps']):.1f} | {np.mean(c['returns']):.3f} |"
        )


if __name__ == "__main__":
    main()

"""POPGym RepeatPrevious: answer accuracy by where the asked-for item lies, for trained harness models.

    python -m benchmarks.recall_by_position --name popgym_ablation --hyperparams '{"policy_kwargs":
        {"sliding_window": false}}' '{}'

In RepeatPrevious the answer at step t is the item shown at step t - k (k = 3 in the Easy task). With segments of L
steps, the item lies in the answer's own segment when (t - k) // L == t // L and in the previous segment otherwise,
where only the memory (or previous-segment attention) can carry it. For each cached model (task, seed, and each
``--hyperparams`` JSON given, one per variant), the table gives the share of correct answers of each kind over
``--episodes`` deterministic episodes; a right answer earns a positive reward, a wrong one a negative reward.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from benchmarks import harness


def recall_by_position(model, job: dict, episodes: int, lag: int) -> dict[str, float]:
    """Share of correct answers whose item lies in the answer's own segment and in the previous one."""
    L = model.policy.config.segment_len
    env = harness.make_env(job["env_id"], 1, job["env_kwargs"], job["wrappers"], job["seed"] + 1000)
    correct = {"same": [], "previous": []}
    for _ in range(episodes):
        obs, state, start, t, done = env.reset(), None, np.ones(1, dtype=bool), 0, False
        while not done:
            action, state = model.predict(obs, state=state, episode_start=start, deterministic=True)
            obs, reward, dones, _ = env.step(action)
            done, start = bool(dones[0]), dones
            if t >= lag:  # a scored answer
                kind = "same" if (t - lag) // L == t // L else "previous"
                correct[kind].append(reward[0] > 0)
            t += 1
    return {kind: float(np.mean(values)) for kind, values in correct.items()} | {"segment_len": L}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="popgym_ablation", help="harness results name the models were cached in")
    parser.add_argument("--task", default="RepeatPreviousEasy")
    parser.add_argument("--lag", type=int, default=3, help="steps back the asked-for item lies (Easy: 3)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=500_000)
    parser.add_argument("--hyperparams", nargs="+", type=json.loads, default=[{}], help="one JSON dict per variant")
    parser.add_argument("--episodes", type=int, default=100)
    harness.add_revision_argument(parser)
    args = parser.parse_args(argv)
    harness.apply_revision(args)

    print("| variant | seed | L | accuracy, item in the same segment | accuracy, item in the previous segment |")
    print("|---|---|---|---|---|")
    for hyperparameters in args.hyperparams:
        for seed in args.seeds:
            job = harness.make_job(
                "ppo_elmur",
                f"popgym-{args.task}-v0",
                args.steps,
                seed,
                hyperparameters=hyperparameters,
                wrappers=["float_box"],
            )
            model = harness.load_model(job, args.name)
            r = recall_by_position(model, job, args.episodes, args.lag)
            variant = json.dumps(hyperparameters.get("policy_kwargs", hyperparameters)) or "defaults"
            print(f"| {variant} | {seed} | {r['segment_len']} | {r['same']:.3f} | {r['previous']:.3f} |")


if __name__ == "__main__":
    main()

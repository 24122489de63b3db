"""How much of the gradient that reaches the shared ELMUR trunk comes from the critic, for trained harness models.

    python -m benchmarks.gradient_share --task PositionOnlyPendulumEasy
    python -m benchmarks.gradient_share --task PositionOnlyPendulumEasy --name popgym_ablation \\
        --hyperparams '{"normalize_value_loss": true}' '{"policy_kwargs": {"separate_critic_trunk": true}}'

For each cached PPOELMUR model of a POPGym task (seed and ``--hyperparams`` variant, as in
``benchmarks.recall_by_position``): one rollout of its training envs, then, on the first minibatch of the update,
the norm of the gradient that each term of the PPO loss sends into the actor's trunk (trunk 0): the clipped policy
term, the value term as the update weighs it (``vf_coef``, and the variance of the returns with
``normalize_value_loss``) and the entropy term. Also the standard deviation of the rollout's returns and the
explained variance of its values. POPGym scales an episode's return into [-1, 1], so its returns are small and a
plain value loss is small beside the policy term (advantages are normalised). Trains nothing: the jobs must be in
the cache (``python -m benchmarks.popgym_suite ...``).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.utils import explained_variance

from benchmarks import harness
from benchmarks.popgym_suite import popgym_job
from sb3_elmur.ppo_elmur import gradient_norm


def trunk_gradient_norms(model) -> dict[str, float]:
    """One rollout, then the norms of the policy, value and entropy terms' gradients into trunk 0."""
    callback = CallbackList([])
    callback.init_callback(model)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    buffer, policy = model.rollout_buffer, model.policy
    policy.set_training_mode(True)
    trunk = list(policy.trunks[0].parameters())
    clip_range_vf = None if model.clip_range_vf is None else model.clip_range_vf(1.0)
    loss = model.minibatch_loss(next(buffer.get(model.batch_size)), model.clip_range(1.0), clip_range_vf)
    terms = {  # as the update weighs them
        "policy": loss.policy_loss,
        "value": model.vf_coef * model.value_loss_scale() * loss.value_loss,
        "entropy": model.ent_coef * loss.entropy_loss,
    }
    norms = {name: gradient_norm(term, trunk) for name, term in terms.items()}
    returns = buffer.returns.flatten()
    return dict(
        norms, returns_std=float(returns.std()), explained_variance=explained_variance(buffer.values.flatten(), returns)
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="popgym_easy", help="harness results name the models were cached in")
    parser.add_argument("--task", default="PositionOnlyPendulumEasy")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=500_000, help="training budget of the cached jobs")
    parser.add_argument("--hyperparams", nargs="+", type=json.loads, default=[{}], help="variants: one JSON dict each")
    harness.add_revision_argument(parser)
    args = parser.parse_args(argv)
    harness.apply_revision(args)
    th.set_num_threads(1)

    print(f"\n{args.task}: gradient norms into the actor's trunk, first minibatch after one rollout\n")
    print("| model | policy | value | entropy | value / policy | returns std | explained variance |")
    print("|---|---|---|---|---|---|---|")
    for hyperparameters in args.hyperparams:
        for seed in args.seeds:
            job = popgym_job("ppo_elmur", args.task, args.steps, seed, hyperparameters)
            label = f"{json.dumps(hyperparameters) if hyperparameters else 'defaults'} s{seed}"
            if harness.cached_result(job, args.name) is None:
                print(f"| {label}: not in the cache |")
                continue
            model = harness.load_model(job, args.name, device="cpu")
            model.set_env(harness.training_env(job, job["n_envs"], {}))
            model._setup_learn(model.n_steps * model.n_envs, None)
            np.random.seed(seed)
            r = trunk_gradient_norms(model)
            print(
                f"| {label} | {r['policy']:.3g} | {r['value']:.3g} | {r['entropy']:.3g} "
                f"| {r['value'] / r['policy']:.2g} | {r['returns_std']:.3f} | {r['explained_variance']:.2f} |"
            )


if __name__ == "__main__":
    main()

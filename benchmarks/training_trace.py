"""One ablation job's training, update by update: where a run that had learned its task loses it.

    python -m benchmarks.training_trace --variant d_model_128 --task tmaze30 --seed 0
    python -m benchmarks.training_trace --variant d_model_128 --task tmaze30 --seed 0 --table-only

Trains the job as :mod:`benchmarks.ablation` does (same settings, so its result is the ablation's and is cached there
too) with SB3's logger writing one row per update to
``benchmarks/results/training_trace/<variant>__<task>__<seed>.csv``, then prints the updates around the one with the
largest ``train/approx_kl`` after the rolling training success first reached 0.95: the success and mean return of the
last 100 training episodes, the policy's entropy, the approximate KL divergence and clip fraction of the update, and
the value loss. On the T-Maze, a probe also logs, once per rollout, what the policy does where the task is decided: it
walks two episodes (cue up, cue down) down the corridor and reads the action distribution at the junction (the
probability of moving on, of the turn the cue asks for and of the other turn) and the lowest probability of moving on
along the corridor. On every task, the update's largest optimizer step is logged too: the root mean square of one
gradient step's change of the weights, divided by the learning rate (Adam moves each weight by about the learning
rate when its gradient keeps its sign). A last line sums up the probe: when the junction was first decided, how often
it was lost and relearned.
"""

import argparse
import csv
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from benchmarks import ablation, harness
from sb3_elmur.envs import DOWN, MOVE_ON, UP, TMaze

RESULTS = harness.RESULTS / "training_trace"
COLUMNS = {
    "time/total_timesteps": "steps",
    "rollout/success_rate": "training success",
    "rollout/ep_rew_mean": "training return",
    "train/entropy_loss": "entropy loss",
    "train/approx_kl": "approx KL",
    "train/clip_fraction": "clip fraction",
    "train/value_loss": "value loss",
}
PROBE_COLUMNS = {
    "junction/p_move_on": "p(move on) at the junction",
    "junction/p_cued_turn": "p(cued turn)",
    "junction/p_other_turn": "p(other turn)",
    "corridor/min_p_move_on": "lowest p(move on) in the corridor",
    "train/largest_step": "largest step / lr",
}


class StepSize(BaseCallback):
    """Log, per update, the largest root-mean-square change of the weights in one gradient step, over the learning
    rate (``train/largest_step``)."""

    def __init__(self):
        super().__init__()
        self.largest = 0.0
        self.before: list[torch.Tensor] = []

    def _on_training_start(self) -> None:
        optimizer = self.model.policy.optimizer
        self.parameters = [p for group in optimizer.param_groups for p in group["params"]]
        self.count = sum(p.numel() for p in self.parameters)
        optimizer.register_step_pre_hook(self._before_step)
        optimizer.register_step_post_hook(self._after_step)

    def _before_step(self, optimizer, args, kwargs) -> None:
        self.before = [p.detach().clone() for p in self.parameters]

    @torch.no_grad()
    def _after_step(self, optimizer, args, kwargs) -> None:
        if optimizer.param_groups[0]["lr"] == 0:  # the last update of a linear schedule
            return
        squares = sum(((p - b) ** 2).sum() for p, b in zip(self.parameters, self.before, strict=True))
        step = (squares / self.count).sqrt().item() / optimizer.param_groups[0]["lr"]
        self.largest = max(self.largest, step)
        self.logger.record("train/largest_step", self.largest)

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.largest = 0.0


class JunctionProbe(BaseCallback):
    """Log the T-Maze policy's action probabilities at the junction of a corridor of ``corridor_length``, once per
    rollout, on the two episodes (cue up, cue down) that move on to the junction."""

    def __init__(self, corridor_length: int):
        super().__init__()
        episodes = []
        for cue in (UP, DOWN):
            env = TMaze(corridor_length)
            observations = [env.reset(options={"cue": cue})[0]]
            observations += [env.step(MOVE_ON)[0] for _ in range(corridor_length)]
            episodes.append(observations)
        self.observations = np.stack(episodes, axis=1)  # (step, episode, obs): start to junction, both cues

    def _on_step(self) -> bool:
        return True

    @torch.no_grad()
    def _on_rollout_end(self) -> None:
        policy = self.model.policy
        state = policy.initial_state(2)
        move_on = torch.full((2,), MOVE_ON, device=policy.device)
        corridor = []
        for t, obs in enumerate(self.observations):
            starts = torch.full((2,), float(t == 0), device=policy.device)
            distribution, state = policy.get_distribution(torch.as_tensor(obs, device=policy.device), state, starts)
            probs = distribution.distribution.probs  # (2, 3)
            state = policy.took(state, move_on)
            corridor.append(probs[:, MOVE_ON].min().item())
        cued = probs[[0, 1], [UP, DOWN]]
        other = probs[[0, 1], [DOWN, UP]]
        self.logger.record("junction/p_move_on", probs[:, MOVE_ON].mean().item())
        self.logger.record("junction/p_cued_turn", cued.mean().item())
        self.logger.record("junction/p_other_turn", other.mean().item())
        self.logger.record("corridor/min_p_move_on", min(corridor[:-1]))


def trace_path(variant: str, task: str, seed: int) -> Path:
    """Where the trace of a job is kept."""
    return RESULTS / f"{variant}__{task}__{seed}.csv"


def trace(variant: str, task: str, seed: int) -> Path:
    """Run the job with a CSV logger (unless its trace exists) and return the trace's path."""
    path = trace_path(variant, task, seed)
    if not path.exists():
        with tempfile.TemporaryDirectory() as folder:
            env_kwargs = ablation.TASKS[task]["env_kwargs"]
            probes = [StepSize()]
            if "corridor_length" in env_kwargs:
                probes.append(JunctionProbe(env_kwargs["corridor_length"]))
            result = ablation.run_job(variant, task, seed, log_folder=folder, probes=tuple(probes))
            RESULTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(Path(folder) / "progress.csv", path)
        harness.cached(ablation.result_path(variant, task, seed), lambda: result)
    return path


def print_window(path: Path, before: int = 6, after: int = 4) -> None:
    """Print the updates around the largest approx_kl after the training success first reached 0.95."""
    rows = [r for r in csv.DictReader(path.open()) if r.get("train/approx_kl")]
    learned = next((i for i, r in enumerate(rows) if float(r["rollout/success_rate"] or 0) >= 0.95), None)
    if learned is None:
        print(f"{path.name}: the training success never reached 0.95")
        return
    peak = max(range(learned, len(rows)), key=lambda i: float(rows[i]["train/approx_kl"]))
    reached = rows[learned]["time/total_timesteps"]
    print(f"\n{path.name}: 0.95 training success at {reached} steps; the largest approx KL after it:")
    columns = COLUMNS | {k: v for k, v in PROBE_COLUMNS.items() if k in rows[0]}  # traces before the probe lack it
    print("| " + " | ".join(columns.values()) + " |")
    print("|" + "---|" * len(columns))
    for row in rows[max(peak - before, 0) : peak + after + 1]:
        print("| " + " | ".join(f"{float(row[k]):.3g}" for k in columns) + " |")


def print_junction_summary(path: Path) -> None:
    """Print, from a probed T-Maze trace, when the junction was first decided (p(cued turn) above 0.9 after an
    update), how often it was lost (below 0.6 after having been above 0.9) and relearned (above 0.9 again), and where
    it ended."""
    rows = [r for r in csv.DictReader(path.open()) if r.get("junction/p_cued_turn")]
    if not rows:
        return
    cued = [float(r["junction/p_cued_turn"]) for r in rows]
    first = next((r["time/total_timesteps"] for r, p in zip(rows, cued, strict=True) if p > 0.9), "never")
    lost = decisions = 0
    decided = False
    for p in cued:
        if decided and p < 0.6:
            lost, decided = lost + 1, False
        elif not decided and p > 0.9:
            decisions, decided = decisions + 1, True
    relearned = max(decisions - 1, 0)
    print(
        f"{path.name}: junction first decided (p(cued turn) > 0.9) at {first} steps; lost {lost} times (< 0.6), "
        f"relearned {relearned}; p(cued turn) at the end {cued[-1]:.3g}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="default", choices=list(ablation.VARIANTS))
    parser.add_argument("--task", default="tmaze30", choices=list(ablation.TASKS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table-only", action="store_true", help="print the committed trace, train nothing")
    args = parser.parse_args()
    path = trace_path(args.variant, args.task, args.seed)
    path = path if args.table_only else trace(args.variant, args.task, args.seed)
    print_window(path)
    print_junction_summary(path)


if __name__ == "__main__":
    main()

"""One ablation job's training, update by update: where a run that had learned its task loses it.

    python -m benchmarks.training_trace --variant d_model_128 --task tmaze30 --seed 0
    python -m benchmarks.training_trace --variant d_model_128 --task tmaze30 --seed 0 --table-only

Trains the job as :mod:`benchmarks.ablation` does (same settings, so its result is the ablation's and is cached there
too) with SB3's logger writing one row per update to
``benchmarks/results/training_trace/<variant>__<task>__<seed>.csv``, then prints the updates around the one with the
largest ``train/approx_kl`` after the rolling training success first reached 0.95: the success and mean return of the
last 100 training episodes, the policy's entropy, the approximate KL divergence and clip fraction of the update, and
the value loss.
"""

import argparse
import csv
import shutil
import tempfile
from pathlib import Path

from benchmarks import ablation, harness

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


def trace_path(variant: str, task: str, seed: int) -> Path:
    """Where the trace of a job is kept."""
    return RESULTS / f"{variant}__{task}__{seed}.csv"


def trace(variant: str, task: str, seed: int) -> Path:
    """Run the job with a CSV logger (unless its trace exists) and return the trace's path."""
    path = trace_path(variant, task, seed)
    if not path.exists():
        with tempfile.TemporaryDirectory() as folder:
            result = ablation.run_job(variant, task, seed, log_folder=folder)
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
    print("| " + " | ".join(COLUMNS.values()) + " |")
    print("|" + "---|" * len(COLUMNS))
    for row in rows[max(peak - before, 0) : peak + after + 1]:
        print("| " + " | ".join(f"{float(row[k]):.3g}" for k in COLUMNS) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="default", choices=list(ablation.VARIANTS))
    parser.add_argument("--task", default="tmaze30", choices=list(ablation.TASKS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table-only", action="store_true", help="print the committed trace, train nothing")
    args = parser.parse_args()
    path = trace_path(args.variant, args.task, args.seed)
    print_window(path if args.table_only else trace(args.variant, args.task, args.seed))


if __name__ == "__main__":
    main()

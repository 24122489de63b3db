"""How much the RL Zoo start-up hook (sb3_elmur_zoo.pth / .start) adds to interpreter start.

Runs ``python -X importtime -c pass`` with the hook on and with it off (SB3_ELMUR_NO_ZOO_HOOK=1), alternating,
and compares the medians of the total import time (sum of the "self" column) and of the wall time; also checks
that the hook imports neither torch nor rl_zoo3 at start. Exits 1 if the import-time difference exceeds the budget.

    python -m benchmarks.startup_time [--python PATH] [--runs 30] [--budget-ms 5]

``--python`` must be an interpreter where sb3_elmur is installed (the hook lives in its site-packages).
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

OPT_OUT = "SB3_ELMUR_NO_ZOO_HOOK"


def run(python: str, hook_on: bool) -> tuple[float, float, float]:
    """One start: (total import time in ms, wall time in ms, the hook module's cumulative import time in ms)."""
    env = dict(os.environ)
    env.pop(OPT_OUT, None)
    if not hook_on:
        env[OPT_OUT] = "1"
    start = time.perf_counter()
    result = subprocess.run([python, "-X", "importtime", "-c", "pass"], env=env, capture_output=True, text=True)
    wall = (time.perf_counter() - start) * 1e3
    result.check_returncode()
    total_us, hook_us = 0, 0
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = (part.strip() for part in line[len("import time:") :].split("|"))
        total_us += int(self_us)
        if name == "sb3_elmur_zoo_hook":
            hook_us = int(cumulative_us)
    return total_us / 1e3, wall, hook_us / 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--budget-ms", type=float, default=5.0)
    args = parser.parse_args()

    check = "import sys; print(sorted(m for m in ('torch', 'rl_zoo3', 'optuna', 'sb3_elmur') if m in sys.modules))"
    loaded = subprocess.run([args.python, "-c", check], capture_output=True, text=True, check=True).stdout.strip()
    hooked = subprocess.run(
        [
            args.python,
            "-c",
            "import sys; print(any(getattr(f, '_sb3_elmur_zoo_finder', False) for f in sys.meta_path))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(f"python: {args.python}")
    print(f"hook finder installed at start: {hooked}; heavy modules imported at start: {loaded}")

    samples = {True: [], False: []}
    for _ in range(args.runs):
        for hook_on in (True, False):
            samples[hook_on].append(run(args.python, hook_on))
    rows = {}
    for hook_on, label in ((True, "hook on "), (False, "hook off")):
        imports, walls, hooks = zip(*samples[hook_on], strict=True)
        rows[hook_on] = statistics.median(imports), statistics.median(walls)
        print(
            f"{label}: total import time {rows[hook_on][0]:.2f} ms, wall {rows[hook_on][1]:.2f} ms "
            f"(medians of {args.runs}); sb3_elmur_zoo_hook import {statistics.median(hooks):.3f} ms"
        )
    import_delta = rows[True][0] - rows[False][0]
    wall_delta = rows[True][1] - rows[False][1]
    print(f"hook adds: {import_delta:+.2f} ms import time, {wall_delta:+.2f} ms wall time (budget {args.budget_ms} ms)")
    ok = hooked == "True" and loaded == "[]" and import_delta <= args.budget_ms
    print("OK" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

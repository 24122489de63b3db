"""Optuna sweeps whose workers start at the same moment on one fresh storage: none of them crashes.

Fast: two processes open a fresh SQLite database (and a fresh journal file) through ``sb3_elmur.zoo.optuna_storage``
at once, several times. Slow: two ``-optimize`` workers of the zoo started together on SQLite, and the README's
several-machines recipe on a real PostgreSQL server started for the test (Debian's postgresql, as the ``postgres``
user; skipped where it or psycopg is missing).
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import zoo_optimize_arguments

pytest.importorskip("optuna")
pytest.importorskip("rl_zoo3")

OPEN_STUDY = (
    "import sys, optuna; from sb3_elmur.zoo import optuna_storage; "
    "optuna.logging.set_verbosity(optuna.logging.WARNING); "
    "optuna.create_study(storage=optuna_storage(sys.argv[1]), study_name='s', load_if_exists=True); print('opened')"
)


def start_together(commands: list[list[str]], cwd: Path, timeout: float = 900) -> list[subprocess.CompletedProcess]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [
        subprocess.Popen(c, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for c in commands
    ]
    outputs = [w.communicate(timeout=timeout)[0] for w in workers]
    return [subprocess.CompletedProcess(w.args, w.returncode, o) for w, o in zip(workers, outputs, strict=True)]


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_workers_opening_a_fresh_storage_at_once_do_not_crash(kind, tmp_path):
    for attempt in range(3):  # the race is a matter of timing: several fresh storages
        storage = f"sqlite:///{tmp_path}/study{attempt}.db" if kind == "sqlite" else f"{tmp_path}/study{attempt}.log"
        results = start_together([[sys.executable, "-c", OPEN_STUDY, storage]] * 2, tmp_path)
        for result in results:
            assert result.returncode == 0 and "opened" in result.stdout, result.stdout[-2000:]


OPTIMIZE = [
    "--algo",
    "ppo_elmur",
    "--env",
    "PassiveTMaze-v0",
    "--num-threads",
    "1",
    *zoo_optimize_arguments(128, "n_steps:64", "policy_kwargs:dict(d_model=16, n_layers=1, n_heads=1, segment_len=8)"),
]


def run_two_workers(storage: str, cwd: Path) -> None:
    """Two zoo workers started together on ``storage`` complete a study of two trials."""
    commands = [
        [sys.executable, "-m", "sb3_elmur.train", *OPTIMIZE, "--storage", storage, "--seed", str(seed)]
        for seed in (1, 2)
    ]
    results = start_together(commands, cwd)
    for result in results:
        assert result.returncode == 0, result.stdout[-3000:]
    import optuna

    from sb3_elmur.zoo import optuna_storage

    study = optuna.load_study(study_name="s", storage=optuna_storage(storage))
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE", "COMPLETE"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_zoo_optimize_workers_started_together(kind, tmp_path):
    run_two_workers(f"sqlite:///{tmp_path}/study.db" if kind == "sqlite" else str(tmp_path / "study.log"), tmp_path)


POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url():
    """A throwaway PostgreSQL server on a free local port (run as the ``postgres`` user when the tests run as root)."""
    pytest.importorskip("psycopg")  # the driver SQLAlchemy 2.1 uses for postgresql:// URLs
    if not (POSTGRES_BIN / "initdb").exists():
        pytest.skip("PostgreSQL 15 server binaries not installed (Debian package postgresql)")
    data = Path(tempfile.mkdtemp(prefix="sb3_elmur_pgdata_"))  # directly in /tmp: the postgres user reaches it
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(data, "postgres")
    port = free_port()
    subprocess.run([*as_postgres, str(POSTGRES_BIN / "initdb"), "-D", str(data), "-U", "postgres"], check=True)
    ctl = [*as_postgres, str(POSTGRES_BIN / "pg_ctl"), "-D", str(data), "-w"]
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    subprocess.run([*ctl, "-o", options, "-l", str(data / "log"), "start"], check=True)
    try:
        subprocess.run([*as_postgres, str(POSTGRES_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "optuna"])
        yield f"postgresql://postgres@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run([*ctl, "stop", "-m", "fast"], check=False)
        shutil.rmtree(data, ignore_errors=True)


@pytest.mark.slow
def test_zoo_optimize_workers_on_postgresql(postgres_url, tmp_path):
    """The README's several-machines recipe (a PostgreSQL URL), two workers started together on a fresh database."""
    run_two_workers(postgres_url, tmp_path)

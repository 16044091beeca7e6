"""Distributed and concurrent runs of the grid pointing game, with real processes.

``torchrun`` with two CPU processes (gloo) must give the single-process table;
a rank killed part-way leaves a shard valid up to its last batch, and the same
command resumes every shard; two runs on one output cannot both write it, and
a dead run's lock never blocks the next.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from var_utils import load_model
from var_utils._lock import exclusive_lock, lock_holder, lock_path
from var_utils.evaluation.gpg import (
    GPG_INTEGRATED_GRADIENTS,
    evaluate_grid_pointing_game,
    fashion_mnist_grids,
    read_gpg_table,
)
from var_utils.evaluation.gpg.store import shard_files, shard_path

N_GRIDS = 40
N_STEPS = 32
GPG_ARGUMENTS = [
    "gpg",
    "--grids",
    str(N_GRIDS),
    "--methods",
    "gradcam,integrated_gradients",
    "--n-steps",
    str(N_STEPS),
    "--batch-size",
    "2",
    "--no-progress",
]
TORCHRUN = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc-per-node", "2"]
KEY = ["grid", "method", "mode", "cell"]
ROWS_PER_GROUP = 4 * 2  # cells × modes


@pytest.fixture(scope="module")
def reference_table() -> pd.DataFrame:
    """The same run in this process, in memory: what every distributed or resumed run must give."""
    methods = {"gradcam": {}, "integrated_gradients": {**GPG_INTEGRATED_GRADIENTS["fashion_mnist"], "n_steps": N_STEPS}}
    grids = fashion_mnist_grids(n_grids=N_GRIDS)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the runs under test (OMP_NUM_THREADS=1)
    try:
        table = evaluate_grid_pointing_game(
            load_model("fashion_mnist_cnn"), grids, methods, batch_size=2, progress=False
        )
    finally:
        torch.set_num_threads(threads)
    return _sorted(table)


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values(KEY).reset_index(drop=True)


def _assert_same_rows(table: pd.DataFrame, reference: pd.DataFrame) -> None:
    # Grids batched with other grids than in the reference: float tolerance, not bit equality.
    pd.testing.assert_frame_equal(_sorted(table), reference, check_exact=False, rtol=1e-5, atol=1e-6)


def _start(command: list[str], out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [*command, *GPG_ARGUMENTS, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def _finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout, stderr


def _wait_for(condition, process: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended before {what}: {_finish(process)}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _complete_batches(shard: Path) -> int:
    """Complete (grid, method) groups written to ``shard`` so far (a torn tail not counted)."""
    try:
        lines = shard.read_bytes().split(b"\n")[1:-1]
    except FileNotFoundError:
        return 0
    return len(lines) // ROWS_PER_GROUP


def test_two_processes_under_torchrun_give_the_single_process_table(tmp_path, reference_table):
    out = tmp_path / "gpg.csv"
    status, stdout, stderr = _finish(_start([*TORCHRUN, "-m", "var_utils"], out))
    assert status == 0, stderr
    assert stdout.count("rows in") == 1  # only rank 0 reports
    _assert_same_rows(read_gpg_table(out), reference_table)
    assert shard_files(out) == []
    assert sorted(path.name for path in tmp_path.iterdir()) == ["gpg.csv", "gpg.csv.settings.json"]


@pytest.mark.parametrize("killed_rank", [0, 1])
def test_a_killed_rank_leaves_a_valid_shard_and_the_same_command_resumes(tmp_path, reference_table, killed_rank):
    out = tmp_path / "gpg.csv"
    victim_shard = shard_path(out, killed_rank, 2)
    run = _start([*TORCHRUN, "-m", "var_utils"], out)
    _wait_for(lambda: _complete_batches(victim_shard) >= 2, run, f"rank {killed_rank} wrote two groups")
    os.kill(lock_holder(victim_shard)["pid"], signal.SIGKILL)
    status, _, _ = _finish(run)
    assert status != 0
    shards = shard_files(out)
    assert victim_shard in shards and not out.exists()
    for shard in shards:
        # What a killed run left is exactly the reference rows of the groups it completed.
        written = _complete_lines(shard)
        assert len(written) % ROWS_PER_GROUP == 0 and len(written) > 0
        expected = reference_table.merge(written[["grid", "method"]].drop_duplicates(), on=["grid", "method"])
        _assert_same_rows(written, _sorted(expected))

    status, stdout, stderr = _finish(_start([*TORCHRUN, "-m", "var_utils"], out))
    assert status == 0, stderr
    _assert_same_rows(read_gpg_table(out), reference_table)
    assert shard_files(out) == [] and not lock_path(out).exists()


def _complete_lines(shard: Path) -> pd.DataFrame:
    """The complete lines of a shard, parsed by pandas (a torn last line left out)."""
    data = shard.read_bytes()
    table = pd.read_csv(io.BytesIO(data[: data.rfind(b"\n") + 1]), float_precision="round_trip")
    return table.astype(reference_dtypes())


def reference_dtypes() -> dict:
    return {"grid": "int64", "cell": "int64", "label": "int64", "n_classes": "int64"}


def test_a_second_run_on_the_same_output_is_refused_with_the_holder_named(tmp_path, reference_table):
    out = tmp_path / "gpg.csv"
    first = _start([sys.executable, "-m", "var_utils"], out)
    _wait_for(lambda: lock_holder(out).get("pid") == first.pid, first, "the first run locked its output")
    # Paused while it holds the lock, the first run cannot finish before the second tries.
    first.send_signal(signal.SIGSTOP)
    try:
        status, _, stderr = _finish(_start([sys.executable, "-m", "var_utils"], out))
    finally:
        first.send_signal(signal.SIGCONT)
    assert status == 2
    assert f"is being written by process {first.pid}" in stderr and "Traceback" not in stderr
    status, _, stderr = _finish(first)
    assert status == 0, stderr
    table = read_gpg_table(out)
    assert not table[KEY].duplicated().any()
    _assert_same_rows(table, reference_table)


def test_the_lock_of_a_killed_run_does_not_block_the_next(tmp_path, reference_table):
    out = tmp_path / "gpg.csv"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from var_utils._lock import exclusive_lock\n"
            "with exclusive_lock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(600)",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    status, _, stderr = _finish(_start([sys.executable, "-m", "var_utils"], out))
    assert status == 2 and f"process {holder.pid}" in stderr
    holder.kill()
    holder.wait()
    assert lock_path(out).exists()  # left behind by kill -9, naming the dead holder
    status, _, stderr = _finish(_start([sys.executable, "-m", "var_utils"], out))
    assert status == 0, stderr
    _assert_same_rows(read_gpg_table(out), reference_table)
    assert not lock_path(out).exists()


def test_a_rank_that_fails_stops_the_others_instead_of_leaving_them_at_a_barrier(tmp_path):
    out = tmp_path / "gpg.csv"
    with exclusive_lock(shard_path(out, 1, 2)):  # rank 1 cannot take its shard
        status, _, stderr = _finish(_start([*TORCHRUN, "-m", "var_utils"], out), timeout=120)
    assert status != 0
    assert f"rank-1-of-2.csv is being written by process {os.getpid()}" in stderr
    assert "another rank of the run failed" in stderr
    assert not out.exists()

"""Fault injection across the whole chain: `ssrtune run` SIGKILLed at a random moment, for 20 seeds, each rerun
ending with the artifacts of a run never interrupted; and a second process on each held run, refused. The processes
are made by tests/chain_kill.py (forked from one warm process, so that over 60 runs take about a minute)."""

from __future__ import annotations

import json
import signal
from collections import Counter

from tests.chain_runs import chain_config, compare_with_reference, records_by_id, run_harness
from tests.paths import TESTS

HARNESS = str(TESTS / "chain_kill.py")
N_SEEDS = 20


def test_kill_9_at_random_moments_of_a_full_run_and_the_rerun_equals_an_uninterrupted_run(tmp_path):
    results = run_harness(HARNESS, tmp_path, {"config": chain_config(tmp_path), "seeds": list(range(N_SEEDS))}, 900)
    assert results["reference_status"] == 0 and set(results["uninterrupted_status"]) == {0}
    reference = tmp_path / "reference"
    steps = json.loads((reference / "models/ssr/ssrtune_train.json").read_text())["steps"]
    train_targets = {r["source"] for r in records_by_id(reference / "train/ssr.jsonl")[0].values()}
    assert steps == 2 and train_targets == {"self", "gold"}
    for run in tmp_path.glob("uninterrupted-*"):
        if run.is_dir():
            assert compare_with_reference(run, reference, steps) == (0, 0)

    kills = [s for s in results["seeds"] if s["killed_status"] == -signal.SIGKILL]
    lost = duplicated = refused = 0
    for seed in results["seeds"]:
        run_dir = tmp_path / f"seed-{seed['seed']}"
        assert seed["rerun_status"] == 0, (tmp_path / f"seed-{seed['seed']}.log").read_text()[-3000:]
        run_lost, run_duplicated = compare_with_reference(run_dir, reference, steps)
        lost, duplicated = lost + run_lost, duplicated + run_duplicated
        if seed["lock_left"]:  # the killed run held the run directory: the rerun takes its lock over
            log = (tmp_path / f"seed-{seed['seed']}.log").read_text()
            assert f"taking over the lock of process {seed['killed_pid']}" in log
        if "intruder_pid" in seed:  # a second process on the held run: stopped at once, naming the holder
            log = (tmp_path / f"seed-{seed['seed']}.intruder.log").read_text()
            refused += f"is in use by process {seed['holder_pid']} on " in log
            # refused, or it reached the lock after the kill had freed it and generated for the rerun to resume
            assert seed["intruder_status"] == (2 if "is in use" in log else 0), log
    where = Counter(s["last_written"] for s in kills)
    redrawn = sum(s["finished_before_kill"] for s in results["seeds"])
    print(f"\n{len(kills)} SIGKILLs of `ssrtune run` ({redrawn} runs ended before their kill and were redrawn), "
          f"landing after {dict(where)}; records lost {lost}, duplicated {duplicated}; {refused} second processes "
          f"on a held run refused; uninterrupted run "
          f"{results['uninterrupted_s']} s, harness {results['total_s']} s")
    assert len(kills) == N_SEEDS
    assert len(where) >= 4  # the kills landed all along the chain
    assert lost == 0 and duplicated == 0
    assert refused >= N_SEEDS // 2  # the others were killed before they took the lock

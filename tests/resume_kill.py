"""SIGKILL `ssrtune run` of a run with several models per method at two chosen moments, and rerun it: the harness
behind test_reproduce.py's resume test. It reuses tests/chain_kill.py's forked runs (one warm process, each run a
real `ssrtune run` forked from it in milliseconds).

usage: python tests/resume_kill.py SPEC.json
SPEC: {"work": folder, "config": run config tree, "kills": {scenario: [path, lines]}}: a scenario's run is killed as
soon as the file `path` of its run directory has at least `lines` lines (a directory: exists), then rerun to its end.
Writes <work>/results.json: the reference run's exit status, and per scenario the killed run's status, whether the
kill came in time, and the rerun's status. Runs are in <work>/<name>/, their consoles in <work>/<name>.log.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests import chain_kill  # noqa: E402  (first: it sets the thread settings before torch is imported)

HANG_S = 120


def ready(run_dir: Path, path: str, lines: int) -> bool:
    target = run_dir / path
    if lines == 0:
        return target.exists()
    return target.is_file() and target.read_bytes().count(b"\n") >= lines


def kill_when_ready(config: Path, run_dir: Path, log: Path, path: str, lines: int) -> dict:
    pid, started = chain_kill.fork_run(config, log), time.monotonic()
    while True:
        done, wait_status = os.waitpid(pid, os.WNOHANG)
        if done:  # ended before the moment came: the kill missed
            return {"killed_status": chain_kill.status(wait_status), "in_time": False}
        if ready(run_dir, path, lines):
            os.kill(pid, signal.SIGKILL)
            return {"killed_status": chain_kill.status(os.waitpid(pid, 0)[1]), "in_time": True}
        if time.monotonic() - started > HANG_S:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return {"killed_status": "hung", "in_time": False}
        time.sleep(0.005)


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    work, tree = Path(spec["work"]), spec["config"]
    results = {"reference_status": chain_kill.run_here(chain_kill.write_config(work, "reference", tree))}
    gc.freeze()  # the forked runs share this heap; see chain_kill
    for scenario, (path, lines) in spec["kills"].items():
        config = chain_kill.write_config(work, scenario, tree)
        log = work / f"{scenario}.log"
        result = kill_when_ready(config, work / scenario, log, path, lines)
        rerun = chain_kill.fork_run(config, log)
        result["rerun_status"] = chain_kill.status(os.waitpid(rerun, 0)[1])
        results[scenario] = result
    (work / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])

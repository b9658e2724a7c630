"""Kill `ssrtune run` at a random moment, many times, cheaply: the harness behind test_chain_faults.py.

Starting a Python process that imports torch, transformers and TRL costs 5-10 s, too much for dozens of runs. This
process imports them once, runs the reference run itself (which also loads every lazily imported module), and then
forks every further run: a forked child is a real `ssrtune run` process (`ssrtune.cli.entry` with that argv, the
console script's code), started in milliseconds. First come runs never interrupted, one per lane: their duration is
the span kill moments are drawn from. Then, per seed, one run is SIGKILLed at a moment drawn uniformly from that
span, and a second one reruns the same command to its end; while the first holds the run, an `ssrtune generate` on
the same run is started too, and must stop at once. Two seeds run at once, one per core.

usage: python tests/chain_kill.py SPEC.json     (SPEC: {"work": folder, "config": run config tree, "seeds": [...]})
Writes <work>/results.json: the exit status of the reference and uninterrupted runs, the latter's mean duration,
and per seed the kill moment, the last artifact written before it, and the exit status and process id of each
process. Each seed's output is in <work>/seed-<n>.log (and .intruder.log).
"""

from __future__ import annotations

import gc
import json
import os
import random
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

os.environ["OMP_NUM_THREADS"] = "1"  # a forked child must not inherit a live OpenMP pool; one thread a run
os.environ["TOKENIZERS_PARALLELISM"] = "false"  # nor a Rust thread pool

import yaml  # noqa: E402
from tqdm import std as tqdm_std  # noqa: E402

from ssrtune import cli  # noqa: E402

tqdm_std.tqdm.monitor_interval = 0  # no tqdm monitor thread, which could hold tqdm's lock when a child is forked
HANG_S = 300  # a run (killed or rerun) still going after this long is reported as hung and killed

# In the order a run writes them: the last one present tells where a kill landed.
MILESTONES = ["config.yaml", "data/data.meta.json", "generations.jsonl", "judgments.jsonl", "train/ssr.jsonl",
              "models/ssr/ssrtune_fingerprint.json", "models/ssr/checkpoint-1", "models/ssr/ssrtune_train.json",
              "eval/base/predictions.jsonl", "eval/base/task.json", "eval/ssr/predictions.jsonl", "eval/ssr/task.json",
              "report.md"]


def write_config(work: Path, name: str, tree: dict) -> Path:
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**tree, "run_dir": str(work / name)}))
    return path


def run_here(config: Path, command: str = "run") -> int:
    """`ssrtune COMMAND CONFIG` as the console script runs it; its exit status."""
    sys.argv = ["ssrtune", command, str(config)]
    try:
        cli.entry()
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else 1
    return 0


def own_tqdm_lock() -> None:
    """Give this forked child a tqdm lock of its own, as a process started from a shell has.

    tqdm shares one multiprocessing lock among a process and all its forked children, so that their bars do not
    interleave; a sibling SIGKILLed while drawing a bar would hold it forever, and this child's first bar would wait.
    """
    tqdm_std.TqdmDefaultWriteLock.th_lock = tqdm_std.TRLock()
    if "mp_lock" in vars(tqdm_std.TqdmDefaultWriteLock):
        del tqdm_std.TqdmDefaultWriteLock.mp_lock
    tqdm_std.TqdmDefaultWriteLock.create_mp_lock()  # a new one
    classes = [tqdm_std.tqdm]
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        if "_lock" in vars(cls):
            cls._lock = tqdm_std.TqdmDefaultWriteLock()


def fork_run(config: Path, log: Path, command: str = "run") -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        own_tqdm_lock()
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        code = run_here(config, command)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def status(wait_status: int) -> int:
    return -os.WTERMSIG(wait_status) if os.WIFSIGNALED(wait_status) else os.WEXITSTATUS(wait_status)


def wait(pid: int, started: float) -> int | str | None:
    """The exit status of `pid` if it ended, "hung" (and killed) past HANG_S, else None."""
    done, wait_status = os.waitpid(pid, os.WNOHANG)
    if done:
        return status(wait_status)
    if time.monotonic() - started < HANG_S:
        return None
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return "hung"


def last_written(run_dir: Path) -> str:
    written = [path for path in MILESTONES if (run_dir / path).exists()]
    return written[-1] if written else "nothing"


class Seed:
    """One seed's two runs: killed at a random moment, then rerun to the end.

    A run that ends before its kill (the machine ran faster than the runs the moment was drawn from) is started again
    in a fresh folder with a moment drawn from its own duration: every seed injects one fault.
    """

    def __init__(self, work: Path, tree: dict, seed: int, duration: float):
        self.config = write_config(work, f"seed-{seed}", tree)
        self.run_dir = work / f"seed-{seed}"
        self.log = work / f"seed-{seed}.log"
        self.random = random.Random(seed)
        self.result = {"seed": seed, "finished_before_kill": 0}
        self.start_killed_run(duration)

    def start_killed_run(self, duration: float) -> None:
        self.result["kill_at"] = round(self.random.uniform(0, duration), 3)
        self.pid, self.started, self.phase = fork_run(self.config, self.log), time.monotonic(), "killed run"
        self.intruder = None  # only this attempt's intruder is reported: its log starts empty
        self.log.with_suffix(".intruder.log").unlink(missing_ok=True)
        for key in ("intruder_pid", "intruder_status", "holder_pid"):
            self.result.pop(key, None)

    def holds_lock(self) -> bool:
        try:
            return json.loads((self.run_dir / ".ssrtune.lock").read_text()).get("pid") == self.pid
        except (OSError, ValueError):
            return False

    def poll_intruder(self) -> bool:
        """A second process on the run (`ssrtune generate`, as in the issue), started while the run to be killed
        holds the run's lock: it must stop at once, unless the kill came first (then it may take the run over).
        True while it runs."""
        if self.intruder is None and self.phase == "killed run" and self.holds_lock():
            self.intruder = fork_run(self.config, self.log.with_suffix(".intruder.log"), "generate")
            self.intruder_started = time.monotonic()
            self.result.update(intruder_pid=self.intruder, holder_pid=self.pid)
        if self.intruder is None or "intruder_status" in self.result:
            return False
        ended = wait(self.intruder, self.intruder_started)
        if ended is not None:
            self.result["intruder_status"] = ended
        return ended is None

    def poll(self) -> bool:
        """Advance; True once both runs, and the intruder if one was started, are over."""
        intruder_running = self.poll_intruder()
        if self.phase == "killed run":
            self.poll_killed_run()
        elif self.phase == "rerun":
            ended = wait(self.pid, self.started)
            if ended is not None:
                self.result.update(rerun_status=ended, rerun_s=round(time.monotonic() - self.started, 2))
                self.phase = "done"
        return self.phase == "done" and not intruder_running

    def poll_killed_run(self) -> None:
        done, wait_status = os.waitpid(self.pid, os.WNOHANG)
        if not done and time.monotonic() - self.started >= self.result["kill_at"]:
            os.kill(self.pid, signal.SIGKILL)
            done, wait_status = os.waitpid(self.pid, 0)
        if not done:
            return
        while self.poll_intruder():  # one process at a time after the kill, as a user would run them
            time.sleep(0.005)
        if not os.WIFSIGNALED(wait_status) and self.result["finished_before_kill"] < 3:
            self.result["finished_before_kill"] += 1
            shutil.rmtree(self.run_dir)
            self.start_killed_run(time.monotonic() - self.started)
            return
        lock = self.run_dir / ".ssrtune.lock"
        self.result.update(killed_pid=self.pid, killed_status=status(wait_status),
                           last_written=last_written(self.run_dir),
                           lock_left=lock.exists() and lock.stat().st_size > 0)
        self.pid, self.started, self.phase = fork_run(self.config, self.log), time.monotonic(), "rerun"


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    work, tree = Path(spec["work"]), spec["config"]
    start = time.monotonic()
    reference_status = run_here(write_config(work, "reference", tree))
    gc.freeze()  # the children share this heap; without this every gc.collect in them walks all of it
    # Forked runs never interrupted, one per lane as the seeds will run: their mean duration is the span the kills
    # are drawn from (the reference, the first run of this process, paid for loading everything), and their
    # artifacts must equal the reference's too.
    lanes, forked = spec.get("lanes", 2), time.monotonic()
    pids = [fork_run(write_config(work, f"uninterrupted-{k}", tree), work / f"uninterrupted-{k}.log")
            for k in range(lanes)]
    durations, statuses = [], []
    for pid in pids:
        statuses.append(status(os.waitpid(pid, 0)[1]))
        durations.append(time.monotonic() - forked)
    duration = sum(durations) / lanes
    pending, running, results = list(spec["seeds"]), [], []
    while pending or running:
        while pending and len(running) < lanes:
            running.append(Seed(work, tree, pending.pop(0), duration))
        for seed in [s for s in running if s.poll()]:
            running.remove(seed)
            results.append(seed.result)
        time.sleep(0.005)
    (work / "results.json").write_text(json.dumps({"reference_status": reference_status,
                                                   "uninterrupted_status": statuses,
                                                   "uninterrupted_s": round(duration, 2),
                                                   "total_s": round(time.monotonic() - start, 2),
                                                   "seeds": sorted(results, key=lambda r: r["seed"])}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])

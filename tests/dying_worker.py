"""ssrtune's training worker (`ssrtune.training.distributed.worker`) in a process that dies: rank 1 aborts (SIGABRT, as the gloo
exit race of issue 21 did) right after the worker returned (`after`), or before it trained at all (`before`).

Once the worker has returned, each rank writes the names of its threads still alive to OUTPUT_DIR/threads-<rank>.txt:
the gloo threads (`gloo_tcp_loop`, `pt_gloo_runloop`) must be gone by then, or they race the interpreter's exit.

Run by tests/stages/test_distributed.py in place of `-m ssrtune.training.distributed` under `accelerate launch`:
    dying_worker.py before|after CONFIG_JSON ROWS_FILE OUTPUT_DIR RESULT_FILE
"""

import os
import sys
from pathlib import Path

from ssrtune.training.distributed import worker

when, arguments = sys.argv[1], sys.argv[2:]
rank = os.environ["RANK"]
if when == "before" and rank == "1":
    os.abort()
worker(*arguments)
tasks = Path(f"/proc/{os.getpid()}/task")
names = [(task / "comm").read_text().strip() for task in tasks.iterdir()] if tasks.exists() else []
Path(arguments[2], f"threads-{rank}.txt").write_text("\n".join(names))
if when == "after" and rank == "1":
    os.abort()

"""An LM served from a child process: closing it ends the process, and the operating system takes back every byte of
GPU memory the engine held.

Why a process rather than shutting the engine down in ours: vLLM 0.30's `LLM` has no shutdown call; its memory
goes back only when the engine object is garbage collected and its worker processes exit, which this process cannot
guarantee (a traceback or a reference cycle keeps it alive), while training, the next stage, needs that memory. The
child is started with `spawn` (a forked CUDA context is unusable) on the first call, so building the LM costs
nothing, and it is not a daemon because vLLM starts processes of its own. The child leads a process group of its own,
and ending it ends the whole group: vLLM's engine-core and worker processes, which would otherwise outlive a child that
was killed (or died) and keep their GPU memory.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import weakref
from collections.abc import Callable, Iterator, Sequence

from ssrtune.inference.lm import LM, Prompt

_STOP = None


def _portable(err: BaseException) -> BaseException:
    """`err` as the parent can unpickle it; an exception whose class can't be rebuilt from its args becomes a
    RuntimeError with the same words."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        return RuntimeError(f"{type(err).__name__}: {err}")


def _serve(factory: Callable[[], LM], conn) -> None:
    """The child: lead a process group (everything the engine starts joins it), build the LM, then answer (method,
    args, kwargs) messages until told to stop or the parent is gone."""
    if hasattr(os, "setsid"):
        os.setsid()
    try:
        lm = factory()
    except BaseException as err:
        conn.send(("error", _portable(err)))
        return
    conn.send(("ok", None))
    try:
        while True:
            try:
                message = conn.recv()
            except EOFError:  # the parent ended without closing us
                return
            if message is _STOP:
                return
            method, args, kwargs = message
            try:
                result = getattr(lm, method)(*args, **kwargs)
                conn.send(("ok", list(result) if isinstance(result, Iterator) else result))
            except Exception as err:
                conn.send(("error", _portable(err)))
    finally:
        lm.close()


def _stop(process, conn) -> None:
    if process.is_alive():
        try:
            conn.send(_STOP)
        except (OSError, ValueError):
            pass
        process.join(timeout=120)
        if process.is_alive():
            process.kill()
            process.join()
    conn.close()
    if hasattr(os, "killpg"):  # what the child started and left behind (or left when it was killed)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


class ChildProcessLM(LM):
    """The LM `factory()` builds, living in a child process; calls go through a pipe. `factory` must be picklable
    (e.g. a functools.partial of an LM class and its settings)."""

    def __init__(self, factory: Callable[[], LM], engine: str, chunk_size: int):
        self.factory, self.engine, self.chunk_size = factory, engine, chunk_size
        self._process = self._conn = self._finalizer = None

    def _call(self, method: str, *args, **kwargs):
        if self._process is None:
            self._start()
        with contextlib.suppress(OSError):  # a child that is gone is told by `_receive`
            self._conn.send((method, args, kwargs))
        return self._receive()

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(self.factory, child), daemon=False,
                                        name=f"ssrtune-{self.engine}")
        self._process.start()
        child.close()
        # Also at interpreter exit, before multiprocessing waits for its children (atexit runs later hooks first).
        self._finalizer = weakref.finalize(self, _stop, self._process, self._conn)
        try:
            self._receive()  # the engine is up, or its error is raised here
        except BaseException:
            self.close()
            raise

    def _receive(self):
        try:
            status, value = self._conn.recv()
        except (EOFError, OSError):  # the child ended, or was killed (the pipe then resets)
            self._process.join(timeout=10)
            code = self._process.exitcode
            self.close()
            raise RuntimeError(f"the {self.engine} engine's process ended unexpectedly (exit code {code})") from None
        if status == "error":
            raise value
        return value

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self._process = self._conn = self._finalizer = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int, stop: Sequence[str] = (), **options) -> list:
        return self._call("generate", list(prompts), max_new_tokens, list(stop), **options)

    def loglikelihood(self, requests: Sequence[tuple[Prompt, str]], **options) -> list[tuple[float, bool]]:
        return self._call("loglikelihood", list(requests), **options)

    def token_logprobs(self, sequences: Sequence[list[int]], n_last: Sequence[int], **options) -> Iterator:
        return iter(self._call("token_logprobs", list(sequences), list(n_last), **options))

    def order(self, prompts: Sequence[Prompt]) -> list[int]:
        return self._call("order", list(prompts))

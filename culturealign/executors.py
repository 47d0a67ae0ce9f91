"""Executors: where units of work run, behind the interface nevergrad's ``minimize(executor=...)`` uses.

``executor.submit(fn, *args)`` returns a future with ``done()`` and ``result()``; ``fn(*args)`` runs on a worker.
A worker may hold a *context* built once (for an experiment: a :class:`~culturealign.measure.Session`, i.e. the
loaded model); code running on a worker reads it with :func:`worker_context`.

- :class:`LocalExecutor` runs each call in this process, at submit time (the default; one worker).
- :class:`RayExecutor` runs calls on Ray actors, one per GPU (or per CPU), each building its context once in its
  constructor, with Ray's fault tolerance: an actor that dies is restarted and its call retried. Ray is imported
  only here, when the executor is created (``pip install "culturealign[ray]"``).
"""
from __future__ import annotations

import contextvars
import os
from collections import deque
from typing import Any, Callable

from .errors import CultureAlignError

RAY_VERSION = "2.60.0"
_CONTEXT: contextvars.ContextVar = contextvars.ContextVar("culturealign_worker_context", default=None)


def worker_context() -> Any:
    """The context of the worker running the current call (None outside an executor call or without one)."""
    return _CONTEXT.get()


def _call_in_context(context, fn: Callable, args: tuple, kwargs: dict):
    token = _CONTEXT.set(context)
    try:
        return fn(*args, **kwargs)
    finally:
        _CONTEXT.reset(token)


class DoneFuture:
    """The outcome of a call that already ran: ``result()`` returns its value or raises its exception."""

    def __init__(self, value=None, error: BaseException | None = None):
        self._value, self._error = value, error

    def done(self) -> bool:
        return True

    def result(self, timeout: float | None = None):
        if self._error is not None:
            raise self._error
        return self._value


class LocalExecutor:
    """Runs ``fn(*args)`` in this process when it is submitted.

    ``context`` (or, built on first use, ``setup()``) is what :func:`worker_context` returns during the call.
    Exceptions are kept in the future; KeyboardInterrupt is not caught (Ctrl-C stops at once).
    """

    workers = 1

    def __init__(self, context=None, setup: Callable[[], Any] | None = None):
        self._context, self._setup = context, setup

    @property
    def context(self):
        if self._context is None and self._setup is not None:
            self._context = self._setup()
        return self._context

    def submit(self, fn: Callable, *args, **kwargs) -> DoneFuture:
        try:
            return DoneFuture(_call_in_context(self.context, fn, args, kwargs))
        except Exception as exc:  # noqa: BLE001  (handed back through result(), as concurrent.futures does)
            return DoneFuture(error=exc)

    def describe(self) -> dict:
        return {"kind": "local"}

    def shutdown(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


# ---- Ray ----------------------------------------------------------------------------------------------------------
def import_ray():
    """Ray, or a clear error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise CultureAlignError(f'the Ray executor needs Ray {RAY_VERSION}: pip install "culturealign[ray]"') from None
    return ray


class _Worker:
    """The body of one Ray actor: builds its context once (loads the model), then runs whole calls."""

    def __init__(self, setup: Callable[[], Any]):
        self.context = setup()

    def run(self, fn: Callable, args: tuple, kwargs: dict):
        return _call_in_context(self.context, fn, args, kwargs)

    def pid(self) -> int:
        return os.getpid()


class RayFuture:
    """A call queued on, or running on, a :class:`RayExecutor`."""

    def __init__(self, executor: "RayExecutor", fn: Callable, args: tuple, kwargs: dict):
        self._executor, self.call = executor, (fn, args, kwargs)
        self.ref = None          # the ObjectRef once dispatched to an actor
        self.actor = None
        self._ready = False

    def done(self) -> bool:
        if not self._ready:
            self._executor._poll(0)
        return self._ready

    def result(self, timeout: float | None = None):
        while not self._ready:
            self._executor._poll(0.5)
        ray = self._executor.ray
        try:
            return ray.get(self.ref)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, CultureAlignError):
                raise CultureAlignError(str(cause)) from None
            raise
        except ray.exceptions.RayActorError as exc:
            raise CultureAlignError(
                f"a Ray worker died and its restarts ({self._executor.max_retries}) are used up; the finished units "
                f"are saved: continue with --resume ({str(exc).strip().splitlines()[0]})") from None


class RayExecutor:
    """Runs calls on ``actors`` Ray actors, each building ``setup()`` once (for an experiment: the Session, i.e. the
    model, loaded from a path every node can read).

    On a GPU cluster each actor holds ``gpus_per_actor`` GPUs (default: 1 when the cluster has GPUs, else 0); on
    CPUs each actor takes one CPU. ``address``: an existing cluster (``"auto"`` or ``"ray://host:10001"``); without
    it, and without a running Ray, a local one is started (``ray.init(num_cpus=<this machine's CPUs>)``), and shut
    down by :meth:`shutdown`. An actor that dies (a crash, a lost node, a kill) is restarted up to ``max_retries``
    times and its call retried (``max_restarts``, ``max_task_retries``): a call must therefore be safe to run again,
    as experiment units are (they resume from their own checkpoint).
    """

    def __init__(self, setup: Callable[[], Any], actors: int | None = None, gpus_per_actor: float | None = None,
                 address: str | None = None, max_retries: int = 3):
        ray = self.ray = import_ray()
        self.max_retries = max_retries
        self._owns_ray = False
        if not ray.is_initialized():
            if address:
                ray.init(address=address, include_dashboard=False, logging_level="warning")
            else:
                import torch

                ray.init(num_cpus=_cpus(), num_gpus=torch.cuda.device_count() if torch.cuda.is_available() else 0,
                         include_dashboard=False, logging_level="warning")
            self._owns_ray = True
        resources = ray.cluster_resources()
        if gpus_per_actor is None:
            gpus_per_actor = 1 if resources.get("GPU", 0) > 0 else 0
        if gpus_per_actor < 0:
            raise CultureAlignError("--gpus-per-actor must be 0 or more")
        if actors is None:
            actors = (int(resources.get("GPU", 0) // gpus_per_actor) if gpus_per_actor
                      else int(resources.get("CPU", 1)))
        if actors < 1:
            raise CultureAlignError(f"no room for a Ray actor: the cluster has {resources.get('GPU', 0):g} GPUs and "
                                    f"{resources.get('CPU', 0):g} CPUs (--actors, --gpus-per-actor)")
        self.gpus_per_actor = gpus_per_actor
        options = ({"num_gpus": gpus_per_actor, "num_cpus": 1} if gpus_per_actor else {"num_cpus": 1})
        cls = ray.remote(max_restarts=max_retries, max_task_retries=max_retries, **options)(_Worker)
        self.actors = [cls.remote(setup) for _ in range(actors)]
        self._idle = deque(self.actors)
        self._queue: deque[RayFuture] = deque()
        self._running: dict = {}  # ObjectRef -> RayFuture

    @property
    def workers(self) -> int:
        return len(self.actors)

    def submit(self, fn: Callable, *args, **kwargs) -> RayFuture:
        future = RayFuture(self, fn, args, kwargs)
        self._queue.append(future)
        self._dispatch()
        return future

    def _dispatch(self) -> None:
        while self._queue and self._idle:
            future, actor = self._queue.popleft(), self._idle.popleft()
            fn, args, kwargs = future.call
            future.actor, future.ref = actor, actor.run.remote(fn, args, kwargs)
            self._running[future.ref] = future

    def _poll(self, timeout: float) -> None:
        """Mark finished calls done, free their actors and start queued calls; waits up to ``timeout`` s for one."""
        if self._running:
            refs = list(self._running)
            ready, _ = self.ray.wait(refs, num_returns=1, timeout=timeout)
            if ready:  # then take every other call that is also ready, without waiting
                ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
            for ref in ready:
                future = self._running.pop(ref)
                future._ready = True
                self._idle.append(future.actor)
        self._dispatch()

    def describe(self) -> dict:
        return {"kind": "ray", "actors": len(self.actors), "gpus_per_actor": self.gpus_per_actor,
                "max_retries": self.max_retries}

    def shutdown(self) -> None:
        for actor in getattr(self, "actors", []):
            self.ray.kill(actor)
        self.actors = []
        if self._owns_ray:
            self.ray.shutdown()
            self._owns_ray = False

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1

"""Shadow training on a Ray cluster: workers train, the driver alone commits.

:func:`miakit.shadow.train_models` (one task per model) and
:func:`miakit.shadow.train_heads` (one task per chunk of heads) take ``executor="ray"``.
The calling process is the *driver*: it validates everything, creates (or reopens) the
run directory, holds its lock, and submits one Ray task per unit of work that is not yet
finished. A task trains on whichever node Ray places it, asks for its share of CPUs and
GPUs (``ray_resources``), and returns its arrays with a SHA-256 digest of them to the
driver through Ray's object store. The driver re-hashes what it received, and only when
the digests agree writes the files atomically and lists them in the manifest
(:meth:`miakit.shadow.Run.write_model`). Workers never touch the run directory, so it
needs to be reachable from the driver only, and the crash-safety of the run store holds
unchanged:

- a worker process that dies (killed, out of memory, node lost) is restarted by Ray up to
  ``max_retries`` times (default 3); an exception raised by the training code itself is
  not retried, it stops the call with that exception;
- a killed driver takes its tasks with it; the models it had committed stay committed,
  and the same call (or command) resumes with the rest;
- every random draw of a model comes from ``(seed, model)``, so a task computes exactly
  what local training computes. On CPUs the run is bit-for-bit identical to a local one
  when torch uses as many threads in a task as it did locally: a task uses
  ``ceil(num_cpus)`` threads (one by default; some float32 reductions, such as those of
  the L-BFGS linear heads, round differently with another thread count).

Ray is an optional dependency (``pip install 'miakit[ray]'``), imported only here.
"""

from __future__ import annotations

import contextlib
import math
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from miakit import io as mkio
from miakit._validation import check_choice, check_int, check_real

EXECUTORS = ("local", "ray")
_OPTION_KEYS = ("num_cpus", "num_gpus", "memory", "resources", "accelerator_type",
                "max_retries")
_DEFAULT_RETRIES = 3
_CONNECT_TIMEOUT_S = 10.0


def require_ray() -> Any:
    """The ``ray`` module, or an ImportError naming the extra that installs it."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError("executor='ray' needs Ray, an optional dependency of miakit: "
                          "pip install 'miakit[ray]' (or pip install 'ray>=2.9')") from exc
    return ray


def check_executor(executor: Any) -> str:
    """``executor`` validated: "local" or "ray"."""
    return str(check_choice(executor, "executor", EXECUTORS))


def task_options(resources: Mapping[str, Any] | None, device: Any) -> dict:
    """Ray task options from ``ray_resources`` and the training device.

    Defaults: one CPU per task, one GPU per task when ``device`` is CUDA, and
    ``max_retries=3`` restarts of a task whose worker process dies.

    Examples
    --------
    >>> from miakit.shadow._ray import task_options
    >>> task_options({"num_cpus": 2}, "cpu")
    {'num_cpus': 2, 'num_gpus': 0, 'max_retries': 3}
    >>> task_options(None, "cuda")["num_gpus"]
    1
    """
    dev = worker_device(device)
    if resources is None:
        resources = {}
    if not isinstance(resources, Mapping):
        raise TypeError(f"ray_resources: expected a dict of Ray task options, got "
                        f"{type(resources).__name__}")
    unknown = sorted(set(resources) - set(_OPTION_KEYS))
    if unknown:
        raise ValueError(f"ray_resources: unknown options {unknown}; expected some of "
                         f"{list(_OPTION_KEYS)}")
    opts = {"num_cpus": resources.get("num_cpus", 1),
            "num_gpus": resources.get("num_gpus", 1 if dev == "cuda" else 0),
            **{k: resources[k] for k in ("memory", "resources", "accelerator_type")
               if k in resources},
            "max_retries": resources.get("max_retries", _DEFAULT_RETRIES)}
    for key in ("num_cpus", "num_gpus"):
        check_real(opts[key], f"ray_resources[{key!r}]", 0.0, what="a non-negative number")
    check_int(opts["max_retries"], "ray_resources['max_retries']", -1,
              what="an int >= 0 (or -1: without limit)")
    if dev == "cuda" and opts["num_gpus"] <= 0:
        raise ValueError("ray_resources['num_gpus']: device='cuda' needs a GPU share > 0 "
                         "per task")
    if dev == "cpu" and opts["num_gpus"] > 0:
        raise ValueError(f"ray_resources['num_gpus']: {opts['num_gpus']} GPUs per task, but "
                         "device='cpu' would leave them idle; pass device='cuda'")
    return opts


def worker_device(device: Any) -> str:
    """The device a task trains on, "cpu" or "cuda" (the GPU that Ray assigned to it).

    Checked on the driver without looking for a GPU there: a head node often has none.
    """
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device: expected 'cpu' or 'cuda', got {device!r}") from exc
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device: expected 'cpu' or 'cuda', got {device!r}")
    if dev.type == "cuda" and dev.index not in (None, 0):
        raise ValueError(f"device={device!r}: with executor='ray' every task trains on the "
                         "GPU that Ray assigns to it; pass device='cuda'")
    return dev.type


def apply_threads(num_cpus: float) -> int:
    """Let torch use ``ceil(num_cpus)`` threads (at least one) in a task; returns it."""
    import torch

    n = max(1, math.ceil(float(num_cpus)))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def check_address(address: Any) -> str | None:
    """``ray_address`` validated (None, "auto", "local", "HOST:PORT" or "ray://HOST:PORT").

    Examples
    --------
    >>> from miakit.shadow._ray import check_address
    >>> check_address("10.0.0.1:6379")
    '10.0.0.1:6379'
    """
    if address is None:
        return None
    if not isinstance(address, str) or not address:
        raise ValueError(f"ray_address: expected an address string or None, got {address!r}")
    _host_port(address)
    return address


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a concrete address, None for "auto"/"local"; ValueError if malformed."""
    if address in ("auto", "local"):
        return None
    rest = address.split("://", 1)[1] if "://" in address else address
    rest = rest.rstrip("/")
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"ray_address: expected 'HOST:PORT' (e.g. '10.0.0.1:6379'), "
                         f"'ray://HOST:PORT', 'auto' or 'local', got {address!r}")
    return host, int(port)


def _check_answers(address: str) -> None:
    """Fail fast, naming the address, when nothing listens there."""
    hp = _host_port(address)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=_CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or exc)
        raise RuntimeError(
            f"Ray address {address!r}: nothing answers at {hp[0]}:{hp[1]} ({reason}). Start "
            "the head node with 'ray start --head' and pass the address it prints; nothing "
            "was written to the run directory.") from exc


@contextlib.contextmanager
def connect(address: str | None) -> Iterator[Any]:
    """Connect to (or start) Ray for the duration of the block; yields the module.

    ``address``: None uses ``RAY_ADDRESS``, else the latest cluster started on this
    machine, else starts a local Ray; "auto" requires an existing cluster; "HOST:PORT" or
    "ray://HOST:PORT" connects there. When Ray is already initialised in this process,
    that connection is used as it is and left open; a connection made here is closed
    at the end of the block.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    checked = check_address(address)
    if checked is not None:
        _check_answers(checked)
    try:
        ray.init(address=address, log_to_driver=False)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        where = "a Ray cluster" if address is None else f"Ray at {address!r}"
        raise RuntimeError(f"could not connect to {where}: {exc}; nothing was written to the "
                           "run directory") from exc
    try:
        yield ray
    finally:
        ray.shutdown()


def payload_digest(arrays: Sequence[np.ndarray]) -> str:
    """The digest a task sends with its arrays, checked by the driver before writing."""
    return mkio.digest_arrays(*arrays)


def run_tasks(ray: Any, fn: Callable[..., Any], shared: Any, items: Sequence[Any],
              options: Mapping[str, Any], commit: Callable[[Any, Any], None],
              describe: Callable[[Any], str]) -> None:
    """Run ``fn(shared, item)`` as one Ray task per item; ``commit(item, result)`` on the
    driver as each one finishes, in the order they finish.

    ``shared`` is put into the object store once and handed to every task. A task whose
    worker dies is retried by Ray (``options["max_retries"]``); when the retries are
    spent, or ``fn`` or ``commit`` raises, the tasks still pending are cancelled and the
    error is raised (a worker death as RuntimeError naming ``describe(item)``).
    """
    if not items:
        return
    remote = ray.remote(fn).options(retry_exceptions=False, **options)
    ref = ray.put(shared)
    pending = {remote.remote(ref, item): item for item in items}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            item = pending.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayTaskError as exc:  # the task raised
                cause = getattr(exc, "cause", None)
                if isinstance(cause, ray.exceptions.RayError):  # e.g. inputs not loadable
                    first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
                    raise RuntimeError(
                        f"{describe(item)}: the Ray worker could not run the task ({first}). "
                        "Everything sent to the workers (the model factory, training and "
                        "augmentation functions, the dataset) must be loadable there: "
                        "define it in the driver's script or in a module installed on "
                        "every node.") from exc
                if isinstance(cause, Exception):  # the training code raised
                    raise cause from exc  # its own type and message; the remote trace chained
                raise
            except ray.exceptions.RayError as exc:
                raise RuntimeError(
                    f"{describe(item)}: the Ray worker training it failed and Ray gave up "
                    f"after {options.get('max_retries', _DEFAULT_RETRIES)} retries "
                    f"({type(exc).__name__}: {exc}). Finished models are saved; run the "
                    "same call again to resume.") from exc
            commit(item, result)
    finally:
        for left in pending:
            with contextlib.suppress(Exception):
                ray.cancel(left)  # queued tasks are dropped, running ones interrupted

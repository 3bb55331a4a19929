"""Where a sweep's runs train: processes on this machine or Ray tasks, behind one call.

:func:`run_tasks` hands every task (a ``RunConfig`` as a dict) to :func:`run_task`, which
calls ``train(config, root=...)`` and never raises, and passes each result to a callback as it
comes back:

* ``local``: ``workers`` spawned processes (``ProcessPoolExecutor``); with one worker the runs
  go one after another in this process. Each run gets ``cores // workers`` torch threads
  unless the config says otherwise, so workers x threads never exceeds the cores.
* ``ray``: one Ray task per run, on the cluster at ``address`` or on a local Ray started for
  the sweep. Each task asks Ray for ``cpus`` CPUs and ``gpus`` GPUs (:class:`ResourcePlan`;
  a fraction of a GPU lets runs share one), so Ray places a run that asks for a GPU on a node
  that has one; a run that asks for none trains on the CPU even on a GPU node (``device
  auto`` resolves to ``cpu`` there), so it never takes a GPU Ray did not give it.

  The ``hcl_core`` package is shipped to the workers (``runtime_env.py_modules``); the
  cluster's nodes need the same Python packages. A Ray that the caller initialised already is
  used as it is. A task that cannot see the sweep folder (another host without a shared file
  system: it does not find the sweep's random id in ``<folder>/.sweep-id``), or that runs where
  ``HCL_SWEEP_SHIP_BACK=1`` is set (a node that must not write into the folder, e.g. a slow or
  read-only mount of it), trains into a temporary folder and returns the run as a bundle
  (:mod:`hcl_core.bundle`), which the driver imports into the sweep folder.

  A run whose worker or node dies is retried by Ray (``retries`` times) on any node that can
  give it its resources; when no node of the cluster can any more (its GPU node left), or the
  retries are used up, the run is recorded as failed with a message and the sweep goes on.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import RunConfig
from .sweep import SweepError
from .threads import set_process_threads

__all__ = [
    "BACKENDS",
    "SHIP_BACK_ENV",
    "ResourcePlan",
    "land",
    "plan_resources",
    "run_task",
    "run_tasks",
    "threads_per_worker",
]

BACKENDS = ("local", "ray")
MARKER = ".sweep-id"  # a random id: a Ray task that can read it writes straight into the folder
#: Set to 1 in a Ray node's environment to make its tasks return runs as bundles.
SHIP_BACK_ENV = "HCL_SWEEP_SHIP_BACK"
#: Seconds between two looks at a Ray cluster that has no node left for the runs still waiting.
_INFEASIBLE_GRACE_S = 5.0

OnTaskResult = Callable[[dict[str, Any]], None]


# --------------------------------------------------------------------------------------------
# what each run gets
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourcePlan:
    """What every run of a sweep gets.

    Attributes:
        threads: torch threads of a run whose config leaves ``threads`` at 0.
        cpus: CPUs a Ray task asks for (fractions allowed); locally equal to ``threads``.
        gpus: GPUs a Ray task asks for (0, a fraction to share one GPU, or a whole number).
    """

    threads: int
    cpus: float
    gpus: float

    def describe(self) -> str:
        gpus = f", {self.gpus:g} GPU" if self.gpus else ""
        return f"{self.cpus:g} CPU{gpus} and {self.threads} thread(s) per run"


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Torch threads each of ``workers`` processes may use so that workers x threads <= cores."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // max(1, workers))


def _positive(value: float | None, flag: str, *, zero: bool = False) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < 0 or (number == 0 and not zero):
        raise SweepError(f"{flag} must be a number {'>= 0' if zero else '> 0'}, got {value!r}")
    return number


def plan_resources(backend: str, *, workers: int = 1, threads: int = 0, cpus_per_run: float | None = None,
                   gpus_per_run: float | None = None, devices: Collection[str] = ("auto",)) -> ResourcePlan:
    """The :class:`ResourcePlan` of a sweep, or :class:`SweepError` naming the flag that is wrong.

    ``threads`` is the configs' thread count (0: decided here): locally ``cores // workers``, on
    Ray ``floor(cpus_per_run)`` (at least 1). ``cpus_per_run`` defaults to the threads and
    ``gpus_per_run`` to 1 when a config asks for ``device cuda`` (Ray hands a GPU only to a task
    that asks for one), else 0. Both are Ray's and refused with the local backend.
    """
    if backend not in BACKENDS:
        raise SweepError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if workers < 1:
        raise SweepError(f"--workers must be >= 1, got {workers}")
    cpus = _positive(cpus_per_run, "--cpus-per-run")
    gpus = _positive(gpus_per_run, "--gpus-per-run", zero=True)
    if backend == "local":
        for flag, value in (("--cpus-per-run", cpus), ("--gpus-per-run", gpus)):
            if value is not None:
                raise SweepError(f"{flag} is only used with --backend ray (locally, --workers and --threads "
                                 "share the cores)")
        n = threads or threads_per_worker(workers)
        return ResourcePlan(threads=n, cpus=float(n), gpus=0.0)
    if gpus is None:
        gpus = 1.0 if "cuda" in devices else 0.0
    if gpus == 0 and "cuda" in devices:
        raise SweepError("--device cuda with --backend ray needs --gpus-per-run > 0: Ray gives a run a GPU "
                         "only if it asks for one")
    if gpus > 1 and not gpus.is_integer():
        raise SweepError(f"--gpus-per-run above 1 must be a whole number (Ray's rule), got {gpus:g}")
    n = threads or max(1, math.floor(cpus or 1))
    return ResourcePlan(threads=n, cpus=cpus if cpus is not None else float(n), gpus=gpus)


# --------------------------------------------------------------------------------------------
# one task (in this process, a spawned worker, or a Ray worker)
# --------------------------------------------------------------------------------------------


def run_task(config: dict[str, Any], root: str, *, ship_back: bool = False, marker: str | None = None,
             cpu_only: bool = False) -> dict[str, Any]:
    """Train one run of a sweep; never raises (a crash becomes ``state = "failed"``).

    Args:
        config: a ``RunConfig`` as a dict.
        root: the sweep folder the run is written to (an absolute path).
        ship_back: train into a temporary folder and return the run as a zip bundle
            (``result["bundle"]``, bytes) instead of writing under ``root``.
        marker: the sweep's id, also written to ``root/.sweep-id`` by the driver; when given,
            the task ships the run back unless it sees that file (so it runs on another node
            without a shared file system) or when :data:`SHIP_BACK_ENV` is set to 1.
        cpu_only: the run was given no GPU: ``device auto`` becomes ``cpu``.

    Returns:
        ``{"config", "state", "message", "run_dir", "summary", "seconds", "host", "node",
        "device", "shipped"}`` (+ ``"bundle"``); ``node`` is the Ray node id inside Ray.
    """
    if marker is not None:
        ship_back = ship_back or os.environ.get(SHIP_BACK_ENV) == "1" or not _sees_folder(root, marker)
    t0 = time.perf_counter()
    out: dict[str, Any] = {"config": config, "run_dir": None, "summary": {}, "host": socket.gethostname(),
                           "node": _ray_node(), "device": None, "shipped": ship_back}

    def note_device(event: dict[str, Any]) -> None:
        if event["type"] == "start":
            out["device"] = event["device"]

    try:
        cfg = RunConfig.from_dict(config)
        if cpu_only and cfg.device == "auto":
            cfg = cfg.replace(device="cpu")
        set_process_threads(cfg.threads)  # a task owns its worker process
        if ship_back:
            with tempfile.TemporaryDirectory(prefix="hcl-sweep-") as tmp:
                try:
                    _train_into(cfg, tmp, out, note_device)
                finally:  # a run that failed is shipped too: its files say how far it got
                    _pack(Path(tmp), out)
        else:
            _train_into(cfg, root, out, note_device)
    except Exception as e:  # one bad run must not end the sweep: record it and go on
        out.update(state="failed", message=f"{type(e).__name__}: {e}")
    out["seconds"] = time.perf_counter() - t0
    return out


def _train_into(config: RunConfig, root: str, out: dict[str, Any], callback: Callable[[dict], None]) -> None:
    from .train import train

    result = train(config, root=root, callback=callback)
    out.update(state=result.state, message=result.message, summary=result.summary, run_dir=str(result.run_dir))


def _pack(tmp: Path, out: dict[str, Any]) -> None:
    """Put the run trained under ``tmp`` (if it got as far as a folder) into ``out`` as a bundle."""
    from .bundle import export_run

    runs = [p for p in tmp.iterdir() if p.is_dir() and (p / "config.json").is_file()]
    if not runs:
        return
    out["run_dir"] = runs[0].name
    try:
        out["bundle"] = export_run(runs[0], tmp / "run.zip").read_bytes()
    except (OSError, ValueError) as e:
        out.update(state="failed", message=f"trained, but could not be packed to come back: {e}")


def _sees_folder(root: str, marker: str) -> bool:
    try:
        return (Path(root) / MARKER).read_text(encoding="utf-8") == marker
    except OSError:
        return False


def _ray_node() -> str | None:
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    with contextlib.suppress(Exception):
        return ray.get_runtime_context().get_node_id()
    return None


def land(result: dict[str, Any], root: Path) -> dict[str, Any]:
    """Import a run that came back as a bundle (a task on another host) into the sweep folder."""
    data = result.pop("bundle", None)
    if data is None:
        return result
    from .bundle import import_bundle

    name = Path(str(result.get("run_dir") or "run")).name
    tmp: Path | None = None
    try:
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=".landing-"))
        zip_path = tmp / f"{name}.zip"
        zip_path.write_bytes(data)
        result["run_dir"] = str(import_bundle(zip_path, root))
    except (OSError, ValueError) as e:  # named as the run's bundle, not by the temporary path
        message = str(e).replace(str(tmp / f"{name}.zip") if tmp else "\0", f"{name}.zip")
        result.update(state="failed", message=f"the run came back but could not be stored: {message}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return result


def _lost(task: dict[str, Any], message: str) -> dict[str, Any]:
    return {"config": task, "state": "failed", "run_dir": None, "summary": {}, "message": message, "seconds": 0.0}


# --------------------------------------------------------------------------------------------
# the backends
# --------------------------------------------------------------------------------------------


def run_tasks(tasks: Sequence[dict[str, Any]], root: str | os.PathLike, *, plan: ResourcePlan,
              backend: str = "local", workers: int = 1, address: str | None = None, retries: int = 2,
              on_ready: Callable[[], None] | None = None, on_result: OnTaskResult) -> None:
    """Train every task into ``root`` (absolute) on ``backend``; ``on_result(result)`` as each comes back.

    ``on_ready()`` is called once the backend can take the tasks (Ray reached and able to give a
    run ``plan``'s resources), before any task starts and before anything is written under
    ``root``: a sweep creates its folder there, so a refused backend leaves nothing behind.

    Every task yields exactly one result (a run that could not be trained is one with
    ``state = "failed"`` and its message). Ctrl-C (KeyboardInterrupt) stops the runs in flight
    and is raised again. ``address`` and ``retries`` are Ray's; :class:`SweepError` when Ray is
    missing, cannot be reached or has no node that can give a run ``plan``'s resources.
    """
    root = Path(root)
    ready = on_ready or (lambda: None)
    if backend == "local":
        ready()
        _run_local(tasks, root, workers, on_result)
    elif backend == "ray":
        _run_ray(tasks, root, plan, workers, address, retries, ready, on_result)
    else:
        raise SweepError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")


def _run_local(tasks: Sequence[dict[str, Any]], root: Path, workers: int, on_result: OnTaskResult) -> None:
    if workers == 1:
        for t in tasks:
            on_result(land(run_task(t, str(root)), root))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn, not fork: a forked copy of a process that already ran torch can deadlock in its thread
    # pools. Each config carries its thread budget, which run_task applies to its process.
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = {pool.submit(run_task, t, str(root)): t for t in tasks}
        for fut in as_completed(futures):
            try:
                result = fut.result()
            except Exception as e:  # BrokenProcessPool: a worker was killed (out of memory, a signal)
                result = _lost(futures[fut], f"its worker process died ({type(e).__name__}: {e})")
            on_result(land(result, root))
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in list(getattr(pool, "_processes", {}).values()):  # stop the runs in flight
            with contextlib.suppress(Exception):
                proc.terminate()
        raise
    pool.shutdown(wait=True)


def _package_dir() -> str:
    return str(Path(__file__).resolve().parent)


def _ray_fits(ray: Any, plan: ResourcePlan) -> bool:
    """Whether a live node of the cluster has (in total) the CPUs and GPUs one run asks for."""
    for node in ray.nodes():
        have = node.get("Resources") or {}
        if node.get("Alive") and have.get("CPU", 0) >= plan.cpus and have.get("GPU", 0) >= plan.gpus:
            return True
    return False


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip().rstrip(":")


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A TCP connection to ``host:port`` of ``address`` (or a SweepError): Ray itself retries for minutes."""
    if address == "auto":
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except ValueError:
        raise SweepError(f"--address {address!r} is not HOST:PORT (or ray://HOST:PORT, or auto)") from None
    except OSError as e:
        raise SweepError(f"cannot reach the Ray cluster at {address} ({e.strerror or type(e).__name__}): start it "
                         "with 'ray start --head' there, or check --address") from None


def _run_ray(tasks: Sequence[dict[str, Any]], root: Path, plan: ResourcePlan, workers: int, address: str | None,
             retries: int, on_ready: Callable[[], None], on_result: OnTaskResult) -> None:
    try:
        import ray
    except ImportError:
        raise SweepError("the ray backend needs Ray: pip install -r requirements-ray.txt "
                         "(or use --backend local)") from None
    import logging

    started = False
    where = f"the Ray cluster at {address}" if address else "the Ray cluster"
    if not ray.is_initialized():  # else: the caller's Ray (a notebook, a test) is used as it is
        # py_modules ships this package to every worker, so no node needs the project checked out
        # (Ray accepts a local folder only here, at the job level).
        common = dict(runtime_env={"py_modules": [_package_dir()]}, log_to_driver=False,
                      logging_level=logging.WARNING)
        try:
            if address:
                _check_reachable(address)
                ray.init(address=address, **common)
            else:
                where = "a local Ray"
                ray.init(num_cpus=max(1, math.ceil(workers * plan.cpus)), include_dashboard=False, **common)
        except SweepError:
            raise
        except Exception as e:  # ConnectionError, RuntimeError, ValueError ... depending on the version
            raise SweepError(f"could not start or reach {where}: {_first_line(e)}") from None
        started = True
    try:
        if not _ray_fits(ray, plan):
            raise SweepError(f"no node of {where} can give a run {plan.describe()}: lower --cpus-per-run or "
                             "--gpus-per-run, or add a node that has them")
        on_ready()
        remote = ray.remote(run_task).options(num_cpus=plan.cpus, num_gpus=plan.gpus, max_retries=retries)
        # A task writes straight into the sweep folder when it can see it (this host or a shared file
        # system), else it returns a bundle that is imported here.
        marker = os.urandom(8).hex()
        from .store import atomic_write_bytes

        atomic_write_bytes(root / MARKER, marker.encode())
        refs = {remote.remote(t, str(root), marker=marker, cpu_only=plan.gpus == 0): t for t in tasks}
        _collect_ray(ray, refs, root, plan, where, retries, on_result)
    finally:
        if started:
            ray.shutdown()


def _collect_ray(ray: Any, refs: dict[Any, dict[str, Any]], root: Path, plan: ResourcePlan, where: str,
                 retries: int, on_result: OnTaskResult) -> None:
    pending = list(refs)
    infeasible_since: float | None = None
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=_INFEASIBLE_GRACE_S)
            if done:
                try:
                    result = ray.get(done[0])
                except ray.exceptions.RayError as e:  # its worker or node died, and the retries with it
                    result = _lost(refs[done[0]], f"lost on {where} after {retries} retries ({_first_line(e)})")
                on_result(land(result, root))
                continue
            if _ray_fits(ray, plan):
                infeasible_since = None
            elif infeasible_since is None:
                infeasible_since = time.monotonic()
            elif time.monotonic() - infeasible_since >= _INFEASIBLE_GRACE_S:
                # The only nodes that could run them left: waiting would never end.
                for ref in pending:
                    with contextlib.suppress(Exception):
                        ray.cancel(ref, force=True)
                    on_result(_lost(refs[ref], f"not run: no node of {where} can give a run {plan.describe()} "
                                               "any more (the node that could left); run the sweep again"))
                pending = []
    except BaseException:
        for ref in pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        raise

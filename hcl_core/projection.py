"""2-D layouts of embeddings for the Embeddings page: PCA now, UMAP in the background.

PCA takes milliseconds, so it is the instant view. UMAP is slow the first time in a process
(``import umap`` plus numba compiling its kernels) and takes seconds per fit afterwards, so the
page never calls it directly: it asks a :class:`ProjectionService`, which fits UMAP on one
background thread, caches the layouts, and can be warmed up once per process before a user asks
for anything (BENCHMARKS.md has the costs).

:func:`umap_2d` finds the exact cosine neighbours itself and hands them to UMAP: for fewer than
4096 rows UMAP would otherwise call its numba cosine once per pair from Python and compile a
parallel neighbour search, which together cost more than the whole fit.

Layouts of successive epochs are made comparable with :func:`align_layout` (Procrustes), and a
UMAP fit can start from the previous epoch's layout (``init``) so points do not jump around.

Shapes: features ``x`` are ``(N, D)``; every layout is ``(N, 2)`` ``float32``, row ``i`` the
position of sample ``i``.
"""

from __future__ import annotations

import functools
import os
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from typing import Any

import numpy as np

from .threads import limited_threads

__all__ = [
    "UMAP_MIN_POINTS",
    "ProjectionService",
    "align_layout",
    "layout_key",
    "pca_2d",
    "pca_basis",
    "umap_2d",
]

#: Fewer points than this cannot be laid out by UMAP (its spectral initialisation needs a few
#: more points than dimensions); callers fall back to :func:`pca_2d`.
UMAP_MIN_POINTS = 5
#: Up to this many rows :func:`umap_2d` finds the exact cosine neighbours itself (blocked matrix
#: products, 1-2 s for 5000 x 512) and hands them to UMAP; beyond, UMAP's own approximate
#: search (pynndescent) runs, which compiles for about 20 s on first use.
_EXACT_KNN_MAX = 20_000


def _as_array(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor
        x = x.detach().cpu().float().numpy()
    return np.asarray(x)


def _check_points(x: Any, name: str = "x") -> np.ndarray:
    """``(N, D)`` finite float64 array, N >= 1, D >= 1."""
    a = _as_array(x, name)
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array of shape (N, D), got shape {tuple(a.shape)}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name}: empty array of shape {tuple(a.shape)}; nothing to lay out")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: features contain NaN/inf: the encoder diverged")
    return a


# --------------------------------------------------------------------------------------------
# PCA
# --------------------------------------------------------------------------------------------


def pca_basis(x: Any) -> np.ndarray:
    """The first two principal axes of ``x`` ``(N, D)``: a ``(D, 2)`` float64 matrix, orthonormal columns.

    The axes are the top eigenvectors of the scatter matrix ``Xc^T Xc`` of the centred data
    (equivalently the top right singular vectors of ``Xc``; the symmetric ``D x D``
    decomposition is ~7x faster than an SVD of ``Xc`` for 10000 x 512). Column 0 explains the
    most variance. Sign convention (so layouts do not flip between calls): each axis is flipped
    so that its entry of largest absolute value is positive (the first such entry on ties).
    Directions with no variance (``N < 3``, ``D < 2``, all points equal) come back as zero columns.
    """
    a = _check_points(x)
    xc = a - a.mean(axis=0)
    n, d = xc.shape
    basis = np.zeros((d, 2))
    with limited_threads():
        if d <= n:
            evals, evecs = np.linalg.eigh(xc.T @ xc)  # ascending
            order = np.argsort(evals)[::-1][:2]
            vecs, vals = evecs[:, order], evals[order]
        else:  # fewer points than dimensions: decompose the N x N Gram matrix instead
            evals, evecs = np.linalg.eigh(xc @ xc.T)
            order = np.argsort(evals)[::-1][:2]
            vals = evals[order]
            vecs = xc.T @ evecs[:, order]
            vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=0), 1e-300)
    scale = max(float(np.max(np.abs(evals))), 1e-300)
    for j in range(min(2, vecs.shape[1])):
        if vals[j] <= 1e-12 * scale or vals[j] <= 0:
            continue  # no variance along this direction: leave a zero column
        v = vecs[:, j]
        if v[np.argmax(np.abs(v))] < 0:
            v = -v
        basis[:, j] = v
    return basis


def pca_2d(x: Any, *, basis: Any = None) -> np.ndarray:
    """Project ``x`` ``(N, D)`` onto two principal axes: ``(N, 2)`` float32, centred on the origin.

    ``layout = (x - mean(x)) @ basis``. Without ``basis`` the axes are :func:`pca_basis` of ``x``
    itself (column 0 the direction of largest variance, deterministic signs). Pass ``basis`` (a
    ``(D, 2)`` matrix, e.g. ``pca_basis`` of another epoch's features or of a reference set) to
    project onto fixed axes instead; it is used as given.
    """
    a = _check_points(x)
    if basis is None:
        basis = pca_basis(a)
    else:
        basis = np.asarray(_as_array(basis, "basis"), dtype=np.float64)
        if basis.shape != (a.shape[1], 2):
            raise ValueError(f"basis: expected shape ({a.shape[1]}, 2) for {a.shape[1]}-D features, got {basis.shape}")
    return ((a - a.mean(axis=0)) @ basis).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Procrustes alignment
# --------------------------------------------------------------------------------------------


def align_layout(layout: Any, reference: Any) -> np.ndarray:
    """Map ``layout`` onto ``reference`` by a similarity transform: ``(N, 2)`` float32.

    Both are ``(N, 2)`` positions of the same ``N`` points (``(N, k)`` works for any ``k``).
    Finds the orthogonal ``R`` (rotation or reflection), scale ``s > 0`` and translation ``t``
    minimising ``||s (layout) R + t - reference||_F`` (orthogonal Procrustes): with centred
    ``A = layout - mean``, ``B = reference - mean`` and ``A^T B = U S V^T``,
    ``R = U V^T``, ``s = trace(S) / ||A||_F^2``, ``t = mean(reference) - s mean(layout) R``.
    A layout with no spread (all points equal) is placed at the reference's mean.
    """
    a = _check_points(layout, "layout")
    b = _check_points(reference, "reference")
    if a.shape != b.shape:
        raise ValueError(
            f"layout has shape {a.shape} but reference has shape {b.shape}; "
            "both must place the same points in the same number of dimensions"
        )
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    ac, bc = a - mu_a, b - mu_b
    norm_a = float((ac**2).sum())
    if norm_a <= 1e-300:
        return np.broadcast_to(mu_b, a.shape).astype(np.float32)
    u, s, vt = np.linalg.svd(ac.T @ bc)
    rot = u @ vt
    scale = float(s.sum()) / norm_a
    return (scale * ac @ rot + mu_b).astype(np.float32)


# --------------------------------------------------------------------------------------------
# UMAP
# --------------------------------------------------------------------------------------------


def _scaled_init(init: Any, n: int) -> np.ndarray | None:
    """A previous layout as a UMAP starting point: centred, largest |coordinate| 10, float32.

    ``None`` (use UMAP's own initialisation) if the layout has no spread at all.
    """
    a = _check_points(init, "init")
    if a.shape != (n, 2):
        raise ValueError(f"init: expected shape ({n}, 2) (one 2-D position per point), got {a.shape}")
    a = a - a.mean(axis=0)
    extent = float(np.abs(a).max())
    if extent <= 1e-12:
        return None
    a = a * (10.0 / extent)  # UMAP's own initialisations span [-10, 10]
    return np.ascontiguousarray(a, dtype=np.float32)


def umap_2d(
    x: Any,
    *,
    seed: int | None = 0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    init: Any = None,
    n_epochs: int | None = None,
) -> np.ndarray:
    """UMAP of ``x`` ``(N, D)`` to ``(N, 2)`` float32, with the cosine metric.

    ``seed`` fixes the layout (and makes UMAP single-threaded, which also keeps it from competing
    with training for the cores); ``None`` lets it use every core, non-deterministically.
    ``n_neighbors`` is clipped to ``N - 1`` (UMAP needs fewer neighbours than points).
    ``init``: an ``(N, 2)`` layout to start from, e.g. the previous epoch's, so points move
    little between epochs (it is centred and rescaled to UMAP's usual [-10, 10] range); default
    UMAP's spectral initialisation. ``n_epochs``: optimisation epochs (UMAP's default, ``None``,
    is 500 below 10000 points); starting from ``init``, fewer epochs keep more of the previous
    layout (BENCHMARKS.md gives the drift with and without ``init``). Raises ``ValueError`` for fewer than
    :data:`UMAP_MIN_POINTS` points (use :func:`pca_2d`). ``umap`` is imported here, not at module
    import: the first import and the first fit's numba compilation cost seconds.
    """
    a = _check_points(x)
    n = a.shape[0]
    if n < UMAP_MIN_POINTS:
        raise ValueError(f"UMAP needs at least {UMAP_MIN_POINTS} points, got {n}; use the PCA layout (pca_2d) instead")
    if n_neighbors < 2:
        raise ValueError(f"n_neighbors must be >= 2, got {n_neighbors}")
    if min_dist < 0:
        raise ValueError(f"min_dist must be >= 0, got {min_dist}")
    if n_epochs is not None and n_epochs < 1:
        raise ValueError(f"n_epochs must be >= 1 or None, got {n_epochs}")
    start = _scaled_init(init, n) if init is not None else None

    k = min(int(n_neighbors), n - 1)  # UMAP's neighbour lists include the point itself
    knn = _cosine_knn(a, k) if n <= _EXACT_KNN_MAX else None

    import umap  # lazy: seconds to import, and only the background worker should pay for it

    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=k,
        min_dist=float(min_dist),
        metric="cosine",
        init="spectral" if start is None else start,
        n_epochs=n_epochs,
        random_state=seed,
        n_jobs=1 if seed is not None else -1,
        precomputed_knn=(None, None, None) if knn is None else (knn[0], knn[1], None),
    )
    with warnings.catch_warnings():
        # Expected: "n_jobs value 1 overridden to 1 by setting random_state" (we set both) and
        # "knn_search_index is not an NNDescent object" (we never transform new points).
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]", category=UserWarning)
        layout = reducer.fit_transform(a.astype(np.float32))
    return np.asarray(layout, dtype=np.float32)


def _cosine_knn(a: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine neighbours, ``k < N``: ``(N, k)`` int64 indices and float32 ``1 - cos``, ascending.

    Each point is its own first neighbour at distance 0, as UMAP expects. Computed in blocks of
    1024 rows (memory ``O(1024 N)``), one BLAS thread.
    """
    n = a.shape[0]
    u = (a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    indices = np.empty((n, k), dtype=np.int64)
    dists = np.empty((n, k), dtype=np.float32)
    with limited_threads():
        for start in range(0, n, 1024):
            stop = min(start + 1024, n)
            d = 1.0 - u[start:stop] @ u.T
            np.clip(d, 0.0, 2.0, out=d)
            rows = np.arange(stop - start)
            d[rows, rows + start] = -1.0  # the point itself sorts first, even among duplicates
            part = np.argpartition(d, k - 1, axis=1)[:, :k]  # k < n
            pd = np.take_along_axis(d, part, axis=1)
            order = np.argsort(pd, axis=1, kind="stable")
            indices[start:stop] = np.take_along_axis(part, order, axis=1)
            dists[start:stop] = np.maximum(np.take_along_axis(pd, order, axis=1), 0.0)
    return indices, dists


# --------------------------------------------------------------------------------------------
# Background service
# --------------------------------------------------------------------------------------------


def layout_key(run_dir_or_id: str | os.PathLike, epoch: int, method: str) -> str:
    """Cache key of one layout: ``"<run>|epoch=<epoch>|<method>"``, e.g. ``"models/r1|epoch=5|umap"``.

    ``run_dir_or_id`` is a run folder or id (paths are normalised, so ``models/r1/`` and
    ``models/r1`` give the same key); ``method`` is lower-cased.
    """
    run = os.path.normpath(os.fspath(run_dir_or_id))
    return f"{run}|epoch={int(epoch)}|{method.strip().lower()}"


@dataclass
class _Entry:
    state: str  # pending / ready / failed
    future: Future | None = None
    layout: np.ndarray | None = None
    error: str | None = None
    seconds: float | None = None


Compute = Callable[..., np.ndarray]


class ProjectionService:
    """Computes UMAP layouts on one background thread and caches them by key.

    Made for the Streamlit page, which reruns its script often and must never block on UMAP::

        svc = ProjectionService()      # one per process (st.cache_resource)
        svc.warm_up()                  # compile numba in the background at start-up
        key = layout_key(run_dir, epoch, "umap")
        layout = svc.request(key, features, reference=previous_layout)
        if layout is None:             # pending or failed: show pca_2d(features) meanwhile
            ...                        # svc.status(key), svc.error(key) say which

    * :meth:`request` returns the cached layout, or schedules the fit and returns ``None``. A key
      that is already pending or failed is not scheduled again (:meth:`forget` allows a retry).
      The key must identify the data (see :func:`layout_key`); ``x`` is copied at request time.
    * ``reference`` (an ``(N, 2)`` layout of the same points, e.g. the previous epoch's) seeds
      UMAP's initialisation and the result is :func:`align_layout`-ed onto it.
    * Every failure (too few points, NaN features, a UMAP error) is stored and reported by
      :meth:`status`/:meth:`error`; nothing raises into the caller's thread.
    * At most ``max_cached`` finished layouts are kept, least recently used dropped first.
    * All methods are thread-safe (one lock around the bookkeeping; the fits run unlocked).

    ``compute(x, init=None) -> (N, 2)`` replaces UMAP (tests use a fast stand-in); by default it
    is :func:`umap_2d` with ``seed``, ``n_neighbors`` and ``min_dist``.
    """

    def __init__(
        self,
        *,
        max_cached: int = 64,
        seed: int | None = 0,
        n_neighbors: int = 15,
        min_dist: float = 0.1,
        compute: Compute | None = None,
    ) -> None:
        if max_cached < 1:
            raise ValueError(f"max_cached must be >= 1, got {max_cached}")
        self.max_cached = int(max_cached)
        self._compute: Compute = compute or functools.partial(
            umap_2d, seed=seed, n_neighbors=n_neighbors, min_dist=min_dist
        )
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hcl-projection")
        self._warm: Future | None = None
        self._warm_error: str | None = None
        self._closed = False

    # ---- asking for layouts ---------------------------------------------------------------

    def request(self, key: str, x: Any, *, reference: Any = None) -> np.ndarray | None:
        """The layout for ``key`` if it is ready (read-only ``(N, 2)`` float32), else ``None``.

        An absent key is scheduled with a copy of ``x`` (and of ``reference``); a pending or
        failed key is left as it is. Never raises for bad data: the failure is stored.
        """
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                if entry.state == "ready":
                    self._entries.move_to_end(key)
                    return entry.layout
                return None
            if self._closed:
                self._store_failure(key, "the projection service has been shut down")
                return None
            try:
                data = np.array(_as_array(x, "x"), dtype=np.float32, copy=True)
                ref = None if reference is None else np.array(_as_array(reference, "reference"), dtype=np.float64)
            except Exception as exc:  # e.g. ragged lists: store, do not raise into the UI
                self._store_failure(key, f"cannot read the features: {exc}")
                return None
            entry = _Entry(state="pending")
            self._entries[key] = entry
            entry.future = self._executor.submit(self._run, key, entry, data, ref)
            return None

    def request_chain(self, items: Sequence[tuple[str, Any]]) -> int:
        """Schedule fits one after another, each starting from the previous key's layout; returns how
        many were scheduled.

        ``items`` are ``(key, x)`` in chain order. The result is what :meth:`request` gives when
        each key is asked for once the previous one is ready (the Embeddings page's chain), but
        nobody has to poll: the app lays out a finished run before a user opens it. Known keys are
        left as they are and serve as the next fit's reference; a link that fails fails the rest
        of the chain, naming it.
        """
        scheduled, previous = 0, None
        for key, x in items:
            with self._lock:
                if self._closed:
                    break
                if key not in self._entries:
                    try:
                        data = np.array(_as_array(x, "x"), dtype=np.float32, copy=True)
                    except Exception as exc:
                        self._store_failure(key, f"cannot read the features: {exc}")
                        break
                    entry = self._entries[key] = _Entry(state="pending")
                    entry.future = self._executor.submit(self._run_linked, key, entry, data, previous)
                    scheduled += 1
            previous = key
        return scheduled

    def status(self, key: str) -> str:
        """``'ready'``, ``'pending'`` (scheduled or running), ``'failed'`` or ``'absent'``."""
        with self._lock:
            entry = self._entries.get(key)
            return "absent" if entry is None else entry.state

    def error(self, key: str) -> str | None:
        """Why ``key`` failed (a sentence for the UI), or ``None`` if it did not fail."""
        with self._lock:
            entry = self._entries.get(key)
            return entry.error if entry is not None else None

    def seconds(self, key: str) -> float | None:
        """How long the fit of ``key`` took, once it is ready or failed."""
        with self._lock:
            entry = self._entries.get(key)
            return entry.seconds if entry is not None else None

    def wait(self, key: str, timeout: float | None = None) -> np.ndarray | None:
        """Block until ``key`` is finished or ``timeout`` seconds pass; the layout, or ``None``.

        For tests and the CLI, never for the UI thread. ``None`` if the key failed, is absent,
        or is still pending after ``timeout``.
        """
        with self._lock:
            entry = self._entries.get(key)
            future = entry.future if entry is not None else None
        if future is not None:
            wait_futures([future], timeout=timeout)
        with self._lock:
            entry = self._entries.get(key)
            return entry.layout if entry is not None and entry.state == "ready" else None

    def forget(self, key: str) -> None:
        """Drop a finished layout or failure so the next :meth:`request` computes it again."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.state != "pending":
                del self._entries[key]

    def clear(self) -> None:
        """Drop every finished layout and failure (pending fits still complete and are cached)."""
        with self._lock:
            for key in [k for k, e in self._entries.items() if e.state != "pending"]:
                del self._entries[key]

    def keys(self) -> list[str]:
        """Keys currently known (any state), least recently used first."""
        with self._lock:
            return list(self._entries)

    # ---- warm-up and shutdown ---------------------------------------------------------------

    def warm_up(self, n_points: int = 300, dim: int = 32) -> Future:
        """Fit once on a small random ``(n_points, dim)`` array in the background (idempotent).

        The first UMAP fit in a process compiles numba kernels (about 10 s); doing it at start-up
        means the first real request takes only the few seconds of the fit itself. Inputs above
        4096 rows use another neighbour search that still compiles on first use. Returns the
        future; :attr:`warmed` says when it is done. A failing warm-up is recorded in
        :attr:`warm_error`, never raised.
        """
        with self._lock:
            if self._warm is None and not self._closed:
                self._warm = self._executor.submit(self._run_warm_up, int(n_points), int(dim))
            if self._warm is None:  # closed before any warm-up: hand back a finished future
                done: Future = Future()
                done.set_result(None)
                return done
            return self._warm

    @property
    def warmed(self) -> bool:
        """True once :meth:`warm_up` has finished without error."""
        with self._lock:
            return self._warm is not None and self._warm.done() and self._warm_error is None

    @property
    def warm_error(self) -> str | None:
        with self._lock:
            return self._warm_error

    def shutdown(self, wait: bool = False) -> None:
        """Stop the worker: queued fits are cancelled and marked failed; a running fit finishes."""
        with self._lock:
            self._closed = True
        self._executor.shutdown(wait=wait, cancel_futures=True)
        with self._lock:
            for entry in self._entries.values():
                if entry.state == "pending" and entry.future is not None and entry.future.cancelled():
                    entry.state, entry.error = "failed", "cancelled: the projection service was shut down"

    # ---- worker side ----------------------------------------------------------------------------

    def _run_linked(self, key: str, entry: _Entry, x: np.ndarray, previous: str | None) -> None:
        """A link of :meth:`request_chain`: the fit of ``previous`` ran before it on this one thread."""
        reference = None
        if previous is not None:
            with self._lock:
                before = self._entries.get(previous)
                if before is None or before.state != "ready":
                    why = before.error if before is not None and before.error else "it is no longer cached"
                    message = f"UMAP failed: the layout it starts from failed ({why})"
                    self._finish(key, entry, "failed", None, message, 0.0)
                    return
                reference = np.asarray(before.layout, dtype=np.float64)
        self._run(key, entry, x, reference)

    def _run(self, key: str, entry: _Entry, x: np.ndarray, reference: np.ndarray | None) -> None:
        t0 = time.perf_counter()
        try:
            if reference is not None and reference.shape != (x.shape[0], 2):
                raise ValueError(
                    f"reference layout has shape {reference.shape} but the features have {x.shape[0]} rows; "
                    f"it must be an ({x.shape[0]}, 2) layout of the same points"
                )
            layout = np.asarray(self._compute(x, init=reference), dtype=np.float32)
            if layout.shape != (x.shape[0], 2):
                raise ValueError(f"the projection returned shape {layout.shape}, expected ({x.shape[0]}, 2)")
            if reference is not None:
                layout = align_layout(layout, reference)
            layout.setflags(write=False)  # shared with every caller through the cache
        except Exception as exc:
            message = str(exc) or type(exc).__name__
            with self._lock:
                self._finish(key, entry, "failed", None, f"UMAP failed: {message}", time.perf_counter() - t0)
            return
        with self._lock:
            self._finish(key, entry, "ready", layout, None, time.perf_counter() - t0)

    def _finish(self, key: str, entry: _Entry, state: str, layout: Any, error: Any, seconds: float) -> None:
        """Record a finished fit (lock held). Ignored if the entry was replaced meanwhile."""
        entry.state, entry.layout, entry.error, entry.seconds = state, layout, error, seconds
        if self._entries.get(key) is entry:
            self._entries.move_to_end(key)
            self._evict()

    def _store_failure(self, key: str, message: str) -> None:
        """Record a failure found before scheduling (lock held)."""
        self._entries[key] = _Entry(state="failed", error=message, seconds=0.0)
        self._evict()

    def _evict(self) -> None:
        """Drop least recently used finished entries beyond ``max_cached`` (lock held)."""
        finished = [k for k, e in self._entries.items() if e.state != "pending"]
        for key in finished[: max(0, len(finished) - self.max_cached)]:
            del self._entries[key]

    def _run_warm_up(self, n_points: int, dim: int) -> None:
        try:
            rng = np.random.default_rng(0)
            self._compute(rng.normal(size=(n_points, dim)).astype(np.float32), init=None)
        except Exception as exc:
            with self._lock:
                self._warm_error = f"UMAP warm-up failed: {exc}"

"""Checks of hcl_core.projection: PCA, Procrustes alignment, the exact cosine kNN, the background service.

Everything except the tests marked ``slow`` runs without importing umap: the service is driven
by a fast stand-in ``compute`` whose timing the tests control with events.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from hcl_core.projection import (
    UMAP_MIN_POINTS,
    ProjectionService,
    _cosine_knn,
    align_layout,
    layout_key,
    pca_2d,
    pca_basis,
    umap_2d,
)

WAIT = 30.0  # seconds; the stand-in computations finish in milliseconds


def _anisotropic(n: int = 200, dim: int = 6, seed: int = 0) -> np.ndarray:
    """Gaussian data with clearly different variances along random orthogonal axes."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    scales = np.linspace(5.0, 0.5, dim)
    return (rng.normal(size=(n, dim)) * scales) @ q.T + rng.normal(size=dim) * 3


def _similarity(layout: np.ndarray, angle: float, scale: float, shift, reflect: bool = False) -> np.ndarray:
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    if reflect:
        rot = rot @ np.diag([1.0, -1.0])
    return scale * layout @ rot + np.asarray(shift)


# ----------------------------------------------------------------------------------------------
# PCA
# ----------------------------------------------------------------------------------------------


def test_pca_axes_are_orthogonal_and_ordered_by_variance():
    x = _anisotropic()
    layout = pca_2d(x)
    assert layout.shape == (200, 2) and layout.dtype == np.float32
    assert np.allclose(layout.mean(axis=0), 0.0, atol=1e-4)
    cov = np.cov(layout.T.astype(np.float64))
    assert abs(cov[0, 1]) < 1e-4 * cov[0, 0]  # uncorrelated scores
    assert cov[0, 0] > cov[1, 1]
    basis = pca_basis(x)
    assert np.allclose(basis.T @ basis, np.eye(2), atol=1e-10)  # orthonormal axes
    # Same variances as the top two eigenvalues of the sample covariance.
    top = np.sort(np.linalg.eigvalsh(np.cov(x.T)))[::-1][:2]
    assert np.allclose(np.diag(cov), top, rtol=1e-4)


def test_pca_signs_are_deterministic():
    x = _anisotropic(seed=1)
    a, b = pca_2d(x), pca_2d(x.copy())
    assert np.array_equal(a, b)
    basis = pca_basis(x)
    for j in range(2):  # convention: the largest-magnitude loading of each axis is positive
        assert basis[np.argmax(np.abs(basis[:, j])), j] > 0
    perm = np.random.default_rng(0).permutation(len(x))
    assert np.allclose(pca_2d(x[perm]), a[perm], atol=1e-4)  # row order does not flip axes


def test_pca_with_more_dimensions_than_points_and_fixed_basis():
    x = _anisotropic(n=12, dim=40, seed=2)
    layout = pca_2d(x)
    assert layout.shape == (12, 2)
    top = np.sort(np.linalg.eigvalsh(np.cov(x.T)))[::-1][:2]
    assert np.allclose(np.var(layout.astype(np.float64), axis=0, ddof=1), top, rtol=1e-4)
    basis = pca_basis(x)
    assert np.allclose(pca_2d(x, basis=basis), layout, atol=1e-5)
    with pytest.raises(ValueError, match="basis"):
        pca_2d(x, basis=basis[:5])


def test_pca_degenerate_inputs():
    assert np.array_equal(pca_2d(np.ones((1, 5))), np.zeros((1, 2), np.float32))
    assert np.array_equal(pca_2d(np.ones((7, 3))), np.zeros((7, 2), np.float32))  # all points equal
    line = np.arange(6.0)[:, None]
    out = pca_2d(line)  # one dimension: the second axis is zero
    assert np.allclose(np.abs(out[:, 0]), np.abs(line[:, 0] - 2.5)) and np.all(out[:, 1] == 0)
    with pytest.raises(ValueError, match="diverged"):
        pca_2d(np.array([[np.nan, 1.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="2-D"):
        pca_2d(np.ones(4))


# ----------------------------------------------------------------------------------------------
# Procrustes
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reflect", [False, True])
def test_procrustes_recovers_a_similarity_transform(reflect):
    ref = np.random.default_rng(3).normal(size=(50, 2))
    moved = _similarity(ref, angle=2.1, scale=0.37, shift=[5.0, -2.0], reflect=reflect)
    aligned = align_layout(moved, ref)
    assert aligned.dtype == np.float32
    assert np.abs(aligned - ref).max() < 1e-5


def test_procrustes_reduces_error_with_noise_and_handles_degenerate_layouts():
    rng = np.random.default_rng(4)
    ref = rng.normal(size=(80, 2))
    noisy = _similarity(ref, 0.7, 3.0, [1.0, 1.0]) + 0.05 * rng.normal(size=ref.shape)
    aligned = align_layout(noisy, ref)
    assert np.sqrt(((aligned - ref) ** 2).sum(1).mean()) < 0.05
    point = align_layout(np.ones((80, 2)), ref)  # no spread: placed at the reference's mean
    assert np.allclose(point, ref.mean(axis=0), atol=1e-6)
    with pytest.raises(ValueError, match="same points"):
        align_layout(ref[:10], ref)


# ----------------------------------------------------------------------------------------------
# Exact cosine neighbours handed to UMAP
# ----------------------------------------------------------------------------------------------


def test_cosine_knn_matches_brute_force():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(37, 4))
    x[5] = 3 * x[4]  # a duplicate direction: the point itself must still come first
    idx, dist = _cosine_knn(x, 6)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    full = 1 - u @ u.T
    for i in range(len(x)):
        assert idx[i, 0] == i and dist[i, 0] == 0.0
        expected = sorted((full[i, j], j) for j in range(len(x)) if j != i)[:5]
        assert sorted(idx[i, 1:].tolist()) == sorted(j for _, j in expected)
        assert np.allclose(dist[i, 1:], [max(d, 0.0) for d, _ in expected], atol=1e-6)
    assert np.all(np.diff(dist, axis=1) >= 0)


# ----------------------------------------------------------------------------------------------
# ProjectionService with a fast stand-in computation
# ----------------------------------------------------------------------------------------------


class _Gated:
    """A stand-in for UMAP: PCA, but only once ``gate`` is set; counts its calls."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()
        self.calls = 0
        self.inits: list = []
        self._lock = threading.Lock()

    def __call__(self, x, *, init=None):
        with self._lock:
            self.calls += 1
        self.inits.append(init)
        self.started.set()
        assert self.gate.wait(WAIT)
        return pca_2d(x)


@pytest.fixture
def service():
    made: list[ProjectionService] = []

    def make(**kwargs) -> ProjectionService:
        svc = ProjectionService(**kwargs)
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.shutdown(wait=True)


def test_request_returns_none_then_the_layout(service):
    fake = _Gated()
    svc = service(compute=fake)
    x = _anisotropic(30, 4)
    key = layout_key("models/run-a", 3, "umap")
    assert svc.status(key) == "absent"
    assert svc.request(key, x) is None
    assert svc.status(key) == "pending"
    fake.gate.set()
    layout = svc.wait(key, WAIT)
    assert layout is not None and layout.shape == (30, 2)
    assert svc.status(key) == "ready" and svc.error(key) is None
    assert np.array_equal(svc.request(key, x), layout)
    assert svc.seconds(key) is not None
    with pytest.raises(ValueError):  # cached layouts are shared: read-only
        layout[0, 0] = 1.0


def test_duplicate_requests_are_scheduled_once(service):
    fake = _Gated()
    svc = service(compute=fake)
    x = _anisotropic(20, 3)
    for _ in range(5):
        assert svc.request("k", x) is None
    assert fake.started.wait(WAIT)
    assert svc.request("k", x) is None  # running: still not scheduled again
    fake.gate.set()
    assert svc.wait("k", WAIT) is not None
    svc.request("k", x)
    assert fake.calls == 1


def test_input_is_copied_at_request_time(service):
    fake = _Gated()
    svc = service(compute=fake)
    x = _anisotropic(20, 3)
    expected = pca_2d(x)
    svc.request("k", x)
    x[:] = 0.0  # the caller reuses its buffer
    fake.gate.set()
    assert np.allclose(svc.wait("k", WAIT), expected, atol=1e-6)


def test_failures_are_stored_not_raised(service):
    svc = service()  # the real umap_2d: too few points fail before umap is even imported
    few = np.random.default_rng(0).normal(size=(3, 8))
    assert svc.request("tiny", few) is None
    assert svc.wait("tiny", WAIT) is None
    assert svc.status("tiny") == "failed"
    message = svc.error("tiny")
    assert f"at least {UMAP_MIN_POINTS} points" in message and "pca_2d" in message
    assert svc.request("tiny", few) is None  # not rescheduled, not raised
    svc.forget("tiny")
    assert svc.status("tiny") == "absent"

    bad = np.ones((10, 3))
    bad[2, 2] = np.inf
    svc.request("nan", bad)
    svc.wait("nan", WAIT)
    assert "diverged" in svc.error("nan")

    svc.request("ragged", [[1.0, 2.0], [3.0]])
    assert svc.status("ragged") == "failed" and "cannot read" in svc.error("ragged")


def test_compute_exceptions_are_stored(service):
    def boom(x, *, init=None):
        raise RuntimeError("numba exploded")

    svc = service(compute=boom)
    svc.request("k", np.ones((10, 2)))
    svc.wait("k", WAIT)
    assert svc.status("k") == "failed" and "numba exploded" in svc.error("k")


def test_reference_seeds_init_and_result_is_aligned(service):
    x = _anisotropic(40, 5, seed=6)
    reference = _similarity(pca_2d(x).astype(np.float64), 1.2, 4.0, [3.0, -1.0])
    seen = []

    def compute(data, *, init=None):
        seen.append(init)
        return pca_2d(data)

    svc = service(compute=compute)
    svc.request("k", x, reference=reference)
    layout = svc.wait("k", WAIT)
    assert np.allclose(seen[0], reference)
    assert np.abs(layout - reference).max() < 1e-4  # Procrustes mapped it onto the reference

    svc.request("wrong", x, reference=reference[:10])
    svc.wait("wrong", WAIT)
    assert svc.status("wrong") == "failed" and "reference" in svc.error("wrong")


def test_cache_is_bounded_lru(service):
    svc = service(compute=lambda x, init=None: pca_2d(x), max_cached=2)
    x = _anisotropic(10, 3)
    for key in ("a", "b"):
        svc.request(key, x)
        svc.wait(key, WAIT)
    svc.request("a", x)  # touch "a": "b" is now least recently used
    svc.request("c", x)
    svc.wait("c", WAIT)
    assert svc.status("b") == "absent"
    assert svc.status("a") == "ready" and svc.status("c") == "ready"
    svc.clear()
    assert svc.keys() == []


def test_warm_up_runs_once_in_background(service):
    fake = _Gated()
    svc = service(compute=fake)
    first = svc.warm_up()
    assert svc.warm_up() is first
    assert not svc.warmed
    fake.gate.set()
    first.result(WAIT)
    assert svc.warmed and svc.warm_error is None and fake.calls == 1


def test_shutdown_cancels_queued_work(service):
    fake = _Gated()
    svc = service(compute=fake)
    x = _anisotropic(10, 3)
    svc.request("running", x)
    assert fake.started.wait(WAIT)
    svc.request("queued", x)
    svc.shutdown(wait=False)
    fake.gate.set()
    assert svc.wait("running", WAIT) is not None
    assert svc.status("queued") == "failed" and "shut down" in svc.error("queued")
    svc.request("late", x)
    assert svc.status("late") == "failed"


def test_layout_key():
    assert layout_key("models/r1/", 5, "UMAP") == layout_key("models/r1", 5, "umap")
    assert layout_key("r1", 5, "umap") != layout_key("r1", 6, "umap")
    assert layout_key("r1", 5, "umap") != layout_key("r1", 5, "pca")


def test_umap_2d_validates_before_importing_umap():
    with pytest.raises(ValueError, match="at least"):
        umap_2d(np.ones((2, 3)))
    with pytest.raises(ValueError, match="init"):
        umap_2d(np.random.default_rng(0).normal(size=(10, 3)), init=np.zeros((9, 2)))
    with pytest.raises(ValueError, match="n_neighbors"):
        umap_2d(np.ones((10, 3)), n_neighbors=1)


# ----------------------------------------------------------------------------------------------
# Real UMAP (numba compiles on the first fit: tens of seconds)
# ----------------------------------------------------------------------------------------------


def _blobs(n_per: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 16)) * 4
    y = np.repeat(np.arange(3), n_per)
    return centres[y] + rng.normal(size=(len(y), 16)), y


def _nearest_same_class(layout: np.ndarray, y: np.ndarray) -> float:
    d = ((layout[:, None, :] - layout[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return float(np.mean(y[d.argmin(axis=1)] == y))


@pytest.mark.slow
def test_umap_2d_separates_clusters_deterministically():
    x, y = _blobs()
    a = umap_2d(x, seed=0)
    assert a.shape == (len(x), 2) and a.dtype == np.float32 and np.isfinite(a).all()
    assert _nearest_same_class(a, y) > 0.95
    assert np.array_equal(a, umap_2d(x, seed=0))
    b = umap_2d(x + 0.01, seed=0, init=a, n_epochs=50)
    assert b.shape == a.shape and _nearest_same_class(b, y) > 0.95
    small = umap_2d(x[:8], n_neighbors=15)  # n_neighbors clipped to N - 1
    assert small.shape == (8, 2) and np.isfinite(small).all()


@pytest.mark.slow
def test_service_with_real_umap():
    svc = ProjectionService()
    try:
        svc.warm_up(n_points=60, dim=8)
        x, y = _blobs(seed=1)
        key = layout_key("run", 0, "umap")
        assert svc.request(key, x) is None
        layout = svc.wait(key, 300)
        assert layout is not None, svc.error(key)
        assert svc.warmed
        assert _nearest_same_class(layout, y) > 0.95
        nxt = layout_key("run", 1, "umap")
        svc.request(nxt, x + 0.01, reference=layout)
        follow = svc.wait(nxt, 300)
        assert follow is not None, svc.error(nxt)
        assert np.sqrt(((follow - layout) ** 2).sum(1).mean()) < np.sqrt(((layout - layout.mean(0)) ** 2).sum(1).mean())
    finally:
        svc.shutdown(wait=True)


def test_a_chain_gives_the_layouts_of_requests_made_one_after_another(service):
    xs = [_anisotropic(30, 4, seed=s) for s in range(3)]
    keys = [layout_key("models/r", e, "umap-chain") for e in (9, 5, 0)]

    def compute(data, *, init=None):  # depends on the reference, as UMAP's init does
        return pca_2d(data) + (0.0 if init is None else 0.5 * init)

    polled = service(compute=compute)
    reference = None
    for key, x in zip(keys, xs, strict=True):
        polled.request(key, x, reference=reference)
        reference = polled.wait(key, WAIT)
    chained = service(compute=compute)
    assert chained.request_chain(list(zip(keys, xs, strict=True))) == 3
    assert chained.request_chain(list(zip(keys, xs, strict=True))) == 0  # known keys are not fitted again
    for key in keys:
        assert np.allclose(chained.wait(key, WAIT), polled.wait(key, WAIT), atol=1e-5)


def test_a_failed_link_fails_the_rest_of_its_chain_and_names_why(service):
    svc = service(compute=lambda data, *, init=None: pca_2d(data))
    good = _anisotropic(30, 4)
    broken = np.ones((30, 4))
    broken[0, 0] = np.nan
    svc.request_chain([("a", good), ("b", broken), ("c", good)])
    assert svc.wait("a", WAIT) is not None and svc.wait("c", WAIT) is None
    assert "diverged" in svc.error("b")
    assert svc.status("c") == "failed" and "the layout it starts from failed" in svc.error("c")
    assert "diverged" in svc.error("c")

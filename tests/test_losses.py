"""Independent checks of hcl_core.losses against docs/LOSSES.md.

Every reference below is a naive per-anchor Python loop in float64 with plain exp/log, written
literally from the specification:

* views z = cat(z1, z2), L2-normalised; s_ij = z_i . z_j / tau; partner p(i) = i +- N;
* A(i) = all j != i; P(i) = same-label views (without labels only p(i));
  Neg(i) = other-label views (without labels all but i and p(i)); n_i = |Neg(i)|; M = 2N - 2;
* R_i(beta) = n_i * sum_k w_ik e^{s_ik},  w_ik = softmax_k(beta s_ik) over Neg(i);
* anchors with an empty Neg(i) are skipped; no valid anchor -> ValueError.

The loops use 0-d torch tensors (torch.exp / torch.log) so that the same code also gives reference
gradients through autograd.
"""

from __future__ import annotations

import math

import pytest
import torch

from hcl_core.losses import (
    LOSSES,
    dcl,
    effective_negatives,
    h_ucl,
    hard_supcon,
    hcl,
    info_nce,
    negative_weights,
    pulled_fraction,
    same_class_mass,
    supcon,
)

F64 = torch.float64
TOL = {"rtol": 1e-5, "atol": 1e-5}


# ----------------------------------------------------------------------------------------------
# Naive references
# ----------------------------------------------------------------------------------------------


def _partner(i: int, n: int) -> int:
    return i + n if i < n else i - n


def _sims(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> list[list[torch.Tensor]]:
    """s[i][j] = z_i . z_j / tau on the L2-normalised 2N views, as a nested list of 0-d tensors."""
    z = torch.cat([z1, z2]).to(F64)
    views = []
    for i in range(z.shape[0]):
        zi = z[i]
        views.append(zi / torch.sqrt((zi * zi).sum()))
    return [[(views[i] * views[j]).sum() / tau for j in range(len(views))] for i in range(len(views))]


def _view_labels(labels, n: int):
    if labels is None:
        return None
    lab = [int(x) for x in torch.as_tensor(labels).tolist()]
    assert len(lab) == n
    return lab + lab


def _index_sets(i: int, n: int, vl):
    """A(i), P(i), Neg(i) for anchor i of 2n views."""
    two_n = 2 * n
    p = _partner(i, n)
    a = [j for j in range(two_n) if j != i]
    if vl is None:
        pos = [p]
        neg = [j for j in range(two_n) if j not in (i, p)]
    else:
        pos = [j for j in range(two_n) if j != i and vl[j] == vl[i]]
        neg = [j for j in range(two_n) if vl[j] != vl[i]]
    assert p in pos
    return a, pos, neg


def _naive_r(s_i, neg, beta: float, detach: bool = False):
    """R_i = n_i * sum_k w_ik e^{s_ik}, w_ik = e^{beta s_ik} / sum_l e^{beta s_il} (plain exp)."""
    den = sum(torch.exp(beta * s_i[k]) for k in neg)
    total = 0.0
    for k in neg:
        w = torch.exp(beta * s_i[k]) / den
        if detach:
            w = w.detach()
        total = total + w * torch.exp(s_i[k])
    return len(neg) * total


def naive_info_nce(z1, z2, *, tau, sims=None):
    n = z1.shape[0]
    s = _sims(z1, z2, tau) if sims is None else sims
    losses = []
    for i in range(2 * n):
        a, pos, neg = _index_sets(i, n, None)
        if not neg:
            continue
        p = _partner(i, n)
        losses.append(torch.log(sum(torch.exp(s[i][j]) for j in a)) - s[i][p])
    if not losses:
        raise ValueError("no valid anchor")
    return sum(losses) / len(losses)


def naive_hcl(z1, z2, *, tau, beta, tau_plus, detach_weights=False, clamp=True, return_bound=False, sims=None):
    n = z1.shape[0]
    m = 2 * n - 2
    s = _sims(z1, z2, tau) if sims is None else sims
    losses, bound = [], []
    floor = torch.tensor(m * math.exp(-1.0 / tau), dtype=F64)
    for i in range(2 * n):
        _, _, neg = _index_sets(i, n, None)
        if not neg:
            continue
        p = _partner(i, n)
        r = _naive_r(s[i], neg, beta, detach_weights)
        if clamp:
            raw = (r - tau_plus * m * torch.exp(s[i][p])) / (1.0 - tau_plus)
            bound.append(bool(raw < floor))
            ng = torch.maximum(raw, floor)
        else:
            ng = r
        losses.append(-s[i][p] + torch.log(torch.exp(s[i][p]) + ng))
    if not losses:
        raise ValueError("no valid anchor")
    out = sum(losses) / len(losses)
    return (out, bound) if return_bound else out


def naive_dcl(z1, z2, *, tau, tau_plus, sims=None):
    return naive_hcl(z1, z2, tau=tau, beta=0.0, tau_plus=tau_plus, sims=sims)


def naive_h_ucl(z1, z2, *, tau, beta, detach_weights=False, sims=None):
    return naive_hcl(z1, z2, tau=tau, beta=beta, tau_plus=0.0, detach_weights=detach_weights, clamp=False,
                     sims=sims)


def naive_supcon(z1, z2, labels=None, *, tau, sims=None):
    n = z1.shape[0]
    vl = _view_labels(labels, n)
    s = _sims(z1, z2, tau) if sims is None else sims
    losses = []
    for i in range(2 * n):
        a, pos, neg = _index_sets(i, n, vl)
        if not neg:
            continue
        lse = torch.log(sum(torch.exp(s[i][j]) for j in a))
        losses.append(lse - sum(s[i][j] for j in pos) / len(pos))
    if not losses:
        raise ValueError("no valid anchor")
    return sum(losses) / len(losses)


def naive_hard_supcon(z1, z2, labels=None, *, tau, beta, detach_weights=False, sims=None):
    """l_ip = softplus(log M + log R_i - log n_i - s_ip), averaged over all positive pairs."""
    n = z1.shape[0]
    m = 2 * n - 2
    vl = _view_labels(labels, n)
    s = _sims(z1, z2, tau) if sims is None else sims
    pair_losses = []
    for i in range(2 * n):
        _, pos, neg = _index_sets(i, n, vl)
        if not neg:
            continue
        r = _naive_r(s[i], neg, beta, detach_weights)
        for p in pos:
            x = math.log(m) + torch.log(r) - math.log(len(neg)) - s[i][p]
            pair_losses.append(torch.log(1.0 + torch.exp(x)))
    if not pair_losses:
        raise ValueError("no valid anchor")
    return sum(pair_losses) / len(pair_losses)


def naive_hard_supcon_partner(z1, z2, labels=None, *, tau, beta, detach_weights=False, sims=None):
    """Jiang et al.'s check (main/main_loss.py): l_i = log(1 + M T_i / e^{s_i,p(i)}), mean over anchors.

    T_i = sum_k e^{beta s_ik} e^{s_ik} / sum_k e^{beta s_ik} over the other-class views k.
    """
    n = z1.shape[0]
    m = 2 * n - 2
    vl = _view_labels(labels, n)
    s = _sims(z1, z2, tau) if sims is None else sims
    losses = []
    for i in range(2 * n):
        _, _, neg = _index_sets(i, n, vl)
        if not neg:
            continue
        t = _naive_r(s[i], neg, beta, detach_weights) / len(neg)
        losses.append(torch.log(1.0 + m * t / torch.exp(s[i][_partner(i, n)])))
    if not losses:
        raise ValueError("no valid anchor")
    return sum(losses) / len(losses)


def naive_scl_double_loop(z1, z2, labels=None, *, tau):
    """Jiang et al.'s SCL (hard_supcon at beta = 0): same-class views never in the denominator.

    for i: for p in P(i): -log( e^{s_ip} / (e^{s_ip} + (M / n_i) sum_{k in Neg(i)} e^{s_ik}) )
    """
    n = z1.shape[0]
    m = 2 * n - 2
    vl = _view_labels(labels, n)
    s = _sims(z1, z2, tau)
    total, count = 0.0, 0
    for i in range(2 * n):
        _, pos, neg = _index_sets(i, n, vl)
        if not neg:
            continue
        neg_sum = sum(torch.exp(s[i][k]) for k in neg)
        for p in pos:
            num = torch.exp(s[i][p])
            total = total - torch.log(num / (num + (m / len(neg)) * neg_sum))
            count += 1
    return total / count


def naive_shares(z1, z2, labels=None, *, loss, tau, beta=0.0):
    """(weights, same_class, candidates) as nested Python lists, from the per-loss share rules."""
    n = z1.shape[0]
    two_n = 2 * n
    vl = _view_labels(labels, n)
    s = _sims(z1, z2, tau)
    weights = [[0.0] * two_n for _ in range(two_n)]
    same = [[False] * two_n for _ in range(two_n)]
    cand = [[False] * two_n for _ in range(two_n)]
    for i in range(two_n):
        p = _partner(i, n)
        cands = [j for j in range(two_n) if j not in (i, p)]
        for j in cands:
            cand[i][j] = True
            same[i][j] = vl is not None and vl[j] == vl[i]
        if loss in ("info_nce", "supcon"):
            scale, allowed = 1.0, cands
        elif loss in ("hcl", "dcl", "h_ucl"):
            scale, allowed = 1.0 + beta, cands
        elif loss == "hard_supcon":
            scale = 1.0 + beta
            allowed = cands if vl is None else [j for j in cands if vl[j] != vl[i]]
        else:
            raise AssertionError(loss)
        den = sum(math.exp(scale * float(s[i][j])) for j in allowed)
        for j in allowed:
            weights[i][j] = math.exp(scale * float(s[i][j])) / den
    return weights, same, cand


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------


def _pair(n=8, d=6, seed=0, dtype=F64, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=g, dtype=F64)
    z2 = z1 + 0.7 * torch.randn(n, d, generator=g, dtype=F64)
    z1, z2 = z1.to(dtype), z2.to(dtype)
    if requires_grad:
        z1.requires_grad_(True)
        z2.requires_grad_(True)
    return z1, z2


# unequal class sizes, class 3 appears once
LABELS_8 = torch.tensor([0, 1, 0, 2, 1, 0, 3, 2])
# two classes, one of them a singleton
LABELS_6_SINGLETON = torch.tensor([0, 0, 1, 0, 0, 0])
# all classes distinct: with labels == without labels
LABELS_6_DISTINCT = torch.tensor([5, 4, 3, 2, 1, 0])


def _call(name, z1, z2, labels=None, *, tau=0.5, beta=1.0, tau_plus=0.1, detach_weights=False):
    """Call an implementation with the keyword arguments its signature takes."""
    if name == "info_nce":
        return info_nce(z1, z2, tau=tau)
    if name == "dcl":
        return dcl(z1, z2, tau=tau, tau_plus=tau_plus)
    if name == "hcl":
        return hcl(z1, z2, tau=tau, beta=beta, tau_plus=tau_plus, detach_weights=detach_weights)
    if name == "h_ucl":
        return h_ucl(z1, z2, tau=tau, beta=beta)
    if name == "supcon":
        return supcon(z1, z2, labels, tau=tau)
    if name == "hard_supcon":
        return hard_supcon(z1, z2, labels, tau=tau, beta=beta, detach_weights=detach_weights)
    raise AssertionError(name)


def _call_naive(name, z1, z2, labels=None, *, tau=0.5, beta=1.0, tau_plus=0.1, detach_weights=False):
    if name == "info_nce":
        return naive_info_nce(z1, z2, tau=tau)
    if name == "dcl":
        return naive_dcl(z1, z2, tau=tau, tau_plus=tau_plus)
    if name == "hcl":
        return naive_hcl(z1, z2, tau=tau, beta=beta, tau_plus=tau_plus, detach_weights=detach_weights)
    if name == "h_ucl":
        return naive_h_ucl(z1, z2, tau=tau, beta=beta)
    if name == "supcon":
        return naive_supcon(z1, z2, labels, tau=tau)
    if name == "hard_supcon":
        return naive_hard_supcon(z1, z2, labels, tau=tau, beta=beta, detach_weights=detach_weights)
    raise AssertionError(name)


ALL = ["info_nce", "dcl", "hcl", "h_ucl", "supcon", "hard_supcon"]
TAKES_LABELS = ["supcon", "hard_supcon"]
TAKES_BETA = ["hcl", "h_ucl", "hard_supcon"]
TAKES_TAU_PLUS = ["hcl", "dcl"]
TAKES_DETACH = ["hcl", "hard_supcon"]


def _close(actual, expected, **tol):
    tol = tol or TOL
    # python floats as float64: torch.as_tensor would round them to float32
    expected = expected.detach() if isinstance(expected, torch.Tensor) else torch.tensor(expected, dtype=F64)
    torch.testing.assert_close(actual.detach().to(F64), expected.to(F64), **tol)


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------


def test_losses_registry_has_exactly_the_six_losses():
    assert set(LOSSES) == set(ALL)
    assert len(LOSSES) == 6
    expected = {
        "info_nce": info_nce,
        "dcl": dcl,
        "hcl": hcl,
        "h_ucl": h_ucl,
        "supcon": supcon,
        "hard_supcon": hard_supcon,
    }
    for k, fn in expected.items():
        assert LOSSES[k] is fn


# ----------------------------------------------------------------------------------------------
# Every loss against its naive loop
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tau", [0.05, 0.2, 0.5, 1.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_info_nce_matches_naive(tau, seed):
    z1, z2 = _pair(n=7, d=5, seed=seed)
    out = info_nce(z1, z2, tau=tau)
    assert out.dim() == 0
    _close(out, naive_info_nce(z1, z2, tau=tau))


@pytest.mark.parametrize("tau", [0.1, 0.5])
@pytest.mark.parametrize("tau_plus", [0.0, 0.05, 0.1, 0.3])
@pytest.mark.parametrize("seed", [0, 3])
def test_dcl_matches_naive(tau, tau_plus, seed):
    z1, z2 = _pair(n=8, d=6, seed=seed)
    out = dcl(z1, z2, tau=tau, tau_plus=tau_plus)
    assert out.dim() == 0
    _close(out, naive_dcl(z1, z2, tau=tau, tau_plus=tau_plus))


@pytest.mark.parametrize("tau", [0.1, 0.5])
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 3.0, 10.0])
@pytest.mark.parametrize("tau_plus", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("detach", [False, True])
def test_hcl_matches_naive(tau, beta, tau_plus, detach):
    z1, z2 = _pair(n=6, d=8, seed=2)
    out = hcl(z1, z2, tau=tau, beta=beta, tau_plus=tau_plus, detach_weights=detach)
    assert out.dim() == 0
    _close(out, naive_hcl(z1, z2, tau=tau, beta=beta, tau_plus=tau_plus))


@pytest.mark.parametrize("tau", [0.05, 0.2, 0.5])
@pytest.mark.parametrize("beta", [0.0, 0.5, 2.0, 8.0])
def test_h_ucl_matches_naive(tau, beta):
    z1, z2 = _pair(n=9, d=7, seed=4)
    out = h_ucl(z1, z2, tau=tau, beta=beta)
    assert out.dim() == 0
    _close(out, naive_h_ucl(z1, z2, tau=tau, beta=beta))


@pytest.mark.parametrize("tau", [0.1, 0.5])
@pytest.mark.parametrize(
    "n, labels",
    [(8, None), (8, LABELS_8), (6, LABELS_6_SINGLETON), (6, LABELS_6_DISTINCT), (10, torch.arange(10) % 3)],
)
def test_supcon_matches_naive(tau, n, labels):
    z1, z2 = _pair(n=n, d=9, seed=5)
    out = supcon(z1, z2, labels, tau=tau)
    assert out.dim() == 0
    _close(out, naive_supcon(z1, z2, labels, tau=tau))


@pytest.mark.parametrize("tau", [0.1, 0.5])
@pytest.mark.parametrize("beta", [0.0, 0.5, 2.0, 6.0])
@pytest.mark.parametrize(
    "n, labels",
    [(8, None), (8, LABELS_8), (6, LABELS_6_SINGLETON), (6, LABELS_6_DISTINCT), (10, torch.arange(10) % 3)],
)
def test_hard_supcon_matches_naive(tau, beta, n, labels):
    z1, z2 = _pair(n=n, d=9, seed=6)
    out = hard_supcon(z1, z2, labels, tau=tau, beta=beta)
    assert out.dim() == 0
    _close(out, naive_hard_supcon(z1, z2, labels, tau=tau, beta=beta))


def test_hard_supcon_averages_over_positive_pairs_not_anchors():
    """Classes of unequal size: the spec averages over all (i, p) pairs, which differs from a mean
    over anchors of per-anchor means. Guard that the test input actually distinguishes them."""
    z1, z2 = _pair(n=8, d=9, seed=6)
    tau, beta = 0.3, 1.5
    pooled = naive_hard_supcon(z1, z2, LABELS_8, tau=tau, beta=beta)
    # per-anchor mean-of-means, for contrast only
    n, m = 8, 14
    vl = _view_labels(LABELS_8, n)
    s = _sims(z1, z2, tau)
    per_anchor = []
    for i in range(2 * n):
        _, pos, neg = _index_sets(i, n, vl)
        r = _naive_r(s[i], neg, beta)
        ls = [torch.nn.functional.softplus(math.log(m) + torch.log(r) - math.log(len(neg)) - s[i][p]) for p in pos]
        per_anchor.append(sum(ls) / len(ls))
    mean_of_means = sum(per_anchor) / len(per_anchor)
    assert abs(float(pooled) - float(mean_of_means)) > 1e-3
    _close(hard_supcon(z1, z2, LABELS_8, tau=tau, beta=beta), pooled)


def test_labels_with_all_distinct_classes_equal_no_labels():
    z1, z2 = _pair(n=6, d=9, seed=7)
    _close(supcon(z1, z2, LABELS_6_DISTINCT, tau=0.3), supcon(z1, z2, tau=0.3))
    _close(hard_supcon(z1, z2, LABELS_6_DISTINCT, tau=0.3, beta=2.0), hard_supcon(z1, z2, tau=0.3, beta=2.0))


def test_labels_accept_int32_and_int64():
    z1, z2 = _pair(n=8, d=9, seed=8)
    ref = naive_supcon(z1, z2, LABELS_8, tau=0.4)
    _close(supcon(z1, z2, LABELS_8.to(torch.int32), tau=0.4), ref)
    _close(supcon(z1, z2, LABELS_8.to(torch.int64), tau=0.4), ref)


# ----------------------------------------------------------------------------------------------
# Reductions
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tau", [0.07, 0.2, 0.5, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hcl_beta0_taup0_is_info_nce(tau, seed):
    z1, z2 = _pair(n=10, d=12, seed=seed)
    _close(hcl(z1, z2, tau=tau, beta=0.0, tau_plus=0.0), info_nce(z1, z2, tau=tau))
    _close(hcl(z1, z2, tau=tau, beta=0.0, tau_plus=0.0), naive_info_nce(z1, z2, tau=tau))


@pytest.mark.parametrize("tau", [0.1, 0.5])
@pytest.mark.parametrize("tau_plus", [0.0, 0.1, 0.5, 0.9])
def test_hcl_beta0_is_dcl(tau, tau_plus):
    z1, z2 = _pair(n=10, d=12, seed=11)
    _close(hcl(z1, z2, tau=tau, beta=0.0, tau_plus=tau_plus), dcl(z1, z2, tau=tau, tau_plus=tau_plus))


@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0])
def test_supcon_without_labels_is_info_nce(tau):
    z1, z2 = _pair(n=10, d=12, seed=12)
    _close(supcon(z1, z2, tau=tau), info_nce(z1, z2, tau=tau))
    _close(supcon(z1, z2, None, tau=tau), naive_info_nce(z1, z2, tau=tau))


@pytest.mark.parametrize("tau", [0.1, 0.5])
@pytest.mark.parametrize("n, labels", [(8, None), (8, LABELS_8), (6, LABELS_6_SINGLETON), (12, torch.arange(12) % 4)])
def test_hard_supcon_beta0_is_scl_double_loop(tau, n, labels):
    z1, z2 = _pair(n=n, d=10, seed=13)
    _close(hard_supcon(z1, z2, labels, tau=tau, beta=0.0), naive_scl_double_loop(z1, z2, labels, tau=tau))


@pytest.mark.parametrize("tau", [0.1, 0.5])
@pytest.mark.parametrize("beta", [0.0, 0.5, 2.0, 10.0])
def test_hard_supcon_without_labels_is_h_ucl(tau, beta):
    z1, z2 = _pair(n=10, d=12, seed=14)
    _close(hard_supcon(z1, z2, tau=tau, beta=beta), h_ucl(z1, z2, tau=tau, beta=beta))


@pytest.mark.parametrize("beta", [0.0, 1.0, 5.0])
def test_h_ucl_is_hcl_with_taup0_when_clamp_cannot_bind(beta):
    # R_i >= n_i e^{-1/tau} always, so with tau_plus = 0 the clamp never binds
    z1, z2 = _pair(n=10, d=12, seed=15)
    _close(h_ucl(z1, z2, tau=0.3, beta=beta), hcl(z1, z2, tau=0.3, beta=beta, tau_plus=0.0))


def _min_top2_gap(z1, z2, tau, labels=None):
    n = z1.shape[0]
    vl = _view_labels(labels, n)
    s = _sims(z1, z2, tau)
    gaps = []
    for i in range(2 * n):
        _, _, neg = _index_sets(i, n, vl)
        vals = sorted((float(s[i][k]) for k in neg), reverse=True)
        if len(vals) > 1:
            gaps.append(vals[0] - vals[1])
    return min(gaps)


def _limit_loss(name, z1, z2, labels=None, *, tau, tau_plus=0.0):
    """Naive loss with R_i replaced by its beta -> infinity limit n_i * e^{max_k s_ik}."""
    n = z1.shape[0]
    m = 2 * n - 2
    vl = _view_labels(labels, n) if name == "hard_supcon" else None
    s = _sims(z1, z2, tau)
    terms = []
    for i in range(2 * n):
        _, pos, neg = _index_sets(i, n, vl)
        p = _partner(i, n)
        r = len(neg) * math.exp(max(float(s[i][k]) for k in neg))
        sp = float(s[i][p])
        if name == "h_ucl":
            terms.append(-sp + math.log(math.exp(sp) + r))
        elif name == "hcl":
            ng = max((r - tau_plus * m * math.exp(sp)) / (1 - tau_plus), m * math.exp(-1 / tau))
            terms.append(-sp + math.log(math.exp(sp) + ng))
        elif name == "hard_supcon":
            for q in pos:
                x = math.log(m) + math.log(r) - math.log(len(neg)) - float(s[i][q])
                terms.append(math.log1p(math.exp(x)))
    return sum(terms) / len(terms)


@pytest.mark.parametrize(
    "name, labels, tau_plus",
    [
        ("h_ucl", None, 0.0),
        ("hcl", None, 0.0),
        ("hcl", None, 0.2),
        ("hard_supcon", None, 0.0),
        ("hard_supcon", LABELS_8, 0.0),
    ],
)
def test_large_beta_tends_to_log_n_plus_max(name, labels, tau_plus):
    z1, z2 = _pair(n=8, d=6, seed=16)
    tau, beta = 0.1, 1e5
    # precondition of the test itself: the hardest negative is well separated at this beta
    assert beta * _min_top2_gap(z1, z2, tau, labels if name == "hard_supcon" else None) > 40
    out = _call(name, z1, z2, labels, tau=tau, beta=beta, tau_plus=tau_plus)
    assert torch.isfinite(out)
    _close(out, _limit_loss(name, z1, z2, labels, tau=tau, tau_plus=tau_plus))


def test_large_beta_limit_is_approached_monotonically_for_h_ucl():
    z1, z2 = _pair(n=8, d=6, seed=16)
    limit = _limit_loss("h_ucl", z1, z2, tau=0.2)
    gaps = [abs(float(h_ucl(z1, z2, tau=0.2, beta=b)) - limit) for b in (0.0, 1.0, 5.0, 20.0, 100.0)]
    assert all(a >= b - 1e-12 for a, b in zip(gaps, gaps[1:], strict=False))
    assert gaps[-1] < gaps[0] / 10


# ----------------------------------------------------------------------------------------------
# The HCL clamp
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tau_plus", [0.5, 0.9, 0.99])
@pytest.mark.parametrize("beta", [0.0, 1.0])
@pytest.mark.parametrize("tau", [0.2, 0.5])
def test_hcl_clamp_binds_and_matches_naive_max(tau_plus, beta, tau):
    g = torch.Generator().manual_seed(17)
    z1 = torch.randn(8, 6, generator=g, dtype=F64)
    z2 = z1.clone()
    # half the pairs almost identical (clamp binds), half far apart (clamp free)
    z2[:4] += 0.02 * torch.randn(4, 6, generator=g, dtype=F64)
    z2[4:] = torch.randn(4, 6, generator=g, dtype=F64)
    ref, bound = naive_hcl(z1, z2, tau=tau, beta=beta, tau_plus=tau_plus, return_bound=True)
    assert any(bound), "test input must make the clamp bind for some anchor"
    _close(hcl(z1, z2, tau=tau, beta=beta, tau_plus=tau_plus), ref)
    if beta == 0.0:
        _close(dcl(z1, z2, tau=tau, tau_plus=tau_plus), ref)


def test_hcl_clamp_binding_everywhere_gives_the_floor_value():
    """Fully bound: Ng_i = M e^{-1/tau} for every anchor, so l_i = log(1 + M e^{-1/tau - s_ip})."""
    g = torch.Generator().manual_seed(18)
    z1 = torch.randn(6, 5, generator=g, dtype=F64)
    z2 = z1 + 1e-3 * torch.randn(6, 5, generator=g, dtype=F64)
    tau, tau_plus = 0.5, 0.99
    ref, bound = naive_hcl(z1, z2, tau=tau, beta=1.0, tau_plus=tau_plus, return_bound=True)
    assert all(bound)
    s = _sims(z1, z2, tau)
    m = 10
    expected = sum(math.log1p(m * math.exp(-1 / tau - float(s[i][_partner(i, 6)]))) for i in range(12)) / 12
    _close(ref, expected)
    _close(hcl(z1, z2, tau=tau, beta=1.0, tau_plus=tau_plus), expected)


# ----------------------------------------------------------------------------------------------
# Gradients
# ----------------------------------------------------------------------------------------------

GRAD_CASES = [
    ("info_nce", None, {}),
    ("dcl", None, {"tau_plus": 0.1}),
    ("hcl", None, {"beta": 1.0, "tau_plus": 0.1}),
    ("hcl", None, {"beta": 1.0, "tau_plus": 0.1, "detach_weights": True}),
    ("hcl", None, {"beta": 0.0, "tau_plus": 0.0}),
    ("h_ucl", None, {"beta": 2.0}),
    ("supcon", None, {}),
    ("supcon", "labels", {}),
    ("hard_supcon", None, {"beta": 1.0}),
    ("hard_supcon", "labels", {"beta": 1.0}),
    ("hard_supcon", "labels", {"beta": 1.0, "detach_weights": True}),
]
GRAD_LABELS = torch.tensor([0, 1, 0, 2, 1])


@pytest.mark.parametrize("name, lab, kw", [c for c in GRAD_CASES if not c[2].get("detach_weights")])
def test_gradcheck(name, lab, kw):
    # detached weights deliberately give a surrogate gradient, so finite differences cannot match it;
    # those cases are checked against the naive loop's autograd in the next test instead
    z1, z2 = _pair(n=5, d=4, seed=19, requires_grad=True)
    labels = GRAD_LABELS if lab else None
    assert torch.autograd.gradcheck(
        lambda a, b: _call(name, a, b, labels, tau=0.5, **kw), (z1, z2), eps=1e-6, atol=1e-6, rtol=1e-4
    )


@pytest.mark.parametrize("name, lab, kw", GRAD_CASES)
def test_gradient_matches_naive_autograd(name, lab, kw):
    labels = GRAD_LABELS if lab else None
    z1, z2 = _pair(n=5, d=4, seed=20, requires_grad=True)
    g_impl = torch.autograd.grad(_call(name, z1, z2, labels, tau=0.3, **kw), (z1, z2))
    y1, y2 = _pair(n=5, d=4, seed=20, requires_grad=True)
    g_ref = torch.autograd.grad(_call_naive(name, y1, y2, labels, tau=0.3, **kw), (y1, y2))
    for a, b in zip(g_impl, g_ref, strict=True):
        _close(a, b)


def test_gradcheck_with_clamp_bound():
    g = torch.Generator().manual_seed(21)
    z1 = torch.randn(4, 3, generator=g, dtype=F64)
    z2 = z1 + 0.01 * torch.randn(4, 3, generator=g, dtype=F64)
    _, bound = naive_hcl(z1, z2, tau=0.5, beta=1.0, tau_plus=0.95, return_bound=True)
    assert all(bound)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: hcl(a, b, tau=0.5, beta=1.0, tau_plus=0.95), (z1, z2))


@pytest.mark.parametrize("name, labels", [("hcl", None), ("hard_supcon", None), ("hard_supcon", LABELS_8)])
@pytest.mark.parametrize("beta", [0.5, 3.0])
def test_detach_weights_same_value_different_gradient(name, labels, beta):
    z1, z2 = _pair(n=8, d=6, seed=22, requires_grad=True)
    kw = {"tau": 0.3, "beta": beta, "tau_plus": 0.1}
    a = _call(name, z1, z2, labels, detach_weights=False, **kw)
    b = _call(name, z1, z2, labels, detach_weights=True, **kw)
    _close(a, b)
    ga = torch.autograd.grad(a, (z1, z2))
    gb = torch.autograd.grad(b, (z1, z2))
    diff = max(float((x - y).abs().max()) for x, y in zip(ga, gb, strict=True))
    assert diff > 1e-4
    # and each matches its naive counterpart
    y1, y2 = _pair(n=8, d=6, seed=22, requires_grad=True)
    gr = torch.autograd.grad(_call_naive(name, y1, y2, labels, detach_weights=True, **kw), (y1, y2))
    for x, y in zip(gb, gr, strict=True):
        _close(x, y)


@pytest.mark.parametrize("name", TAKES_DETACH)
def test_detach_weights_irrelevant_at_beta0(name):
    z1, z2 = _pair(n=6, d=5, seed=23, requires_grad=True)
    kw = {"tau": 0.3, "beta": 0.0, "tau_plus": 0.1}
    ga = torch.autograd.grad(_call(name, z1, z2, detach_weights=False, **kw), (z1, z2))
    gb = torch.autograd.grad(_call(name, z1, z2, detach_weights=True, **kw), (z1, z2))
    for x, y in zip(ga, gb, strict=True):
        _close(x, y)


def test_detach_weights_default_is_false():
    z1, z2 = _pair(n=6, d=5, seed=24, requires_grad=True)
    for name in TAKES_DETACH:
        kw = {"tau": 0.3, "beta": 2.0}
        if name == "hcl":
            g0 = torch.autograd.grad(hcl(z1, z2, tau_plus=0.1, **kw), (z1, z2))
        else:
            g0 = torch.autograd.grad(hard_supcon(z1, z2, **kw), (z1, z2))
        gf = torch.autograd.grad(_call(name, z1, z2, tau_plus=0.1, detach_weights=False, **kw), (z1, z2))
        for x, y in zip(g0, gf, strict=True):
            _close(x, y)


# ----------------------------------------------------------------------------------------------
# Numerical stability
# ----------------------------------------------------------------------------------------------


def _big_inputs(kind, n=256, d=128, seed=25):
    g = torch.Generator().manual_seed(seed)
    if kind == "random":
        z1 = torch.randn(n, d, generator=g)
        z2 = z1 + 0.5 * torch.randn(n, d, generator=g)
    elif kind == "collapsed":
        base = torch.randn(1, d, generator=g)
        z1 = base + 1e-3 * torch.randn(n, d, generator=g)
        z2 = base + 1e-3 * torch.randn(n, d, generator=g)
    else:
        raise AssertionError(kind)
    labels = torch.randint(0, 10, (n,), generator=g)
    labels[0] = 99  # a class that appears once
    return z1.float(), z2.float(), labels


STABILITY_CASES = [
    ("info_nce", False),
    ("dcl", False),
    ("hcl", False),
    ("h_ucl", False),
    ("supcon", False),
    ("supcon", True),
    ("hard_supcon", False),
    ("hard_supcon", True),
]


@pytest.mark.parametrize("name, use_labels", STABILITY_CASES)
@pytest.mark.parametrize("beta", [0.0, 20.0])
@pytest.mark.parametrize("kind", ["random", "collapsed"])
def test_fp32_stable_at_small_tau_and_large_beta(name, use_labels, beta, kind):
    z1, z2, labels = _big_inputs(kind)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    out = _call(name, z1, z2, labels if use_labels else None, tau=0.05, beta=beta, tau_plus=0.1)
    assert out.dim() == 0
    assert out.dtype == torch.float32
    assert torch.isfinite(out), float(out)
    g1, g2 = torch.autograd.grad(out, (z1, z2))
    assert torch.isfinite(g1).all() and torch.isfinite(g2).all()


@pytest.mark.parametrize("name", ["hcl", "hard_supcon"])
def test_fp32_stable_with_detached_weights(name):
    z1, z2, labels = _big_inputs("random")
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    out = _call(
        name, z1, z2, labels if name == "hard_supcon" else None, tau=0.05, beta=20.0, tau_plus=0.1, detach_weights=True
    )
    assert torch.isfinite(out)
    assert all(torch.isfinite(g).all() for g in torch.autograd.grad(out, (z1, z2)))


def test_fp32_agrees_with_fp64_reference_at_extreme_settings():
    """fp32 in log space must still be accurate where plain exp would overflow fp32 (e^{21*20})."""
    z1, z2 = _pair(n=8, d=6, seed=26)
    for name in TAKES_BETA:
        ref = _call_naive(name, z1, z2, tau=0.05, beta=20.0, tau_plus=0.0)
        out = _call(name, z1.float(), z2.float(), tau=0.05, beta=20.0, tau_plus=0.0)
        assert torch.isfinite(out)
        _close(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name, use_labels", STABILITY_CASES)
def test_half_inputs_give_fp32_result(dtype, name, use_labels):
    g = torch.Generator().manual_seed(27)
    z1 = torch.randn(32, 16, generator=g).to(dtype)
    z2 = (z1.float() + 0.5 * torch.randn(32, 16, generator=g)).to(dtype)
    labels = torch.arange(32) % 5 if use_labels else None
    out = _call(name, z1, z2, labels, tau=0.05, beta=20.0, tau_plus=0.1)
    assert out.dtype == torch.float32
    assert torch.isfinite(out)
    # fp32 accumulation: same as running the fp32 path on the (already rounded) inputs
    ref = _call(name, z1.float(), z2.float(), labels, tau=0.05, beta=20.0, tau_plus=0.1)
    _close(out, ref, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("tau", [0.0, -0.5])
def test_tau_must_be_positive(name, tau):
    z1, z2 = _pair(n=6, d=4)
    with pytest.raises(ValueError, match=r"\btau\b"):
        _call(name, z1, z2, tau=tau)


@pytest.mark.parametrize("name", TAKES_BETA)
@pytest.mark.parametrize("beta", [-0.1, -5.0])
def test_beta_must_be_non_negative(name, beta):
    z1, z2 = _pair(n=6, d=4)
    with pytest.raises(ValueError, match=r"\bbeta\b"):
        _call(name, z1, z2, beta=beta)


@pytest.mark.parametrize("name", TAKES_TAU_PLUS)
@pytest.mark.parametrize("tau_plus", [-0.1, 1.0, 1.5])
def test_tau_plus_must_be_in_unit_interval(name, tau_plus):
    z1, z2 = _pair(n=6, d=4)
    with pytest.raises(ValueError, match=r"tau_plus"):
        _call(name, z1, z2, tau_plus=tau_plus)


@pytest.mark.parametrize("name", TAKES_TAU_PLUS)
def test_tau_plus_zero_is_allowed(name):
    z1, z2 = _pair(n=6, d=4)
    assert torch.isfinite(_call(name, z1, z2, tau_plus=0.0))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("shape2", [(5, 4), (6, 3), (7, 4)])
def test_mismatched_view_shapes(name, shape2):
    z1 = torch.randn(6, 4, dtype=F64)
    z2 = torch.randn(*shape2, dtype=F64)
    with pytest.raises(ValueError, match=r"z1|z2"):
        _call(name, z1, z2)


@pytest.mark.parametrize("name", TAKES_LABELS)
@pytest.mark.parametrize("length", [5, 7, 12])
def test_labels_of_wrong_length(name, length):
    z1, z2 = _pair(n=6, d=4)
    with pytest.raises(ValueError, match=r"labels"):
        _call(name, z1, z2, torch.arange(length) % 2)


@pytest.mark.parametrize("name", TAKES_LABELS)
@pytest.mark.parametrize("n", [1, 2, 6])
def test_single_class_batch_has_no_valid_anchor(name, n):
    # every anchor has an empty Neg(i): all are skipped, none remains -> ValueError
    z1, z2 = _pair(n=n, d=4)
    with pytest.raises(ValueError):
        _call(name, z1, z2, torch.full((n,), 3))


@pytest.mark.parametrize("name", ALL)
def test_one_sample_batch_has_no_negatives(name):
    # N = 1: Neg(i) is empty for both views (without labels it is all but i and p(i)) -> no valid anchor
    z1, z2 = _pair(n=1, d=4)
    with pytest.raises(ValueError):
        _call(name, z1, z2)


# ----------------------------------------------------------------------------------------------
# negative_weights and its diagnostics
# ----------------------------------------------------------------------------------------------

NW_CASES = [
    ("info_nce", None, 0.0),
    ("supcon", None, 0.0),
    ("supcon", LABELS_8, 0.0),
    ("dcl", None, 0.0),
    ("hcl", None, 0.0),
    ("hcl", None, 1.5),
    ("hcl", LABELS_8, 2.0),
    ("h_ucl", None, 3.0),
    ("hard_supcon", None, 2.0),
    ("hard_supcon", LABELS_8, 0.0),
    ("hard_supcon", LABELS_8, 2.0),
]


def _nw(name, z1, z2, labels=None, *, tau=0.3, beta=0.0, tau_plus=0.0):
    return negative_weights(z1, z2, labels, loss=name, tau=tau, beta=beta, tau_plus=tau_plus)


@pytest.mark.parametrize("name, labels, beta", NW_CASES)
def test_negative_weights_match_naive(name, labels, beta):
    z1, z2 = _pair(n=8, d=6, seed=28)
    nw = _nw(name, z1, z2, labels, tau=0.3, beta=beta)
    w_ref, same_ref, cand_ref = naive_shares(z1, z2, labels, loss=name, tau=0.3, beta=beta)
    assert nw.weights.shape == (16, 16)
    assert nw.same_class.shape == (16, 16) and nw.same_class.dtype == torch.bool
    assert nw.candidates.shape == (16, 16) and nw.candidates.dtype == torch.bool
    _close(nw.weights, torch.tensor(w_ref, dtype=F64))
    assert nw.same_class.tolist() == same_ref
    assert nw.candidates.tolist() == cand_ref
    # rows sum to 1, zero on self and partner
    _close(nw.weights.sum(1), torch.ones(16, dtype=F64))
    for i in range(16):
        assert float(nw.weights[i, i]) == 0.0
        assert float(nw.weights[i, _partner(i, 8)]) == 0.0
    assert (nw.weights >= 0).all()
    # diagnostics
    w = torch.tensor(w_ref, dtype=F64)
    mass_ref = (w * torch.tensor(same_ref, dtype=F64)).sum(1)
    eff_ref = w.sum(1) ** 2 / (w**2).sum(1)
    assert same_class_mass(nw).shape == (16,)
    assert effective_negatives(nw).shape == (16,)
    _close(same_class_mass(nw), mass_ref)
    _close(effective_negatives(nw), eff_ref)


def test_candidates_and_same_class_masks_without_labels():
    z1, z2 = _pair(n=5, d=6, seed=29)
    nw = _nw("hcl", z1, z2, beta=1.0)
    expected = torch.ones(10, 10, dtype=torch.bool)
    for i in range(10):
        expected[i, i] = False
        expected[i, _partner(i, 5)] = False
    assert torch.equal(nw.candidates, expected)
    assert not nw.same_class.any()
    assert torch.equal(same_class_mass(nw), torch.zeros(10, dtype=same_class_mass(nw).dtype))


def test_same_class_mask_excludes_self_and_partner_and_is_subset_of_candidates():
    z1, z2 = _pair(n=8, d=6, seed=30)
    nw = _nw("hcl", z1, z2, LABELS_8, beta=1.0)
    assert not (nw.same_class & ~nw.candidates).any()
    vl = _view_labels(LABELS_8, 8)
    for i in range(16):
        for j in range(16):
            expected = j not in (i, _partner(i, 8)) and vl[i] == vl[j]
            assert bool(nw.same_class[i, j]) == expected


@pytest.mark.parametrize("beta", [0.0, 1.0, 5.0])
def test_hard_supcon_puts_no_weight_on_same_class(beta):
    z1, z2 = _pair(n=8, d=6, seed=31)
    nw = _nw("hard_supcon", z1, z2, LABELS_8, beta=beta)
    assert (nw.weights[nw.same_class] == 0).all()
    assert torch.equal(same_class_mass(nw), torch.zeros_like(same_class_mass(nw)))
    _close(nw.weights.sum(1), torch.ones(16, dtype=F64))


@pytest.mark.parametrize("name, beta", [("hcl", 0.0), ("hcl", 2.0), ("info_nce", 0.0), ("supcon", 0.0)])
def test_same_class_mass_positive_when_false_negatives_exist(name, beta):
    z1, z2 = _pair(n=8, d=6, seed=32)
    nw = _nw(name, z1, z2, LABELS_8, beta=beta)
    mass = same_class_mass(nw)
    has_same = nw.same_class.any(1)
    assert has_same.any() and not has_same.all()  # class 3 appears once
    assert (mass[has_same] > 0).all()
    assert (mass[~has_same] == 0).all()


@pytest.mark.parametrize(
    "name, labels", [("hcl", None), ("h_ucl", None), ("hard_supcon", None), ("hard_supcon", LABELS_8)]
)
def test_mass_on_hardest_negatives_grows_and_effective_count_shrinks_with_beta(name, labels):
    z1, z2 = _pair(n=8, d=6, seed=33)
    betas = [0.0, 0.5, 1.0, 2.0, 4.0, 8.0]
    nws = [_nw(name, z1, z2, labels, tau=0.3, beta=b) for b in betas]
    s = torch.tensor([[float(x) for x in row] for row in _sims(z1, z2, 0.3)], dtype=F64)
    allowed = (
        nws[0].candidates & ~nws[0].same_class if (name == "hard_supcon" and labels is not None) else nws[0].candidates
    )
    masked = s.masked_fill(~allowed, -math.inf)
    top3 = masked.topk(3, dim=1).indices
    hard_mass = [nw.weights.to(F64).gather(1, top3).sum(1) for nw in nws]
    eff = [effective_negatives(nw).to(F64) for nw in nws]
    for a, b in zip(hard_mass, hard_mass[1:], strict=False):
        assert (b >= a - 1e-9).all()
    assert (hard_mass[-1] > hard_mass[0] + 1e-3).all()
    for a, b in zip(eff, eff[1:], strict=False):
        assert (b <= a + 1e-9).all()
    assert (eff[-1] < eff[0] - 1e-3).all()


def _orthogonal_views(n, d):
    z1 = torch.eye(d, dtype=F64)[:n]
    return z1, z1.clone()


@pytest.mark.parametrize(
    "name, beta",
    [
        ("info_nce", 0.0),
        ("supcon", 0.0),
        ("dcl", 0.0),
        ("hcl", 0.0),
        ("hcl", 3.0),
        ("h_ucl", 0.0),
        ("h_ucl", 3.0),
        ("hard_supcon", 0.0),
        ("hard_supcon", 3.0),
    ],
)
def test_effective_negatives_equal_candidate_count_for_identical_similarities(name, beta):
    n = 6
    z1, z2 = _orthogonal_views(n, 8)  # every candidate has s = 0
    nw = _nw(name, z1, z2, tau=0.2, beta=beta)
    _close(effective_negatives(nw), torch.full((2 * n,), float(2 * n - 2), dtype=F64))
    _close(nw.weights.to(F64), nw.candidates.to(F64) / (2 * n - 2))


def test_effective_negatives_with_labels_counts_other_class_candidates():
    n = 8
    z1, z2 = _orthogonal_views(n, 8)
    nw = _nw("hard_supcon", z1, z2, LABELS_8, tau=0.2, beta=2.0)
    vl = _view_labels(LABELS_8, n)
    other = torch.tensor([sum(1 for j in range(2 * n) if vl[j] != vl[i]) for i in range(2 * n)], dtype=F64)
    _close(effective_negatives(nw), other)
    hc = _nw("hcl", z1, z2, LABELS_8, tau=0.2, beta=2.0)
    same = torch.tensor(
        [sum(1 for j in range(2 * n) if j not in (i, _partner(i, n)) and vl[j] == vl[i]) for i in range(2 * n)],
        dtype=F64,
    )
    _close(same_class_mass(hc), same / (2 * n - 2))


def test_tau_plus_does_not_change_shares():
    z1, z2 = _pair(n=8, d=6, seed=34)
    a = _nw("hcl", z1, z2, tau=0.3, beta=1.0, tau_plus=0.0)
    b = _nw("hcl", z1, z2, tau=0.3, beta=1.0, tau_plus=0.5)
    _close(a.weights, b.weights)
    c = _nw("dcl", z1, z2, tau=0.3, tau_plus=0.3)
    _close(c.weights, _nw("info_nce", z1, z2, tau=0.3).weights)


def test_hard_supcon_without_labels_shares_equal_h_ucl():
    z1, z2 = _pair(n=8, d=6, seed=35)
    _close(_nw("hard_supcon", z1, z2, beta=2.5).weights, _nw("h_ucl", z1, z2, beta=2.5).weights)
    _close(_nw("hcl", z1, z2, beta=2.5, tau_plus=0.1).weights, _nw("h_ucl", z1, z2, beta=2.5).weights)


def test_negative_weights_argument_errors():
    z1, z2 = _pair(n=6, d=4)
    with pytest.raises(ValueError, match=r"\btau\b"):
        _nw("hcl", z1, z2, tau=0.0, beta=1.0)
    with pytest.raises(ValueError, match=r"\bbeta\b"):
        _nw("hcl", z1, z2, tau=0.5, beta=-1.0)
    with pytest.raises(ValueError, match=r"z1|z2"):
        _nw("hcl", z1, z2[:5], tau=0.5)
    with pytest.raises(ValueError, match=r"labels"):
        _nw("supcon", z1, z2, torch.arange(5), tau=0.5)
    with pytest.raises((ValueError, KeyError)):
        _nw("no_such_loss", z1, z2, tau=0.5)


def test_negative_weights_stable_in_fp32():
    z1, z2, labels = _big_inputs("random", n=128, d=64)
    for name in ALL:
        nw = _nw(name, z1, z2, labels, tau=0.05, beta=20.0 if name in TAKES_BETA else 0.0)
        assert torch.isfinite(nw.weights).all()
        _close(nw.weights.sum(1), torch.ones(256), rtol=1e-4, atol=1e-4)
        assert torch.isfinite(effective_negatives(nw)).all()
        assert torch.isfinite(same_class_mass(nw)).all()


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("tau", [0.02, 0.03, 1.5])
def test_both_shifts_of_the_log_sum_exp_match_the_naive_loop(name, tau):
    """Below tau = 0.025 the row max shifts the exponent, above it the constant 1/tau: both exact."""
    g = torch.Generator().manual_seed(11)
    labels = torch.tensor([0, 1, 2, 0, 1, 3])
    z1 = torch.randn(6, 5, generator=g, dtype=F64)
    z2 = z1 + 1.0 * torch.randn(6, 5, generator=g, dtype=F64)
    kwargs = dict(tau=tau, beta=2.0, tau_plus=0.05)
    use = labels if name in ("supcon", "hard_supcon") else None
    # float64 reference; float32 is what training uses, and the shift must keep it accurate.
    ref = _call_naive(name, z1, z2, use, **kwargs)
    assert float(_call(name, z1, z2, use, **kwargs)) == pytest.approx(float(ref), rel=1e-9)
    out32 = _call(name, z1.float(), z2.float(), use, **kwargs)
    assert float(out32) == pytest.approx(float(ref), rel=2e-5, abs=1e-6 / tau)  # s is of size 1/tau
    assert float(ref) > 1e-3, "a loss this close to 0 would test nothing"


@pytest.mark.parametrize("name", ALL)
def test_antipodal_views_at_the_smallest_tau_stay_finite(name):
    """Every other view opposite the anchor: e^{s - 1/tau} = e^{-2/tau}, the constant shift's worst case."""
    z1 = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], requires_grad=True)
    z2 = torch.tensor([[-1.0, 1e-3], [1.0, 1e-3]], requires_grad=True)
    labels = torch.tensor([0, 1])
    loss = _call(name, z1, z2, labels if name in ("supcon", "hard_supcon") else None, tau=0.05, beta=20.0,
                 tau_plus=0.1)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()


# ----------------------------------------------------------------------------------------------
# H-SCL with the partner as the only positive (the authors' check of their bound)
# ----------------------------------------------------------------------------------------------


def _partner_only(z1, z2, labels=None, **kw):
    return hard_supcon(z1, z2, labels, positives="partner", **kw)


@pytest.mark.parametrize("tau", [0.1, 0.5])
@pytest.mark.parametrize("beta", [0.0, 0.5, 2.0, 6.0])
@pytest.mark.parametrize(
    "n, labels",
    [(8, None), (8, LABELS_8), (6, LABELS_6_SINGLETON), (6, LABELS_6_DISTINCT), (10, torch.arange(10) % 3)],
)
def test_partner_only_hard_supcon_matches_naive(tau, beta, n, labels):
    z1, z2 = _pair(n=n, d=9, seed=40)
    out = _partner_only(z1, z2, labels, tau=tau, beta=beta)
    assert out.dim() == 0
    _close(out, naive_hard_supcon_partner(z1, z2, labels, tau=tau, beta=beta), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("labels", [LABELS_8, torch.arange(8) % 2])
def test_partner_only_hard_supcon_at_beta0_is_the_partner_only_scl(labels):
    """-log(e^{s_ip} / (e^{s_ip} + (M / n_i) sum_{k: y_k != y_i} e^{s_ik})), the partner as the only positive."""
    z1, z2 = _pair(n=8, d=7, seed=41)
    n, m, tau = 8, 14, 0.4
    vl = _view_labels(labels, n)
    s = _sims(z1, z2, tau)
    total = 0.0
    for i in range(2 * n):
        neg = [k for k in range(2 * n) if vl[k] != vl[i]]
        num = math.exp(float(s[i][_partner(i, n)]))
        total -= math.log(num / (num + m / len(neg) * sum(math.exp(float(s[i][k])) for k in neg)))
    _close(_partner_only(z1, z2, labels, tau=tau, beta=0.0), total / (2 * n), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("beta", [0.0, 1.0, 6.0])
def test_partner_only_without_labels_is_h_ucl(beta):
    z1, z2 = _pair(n=10, d=12, seed=42)
    _close(_partner_only(z1, z2, tau=0.3, beta=beta), h_ucl(z1, z2, tau=0.3, beta=beta), rtol=1e-12, atol=1e-12)


def test_partner_only_differs_from_all_positives_where_classes_repeat():
    z1, z2 = _pair(n=10, d=6, seed=43)
    labels = torch.arange(10) % 3
    a = float(hard_supcon(z1, z2, labels, tau=0.5, beta=1.0))
    b = float(_partner_only(z1, z2, labels, tau=0.5, beta=1.0))
    assert abs(a - b) > 1e-2
    # with every class a singleton there is no other positive: the two agree
    _close(_partner_only(z1, z2, torch.arange(10), tau=0.5, beta=1.0),
           hard_supcon(z1, z2, torch.arange(10), tau=0.5, beta=1.0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("labels", [None, GRAD_LABELS])
def test_partner_only_gradient_matches_naive_autograd(detach, labels):
    z1, z2 = _pair(n=5, d=4, seed=44, requires_grad=True)
    g_impl = torch.autograd.grad(_partner_only(z1, z2, labels, tau=0.3, beta=1.5, detach_weights=detach), (z1, z2))
    y1, y2 = _pair(n=5, d=4, seed=44, requires_grad=True)
    ref = naive_hard_supcon_partner(y1, y2, labels, tau=0.3, beta=1.5, detach_weights=detach)
    for a, b in zip(g_impl, torch.autograd.grad(ref, (y1, y2)), strict=True):
        _close(a, b, rtol=1e-10, atol=1e-12)
    if not detach:
        assert torch.autograd.gradcheck(lambda a, b: _partner_only(a, b, labels, tau=0.5, beta=1.0), (z1, z2),
                                        eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("positives", ["both", "", None, "Partner"])
def test_positives_must_be_all_or_partner(positives):
    z1, z2 = _pair(n=6, d=4)
    with pytest.raises(ValueError, match="positives must be 'all'"):
        hard_supcon(z1, z2, LABELS_6_SINGLETON, tau=0.5, beta=1.0, positives=positives)


# ----------------------------------------------------------------------------------------------
# Numerics: the softplus form and the row-chunked path
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["info_nce", "dcl", "hcl", "h_ucl", "hard_supcon"])
def test_tiny_losses_keep_their_relative_precision_in_float32(name):
    """Views far apart and partners almost identical: each l_i is about 1e-9. Written as
    LSE - s_p, float32 would round it to 0 or to a multiple of 1e-6 (s is about 20); as
    softplus(log N_g - s_p) it keeps float32's relative precision."""
    g = torch.Generator().manual_seed(45)
    z1 = torch.linalg.qr(torch.randn(16, 16, generator=g, dtype=F64))[0][:8]  # orthonormal rows
    z2 = z1 + 1e-5 * torch.randn(8, 16, generator=g, dtype=F64)
    kwargs = dict(tau=0.05, beta=1.0, tau_plus=0.0)
    ref = float(_call_naive(name, z1, z2, **kwargs))
    assert 1e-12 < ref < 1e-6
    out = float(_call(name, z1.float(), z2.float(), **kwargs))
    assert out == pytest.approx(ref, rel=1e-4)


CHUNK_CASES = [
    ("info_nce", None, {}),
    ("dcl", None, {"tau_plus": 0.1}),
    ("hcl", None, {"beta": 2.0, "tau_plus": 0.1}),
    ("hcl", None, {"beta": 2.0, "tau_plus": 0.1, "detach_weights": True}),
    ("h_ucl", None, {"beta": 3.0}),
    ("supcon", None, {}),
    ("supcon", "labels", {}),
    ("hard_supcon", "labels", {"beta": 1.0}),
    ("hard_supcon", "labels", {"beta": 1.0, "detach_weights": True}),
    ("hard_supcon", "labels", {"beta": 1.0, "positives": "partner"}),
]


def _call_chunked(name, z1, z2, labels, chunk_rows, **kw):
    fn = LOSSES[name]
    if name in TAKES_LABELS:
        return fn(z1, z2, labels, tau=0.3, chunk_rows=chunk_rows, **kw)
    return fn(z1, z2, tau=0.3, chunk_rows=chunk_rows, **kw)


@pytest.mark.parametrize("name, lab, kw", CHUNK_CASES)
@pytest.mark.parametrize("chunk_rows", [1, 3, 7, 40])
def test_chunked_rows_give_the_same_values_and_gradients(name, lab, kw, chunk_rows):
    labels = torch.arange(12) % 4 if lab else None
    z1, z2 = _pair(n=12, d=5, seed=46, requires_grad=True)
    whole = _call_chunked(name, z1, z2, labels, 24, **kw)
    g_whole = torch.autograd.grad(whole, (z1, z2))
    part = _call_chunked(name, z1, z2, labels, chunk_rows, **kw)
    g_part = torch.autograd.grad(part, (z1, z2))
    _close(part, whole, rtol=1e-13, atol=1e-13)
    for a, b in zip(g_part, g_whole, strict=True):
        _close(a, b, rtol=1e-12, atol=1e-14)


def test_chunked_hcl_with_the_clamp_binding_on_some_anchors():
    g = torch.Generator().manual_seed(47)
    z1 = torch.randn(8, 6, generator=g, dtype=F64)
    z2 = z1.clone()
    z2[:4] += 0.02 * torch.randn(4, 6, generator=g, dtype=F64)
    z2[4:] = torch.randn(4, 6, generator=g, dtype=F64)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    _, bound = naive_hcl(z1, z2, tau=0.2, beta=1.0, tau_plus=0.9, return_bound=True)
    assert any(bound) and not all(bound)
    values = [hcl(z1, z2, tau=0.2, beta=1.0, tau_plus=0.9, chunk_rows=c) for c in (None, 3)]
    grads = [torch.autograd.grad(v, (z1, z2)) for v in values]
    _close(values[1], values[0], rtol=1e-13, atol=1e-13)
    _close(grads[1][0], grads[0][0], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("chunk_rows", [0, -3, 2.5, True, "8"])
def test_chunk_rows_must_be_a_positive_whole_number(chunk_rows):
    z1, z2 = _pair(n=6, d=4)
    with pytest.raises(ValueError, match="chunk_rows"):
        info_nce(z1, z2, tau=0.5, chunk_rows=chunk_rows)


def test_float32_chunked_and_whole_agree_on_a_large_batch():
    z1, z2, labels = _big_inputs("random", n=300, d=32)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    for name in ("hcl", "hard_supcon", "supcon"):
        a = _call(name, z1, z2, labels if name in TAKES_LABELS else None, tau=0.1, beta=2.0, tau_plus=0.1)
        loss_b = LOSSES[name]
        kw = {"tau": 0.1, "chunk_rows": 64}
        kw.update({"beta": 2.0} if name in TAKES_BETA else {})
        kw.update({"tau_plus": 0.1} if name in TAKES_TAU_PLUS else {})
        b = loss_b(z1, z2, labels, **kw) if name in TAKES_LABELS else loss_b(z1, z2, **kw)
        _close(a, b, rtol=1e-6, atol=1e-6)
        ga, gb = torch.autograd.grad(a, z1), torch.autograd.grad(b, z1)
        _close(ga[0], gb[0], rtol=1e-4, atol=1e-8)


# ----------------------------------------------------------------------------------------------
# negative_weights: the importance weight and the gradient against naive references
# ----------------------------------------------------------------------------------------------


def naive_importance(z1, z2, labels=None, *, loss, tau, beta=0.0):
    """omega_ik = n_i e^{beta s_ik} / sum_l e^{beta s_il} over the loss's negatives (1 without a tilt)."""
    n = z1.shape[0]
    vl = _view_labels(labels, n)
    s = _sims(z1, z2, tau)
    tilt = beta if loss in TAKES_BETA else 0.0
    out = [[0.0] * (2 * n) for _ in range(2 * n)]
    for i in range(2 * n):
        p = _partner(i, n)
        elig = [k for k in range(2 * n) if k not in (i, p)]
        if loss == "hard_supcon" and vl is not None:
            elig = [k for k in elig if vl[k] != vl[i]]
        den = sum(math.exp(tilt * float(s[i][k])) for k in elig)
        for k in elig:
            out[i][k] = len(elig) * math.exp(tilt * float(s[i][k])) / den
    return torch.tensor(out, dtype=F64)


def naive_gradient(name, z1, z2, labels=None, *, tau, candidates_only=True, **kw):
    """dL/dS of the naive batch loss, with S a leaf matrix whose row i only anchor i reads."""
    n = z1.shape[0]
    s = torch.stack([torch.stack(row) for row in _sims(z1, z2, tau)]).detach().requires_grad_(True)
    sims = [[s[i, j] for j in range(2 * n)] for i in range(2 * n)]
    fn = {"info_nce": naive_info_nce, "dcl": naive_dcl, "hcl": naive_hcl, "h_ucl": naive_h_ucl,
          "supcon": naive_supcon, "hard_supcon": naive_hard_supcon}[name]
    if name in TAKES_LABELS:
        kw["labels"] = labels
    (g,) = torch.autograd.grad(fn(z1, z2, tau=tau, sims=sims, **kw), s)
    if candidates_only:
        for i in range(2 * n):
            g[i, i] = 0.0
            g[i, _partner(i, n)] = 0.0
    return g


NW_GRAD_CASES = [
    ("info_nce", None, {}),
    ("dcl", None, {"tau_plus": 0.1}),
    ("hcl", None, {"beta": 1.0, "tau_plus": 0.1}),
    ("hcl", None, {"beta": 1.0, "tau_plus": 0.1, "detach_weights": True}),
    ("hcl", None, {"beta": 6.0, "tau_plus": 0.0}),
    ("h_ucl", None, {"beta": 2.0}),
    ("supcon", None, {}),
    ("supcon", "labels", {}),
    ("hard_supcon", None, {"beta": 1.0}),
    ("hard_supcon", "labels", {"beta": 1.0}),
    ("hard_supcon", "labels", {"beta": 1.0, "detach_weights": True}),
    ("hard_supcon", "labels", {"beta": 0.0}),
]


@pytest.mark.parametrize("name, lab, kw", NW_GRAD_CASES)
def test_gradient_view_matches_naive_autograd_of_the_batch_loss(name, lab, kw):
    labels = LABELS_8 if lab else None
    z1, z2 = _pair(n=8, d=6, seed=48)
    nw = negative_weights(z1, z2, labels, loss=name, tau=0.3, beta=kw.get("beta", 0.0),
                          tau_plus=kw.get("tau_plus", 0.0), detach_weights=kw.get("detach_weights", False))
    naive_kw = {k: v for k, v in kw.items() if not (k == "detach_weights" and name not in TAKES_DETACH)}
    if name == "h_ucl":
        naive_kw.pop("detach_weights", None)
    ref = naive_gradient(name, z1, z2, labels, tau=0.3, **naive_kw)
    _close(nw.gradient, ref, rtol=1e-10, atol=1e-14)
    assert (nw.gradient[~nw.candidates] == 0).all()


def test_gradient_view_where_the_hcl_clamp_binds_is_zero_on_those_anchors():
    g = torch.Generator().manual_seed(49)
    z1 = torch.randn(8, 6, generator=g, dtype=F64)
    z2 = z1.clone()
    z2[:4] += 0.02 * torch.randn(4, 6, generator=g, dtype=F64)
    z2[4:] = torch.randn(4, 6, generator=g, dtype=F64)
    _, bound = naive_hcl(z1, z2, tau=0.2, beta=1.0, tau_plus=0.9, return_bound=True)
    nw = negative_weights(z1, z2, loss="hcl", tau=0.2, beta=1.0, tau_plus=0.9)
    _close(nw.gradient, naive_gradient("hcl", z1, z2, tau=0.2, beta=1.0, tau_plus=0.9), rtol=1e-10, atol=1e-14)
    rows_zero = (nw.gradient == 0).all(dim=1).tolist()
    assert rows_zero == bound and any(bound)


@pytest.mark.parametrize("name, labels, beta", NW_CASES)
def test_importance_matches_naive_and_averages_to_one(name, labels, beta):
    z1, z2 = _pair(n=8, d=6, seed=28)
    nw = _nw(name, z1, z2, labels, tau=0.3, beta=beta)
    ref = naive_importance(z1, z2, labels, loss=name, tau=0.3, beta=beta)
    _close(nw.importance, ref, rtol=1e-12, atol=1e-12)
    assert torch.equal(nw.eligible, ref > 0)
    _close(nw.importance.sum(1) / nw.eligible.sum(1), torch.ones(16, dtype=F64), rtol=1e-12, atol=1e-12)
    if beta == 0 or name not in TAKES_BETA:
        assert torch.equal(nw.importance, nw.eligible.to(nw.importance.dtype))


@pytest.mark.parametrize("beta", [0.5, 1.0, 6.0])
def test_undetached_gradient_is_proportional_to_the_share_minus_the_importance(beta):
    """dL/ds_ik = c_i ((1+beta) share_ik - beta omega_ik / n_i) on the negatives (H-UCL: no clamp, no prior)."""
    z1, z2 = _pair(n=8, d=6, seed=50)
    nw = _nw("h_ucl", z1, z2, tau=0.3, beta=beta)
    n = nw.eligible.sum(1, keepdim=True).to(F64)
    formula = ((1 + beta) * nw.weights - beta * nw.importance / n).masked_fill(~nw.eligible, 0.0)
    ratio = nw.gradient[nw.eligible].view(16, -1) / formula[nw.eligible].view(16, -1)
    _close(ratio, ratio[:, :1].expand_as(ratio), rtol=1e-9, atol=0.0)
    assert (ratio > 0).all()


def test_pulled_fraction_grows_with_beta_and_vanishes_when_detached():
    z1, z2 = _pair(n=8, d=6, seed=51)
    fractions = [pulled_fraction(_nw("h_ucl", z1, z2, tau=0.3, beta=b)) for b in (0.0, 0.5, 1.0, 6.0)]
    assert fractions[0] == 0.0 and all(a <= b for a, b in zip(fractions, fractions[1:], strict=False))
    assert fractions[-1] > 0.5
    detached = negative_weights(z1, z2, loss="hcl", tau=0.3, beta=6.0, detach_weights=True)
    assert pulled_fraction(detached) == 0.0  # constant weights: every negative is pushed
    # by hand: the share of eligible pairs with a negative gradient
    nw = _nw("hcl", z1, z2, tau=0.3, beta=1.0)
    assert pulled_fraction(nw) == pytest.approx(float((nw.gradient[nw.candidates] < 0).double().mean()))


def test_supervised_losses_pull_their_same_class_candidates():
    z1, z2 = _pair(n=8, d=6, seed=52)
    hscl = _nw("hard_supcon", z1, z2, LABELS_8, tau=0.3, beta=1.0)
    assert (hscl.gradient[hscl.same_class] < 0).all()  # they are positives
    assert pulled_fraction(hscl, same_class=True) == 1.0
    assert math.isnan(pulled_fraction(_nw("hcl", z1, z2, tau=0.3, beta=1.0), same_class=True))  # none marked


@pytest.mark.parametrize("name, lab, kw", CHUNK_CASES)
def test_the_chunked_path_never_forms_a_block_taller_than_chunk_rows(name, lab, kw, monkeypatch):
    """Every similarity block, forward and backward, has at most chunk_rows rows: memory is bounded by
    chunk_rows x 2N whatever N (and without chunk_rows, by AUTO_BLOCK_ENTRIES)."""
    import hcl_core.loss_rows as rows_mod

    shapes = []
    real = rows_mod._similarity

    def spy(z, lay, a, b, kept=None):
        out = real(z, lay, a, b, kept)
        shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(rows_mod, "_similarity", spy)
    labels = torch.arange(20) % 4 if lab else None
    z1, z2 = _pair(n=20, d=5, seed=53, requires_grad=True)
    torch.autograd.grad(_call_chunked(name, z1, z2, labels, 6, **kw), (z1, z2))
    assert shapes and all(r <= 6 and c == 40 for r, c in shapes)
    assert sum(r for r, _ in shapes) >= 2 * 40  # every row once forward and once backward, at least
    shapes.clear()
    monkeypatch.setattr(rows_mod, "AUTO_BLOCK_ENTRIES", 40 * 9)  # automatic: 9 rows of 2N = 40
    torch.autograd.grad(_call_chunked(name, z1, z2, labels, None, **kw), (z1, z2))
    assert max(r for r, _ in shapes) == 9


@pytest.mark.parametrize("name, lab, kw", CHUNK_CASES)
def test_a_small_batch_computes_its_similarity_matrix_once_per_step(name, lab, kw, monkeypatch):
    """Below KEEP_S_ENTRIES, S is one product kept from the forward to the backward pass (the other
    uses copy it), with the same values and gradients as a batch cut into blocks."""
    import hcl_core.loss_rows as rows_mod

    products = []
    real = rows_mod._similarity

    def spy(z, lay, a, b, kept=None):
        products.append(kept is None)
        return real(z, lay, a, b, kept)

    monkeypatch.setattr(rows_mod, "_similarity", spy)
    labels = torch.arange(20) % 4 if lab else None
    z1, z2 = _pair(n=20, d=5, seed=54, requires_grad=True)
    whole = _call_chunked(name, z1, z2, labels, None, **kw)
    grads = torch.autograd.grad(whole, (z1, z2))
    assert products.count(True) == 1 and len(products) >= 3
    products.clear()
    cut = _call_chunked(name, z1, z2, labels, 7, **kw)
    cut_grads = torch.autograd.grad(cut, (z1, z2))
    assert products.count(True) == len(products) >= 2 * 6  # 6 blocks of 7 rows, forward and backward
    _close(whole, cut, rtol=1e-12, atol=1e-14)
    for g, h in zip(grads, cut_grads, strict=True):
        _close(g, h, rtol=1e-10, atol=1e-14)

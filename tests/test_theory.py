"""The theory check: numbers equal the library losses, known geometries give the known verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hcl_core.config import RunConfig
from hcl_core.losses import h_ucl, hard_supcon, info_nce, negative_weights, same_class_mass
from hcl_core.plots.theory import H_SCL_NAMES, bound_figure, gap_figure, negatives_figure
from hcl_core.store import load_run
from hcl_core.theory import (
    DEFAULT_BETAS,
    TheoryCurves,
    compare_variants,
    describe,
    negatives_curves,
    positive_gap,
    run_curves,
    snapshot_arrays,
    theory_curves,
    verdict_table,
)
from hcl_core.train import train

TAU = 0.5


def random_batch(n: int = 48, d: int = 8, classes: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=g, dtype=torch.float64)
    z2 = z1 + 0.3 * torch.randn(n, d, generator=g, dtype=torch.float64)
    return z1, z2, torch.arange(n) % classes


def clustered_batch(*, labels_match_clusters: bool, n: int = 40, classes: int = 4, noise: float = 0.05, seed: int = 0):
    """Views near one centre per cluster; labels either name the clusters or are shuffled across them."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(classes, 16, generator=g, dtype=torch.float64), dim=1)
    cluster = torch.arange(n) % classes
    z1 = centres[cluster] + noise * torch.randn(n, 16, generator=g, dtype=torch.float64)
    z2 = centres[cluster] + noise * torch.randn(n, 16, generator=g, dtype=torch.float64)
    labels = cluster if labels_match_clusters else cluster[torch.randperm(n, generator=g)]
    return z1, z2, labels


def test_numbers_are_the_library_losses():
    z1, z2, y = random_batch()
    betas = (0.0, 0.5, 2.0, 8.0)
    c = theory_curves(z1, z2, y, tau=TAU, betas=betas)
    assert c.positives == "all" and c.h_scl is c.h_scl_all
    for k, b in enumerate(betas):
        assert c.h_scl[k] == pytest.approx(float(hard_supcon(z1, z2, y, tau=TAU, beta=b)), abs=1e-12)
        partner = float(hard_supcon(z1, z2, y, tau=TAU, beta=b, positives="partner"))
        assert c.h_scl_partner[k] == pytest.approx(partner, abs=1e-12)
        assert c.variant("partner").h_scl[k] == c.h_scl_partner[k]
        assert c.h_ucl[k] == pytest.approx(float(h_ucl(z1, z2, tau=TAU, beta=b)), abs=1e-12)
        share = same_class_mass(negative_weights(z1, z2, y, loss="h_ucl", tau=TAU, beta=b)).mean()
        assert c.same_class_share[k] == pytest.approx(float(share), abs=1e-12)
    assert c.ucl == pytest.approx(float(info_nce(z1, z2, tau=TAU)), abs=1e-12)
    assert c.h_ucl[0] == pytest.approx(c.ucl, abs=1e-9)  # H-UCL at beta = 0 is UCL
    assert (c.n, c.classes, c.negatives, c.tau) == (48, 4, 94, TAU)
    assert np.array_equal(c.gap, c.h_ucl - c.h_scl)
    assert np.array_equal(c.holds, c.h_scl <= c.h_ucl + 1e-6)


def test_float32_snapshots_give_the_same_numbers():
    z1, z2, y = random_batch()
    a = theory_curves(z1.float().numpy(), z2.float().numpy(), y.numpy(), tau=TAU, betas=(0.0, 1.0))
    b = theory_curves(z1.float().double(), z2.float().double(), y, tau=TAU, betas=(0.0, 1.0))
    np.testing.assert_allclose(a.h_scl, b.h_scl, rtol=1e-12)


def test_hardening_never_lowers_a_loss():
    """Jiang et al. 2311.05139: H-SCL(beta) >= SCL = H-SCL(0) and H-UCL(beta) >= UCL, for any embedding."""
    for seed in range(3):
        c = theory_curves(*random_batch(seed=seed), tau=TAU, betas=DEFAULT_BETAS, diagnostics=False)
        assert np.all(np.diff(c.h_scl) >= -1e-9) and np.all(np.diff(c.h_ucl) >= -1e-9)
        assert np.all(np.diff(c.h_scl_partner) >= -1e-9)
        assert np.all(c.h_ucl >= c.ucl - 1e-9)
        assert np.isnan(c.same_class_share).all()


def test_tight_labelled_clusters_satisfy_the_bound():
    """Same-class views sit on top of each other: for H-UCL they are the hardest negatives."""
    c = theory_curves(*clustered_batch(labels_match_clusters=True), tau=TAU, betas=DEFAULT_BETAS)
    assert c.holds.all() and c.crossings() == [] and c.segments() == [(0.0, 10.0, True)]
    assert abs(c.positive_gap) < 0.1  # a same-class view is as close as the partner
    assert c.same_class_share[-1] > c.same_class_share[0] > 0.5  # hardness piles weight on them
    assert "holds at every β" in describe(c)
    assert c.variant("partner").holds.all()  # the authors' check agrees here


def test_labels_unrelated_to_the_geometry_break_the_bound():
    """H-SCL must pull together same-label views from different clusters: its positives are far."""
    c = theory_curves(*clustered_batch(labels_match_clusters=False), tau=TAU, betas=DEFAULT_BETAS)
    assert not c.holds.any()
    assert c.positive_gap > 1.0
    assert c.ucl_below_h_scl.all()
    text = describe(c)
    assert "fails at every β" in text and "a small UCL loss does not bound H-SCL" in text


def test_positive_gap_by_hand():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    z2 = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 0])
    # views: a=(1,0), b=(0,1), a'=(1,0), b'=(1,0); partners (a,a') cos 1, (b,b') cos 0, (a',a) 1, (b',b) 0
    # other same-class pairs: (a,b) 0, (a,b') 1, (b,a) 0, (b,a') 0, (a',b) 0, (a',b') 1, (b',a) 1, (b',a') 1
    assert positive_gap(z1, z2, y, 0.5) == pytest.approx((0.5 - 0.5) / 0.5)
    assert math.isnan(positive_gap(z1, z2, torch.tensor([0, 1]), 0.5))  # no second same-class view


def hand_curves(h_ucl_values, partner=None) -> TheoryCurves:
    b = np.array([0.0, 1.0, 2.0, 3.0])
    partner = np.full(4, 0.5) if partner is None else np.array(partner, dtype=float)
    return TheoryCurves(b, np.ones(4), partner, np.array(h_ucl_values, dtype=float), 0.8, np.full(4, 0.2), 0.3,
                        TAU, 16, 2)


def test_crossings_segments_and_reading():
    c = hand_curves([0.5, 0.9, 1.1, 1.3])  # gap -0.5, -0.1, 0.1, 0.3
    assert c.holds.tolist() == [False, False, True, True]
    assert c.crossings() == pytest.approx([1.5])
    assert c.segments() == [(0.0, pytest.approx(1.5), False), (pytest.approx(1.5), 3.0, True)]
    text = describe(c)
    assert "holds for 1.5 ≤ β ≤ 3** (2 of 4 values) and fails for 0 ≤ β ≤ 1.5" in text
    assert "UCL = 0.800 is below H-SCL at every β" in text
    back = hand_curves([1.2, 0.9, 1.1, 0.8])  # holds, fails, holds, fails: three crossings
    assert len(back.crossings()) == 3 and [s[2] for s in back.segments()] == [True, False, True, False]


def test_the_partner_variant_has_its_own_verdicts_and_reading():
    c = hand_curves([0.5, 0.9, 1.1, 1.3], partner=[0.4, 0.5, 0.6, 0.7])  # partner-only below H-UCL throughout
    p = c.variant("partner")
    assert p.holds.all() and not c.holds.all() and p.variant("all") == c
    assert "the partner as the only positive" in describe(p) and "holds at every β" in describe(p)
    assert "every same-class view a positive" in describe(c)
    assert compare_variants(c).startswith("The bound holds at 4 of 4 β values with the authors' own check")
    assert "one of definition" in compare_variants(c)
    with pytest.raises(ValueError, match="positives"):
        c.variant("some")


def test_verdict_table_counts_both_variants():
    c = hand_curves([0.5, 0.9, 1.1, 1.3], partner=[0.4, 0.5, 0.6, 0.7])
    table = verdict_table({"HCL, β = 1": [c, c]}).splitlines()
    assert table[0].startswith("| trained with | β=0: partner / all")
    row = table[2].split(" | ")
    assert row[1] == "2/2 / 0/2" and row[3] == "2/2 / 2/2"  # β = 0: only partner holds; β = 2: both
    assert row[5] == f"{0.9 - 0.5:+.3f}" and row[6] == f"{0.9 - 1.0:+.3f}"  # margins at β = 1


@pytest.mark.parametrize("kwargs, message", [
    ({"betas": ()}, "non-empty"),
    ({"betas": (0.0, 2.0, 1.0)}, "strictly increasing"),
    ({"betas": (0.0, 25.0)}, r"\[0, 20\]"),
    ({"tau": 0.0}, "tau must be"),
])
def test_bad_arguments_say_what_to_do(kwargs, message):
    z1, z2, y = random_batch()
    with pytest.raises(ValueError, match=message):
        theory_curves(z1, z2, y, **{"tau": TAU, **kwargs})


def test_bad_embeddings_are_refused():
    z1, z2, y = random_batch()
    with pytest.raises(ValueError, match="single class"):
        theory_curves(z1, z2, torch.zeros_like(y), tau=TAU)
    with pytest.raises(ValueError, match="shape"):
        theory_curves(z1, z2[:-1], y, tau=TAU)
    with pytest.raises(ValueError, match="labels must have shape"):
        theory_curves(z1, z2, y[:-1], tau=TAU)
    bad = z1.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="diverged"):
        theory_curves(bad, z2, y, tau=TAU)


def test_negatives_curves_sub_batches():
    z1, z2, y = random_batch(n=48)
    nc = negatives_curves(z1, z2, y, beta=1.0, tau=TAU, sizes=(8, 16, 48, 500), draws=4)
    assert nc.sizes.tolist() == [8, 16, 48]  # 500 > N is dropped
    full = theory_curves(z1, z2, y, tau=TAU, betas=(1.0,))
    assert nc.h_scl_mean[-1] == pytest.approx(full.h_scl[0]) and nc.h_scl_std[-1] == 0.0
    assert nc.h_ucl_mean[-1] == pytest.approx(full.h_ucl[0])
    assert np.all((nc.holds_share >= 0) & (nc.holds_share <= 1))
    assert nc.gap_mean[-1] == pytest.approx(full.gap[0]) and nc.gap_std[-1] == 0.0
    assert nc.partner_gap_mean[-1] == pytest.approx(full.variant("partner").gap[0]) and nc.partner_gap_std[-1] == 0
    assert np.all((nc.partner_holds_share >= 0) & (nc.partner_holds_share <= 1))
    assert nc.h_ucl_mean[0] < nc.h_ucl_mean[-1]  # more negatives, larger loss (about log of their number)
    with pytest.raises(ValueError, match="no usable size"):
        negatives_curves(z1, z2, y, beta=1.0, tau=TAU, sizes=(1000,))


def test_figures():
    c = theory_curves(*random_batch(), tau=TAU, betas=(0.0, 1.0, 2.0))
    for positives, other in (("all", "partner"), ("partner", "all")):
        v = c.variant(positives)
        fig = bound_figure(v)
        names = [t.name for t in fig.data]
        assert names[:4] == [H_SCL_NAMES[positives], "H-UCL (hard unsupervised)", H_SCL_NAMES[other],
                             "UCL (InfoNCE), no β"]
        assert list(fig.data[0].y) == pytest.approx(v.h_scl.tolist())
        assert list(fig.data[2].y) == pytest.approx(v.variant(other).h_scl.tolist())
        assert len(fig.layout.shapes) == len(v.segments()) + len(v.crossings())
        assert H_SCL_NAMES[positives] in fig.layout.title.text
    gap = gap_figure({0: c, 5: c}, positives="partner")
    assert [t.name for t in gap.data] == ["epoch 0", "epoch 5"]
    assert list(gap.data[0].y) == pytest.approx(c.variant("partner").gap.tolist())
    nc = negatives_curves(*random_batch(), beta=1.0, tau=TAU, sizes=(8, 48), draws=2)
    neg = negatives_figure(nc)
    assert list(neg.data[0].x) == [14, 94] and list(neg.data[0].y) == pytest.approx(nc.partner_gap_mean.tolist())
    assert list(neg.data[1].y) == pytest.approx(nc.gap_mean.tolist())


def test_on_a_real_run(tmp_path):
    run_dir = train(RunConfig(loss="hard_supcon", beta=1.0, epochs=1, snapshot_every=1), root=tmp_path).run_dir
    run = load_run(run_dir)
    z1, z2, y, epoch = snapshot_arrays(run)
    assert epoch == 1 and z1.shape == (256, 64) and y.shape == (256,)
    c = run_curves(run, betas=(0.0, 1.0))
    assert c.n == 256 and c.negatives == 510 and c.tau == run.config.tau
    assert c.h_scl[1] == pytest.approx(float(hard_supcon(torch.tensor(z1).double(), torch.tensor(z2).double(),
                                                         torch.tensor(y), tau=c.tau, beta=1.0)))
    assert run_curves(run, 0, betas=(0.0,)).ucl == pytest.approx(math.log(511), abs=0.05)  # random encoder
    with pytest.raises(ValueError, match="no snapshot at epoch 7"):
        snapshot_arrays(run, 7)


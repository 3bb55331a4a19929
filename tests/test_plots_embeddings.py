"""Figure builders of the Embeddings page: hover pictures, neighbours, the animated scatter."""

import numpy as np
import plotly.graph_objects as go
import pytest

from hcl_core.analysis.neighbours import neighbours
from hcl_core.plots import CLASS_COLORS, class_color, class_symbol
from hcl_core.plots.embeddings import (
    SHADES,
    WEBGL_ABOVE,
    Highlight,
    block_picture,
    downsample,
    embedding_figure,
    hover_texts,
    thumbnail,
)

NB = "\u00a0"


def test_block_picture_of_a_known_8x8_image():
    img = np.zeros((1, 8, 8), np.float16)
    img[0, :, 3] = 1.0  # a vertical stroke
    img[0, 0, 0] = 0.5  # one mid-grey pixel: 0.5 * 5 = 2.5 -> shade 2
    lines = block_picture(img).split("<br>")
    assert len(lines) == 8 and all(len(line) == 16 for line in lines)  # each pixel two characters wide
    assert lines[0] == "▒▒" + NB * 4 + "██" + NB * 8
    assert lines[5] == NB * 6 + "██" + NB * 8


def test_every_shade_is_reachable_and_values_are_clipped():
    row = np.array([[-1.0, 0.1, 0.3, 0.5, 0.7, 0.95, 1.0, 2.0]])
    assert block_picture(row) == "".join(2 * SHADES[k] for k in (0, 0, 1, 2, 3, 4, 4, 4))


def test_large_images_are_averaged_down_and_colour_has_no_picture():
    img = np.random.default_rng(0).random((28, 28))
    small = downsample(img)
    assert small.shape == (12, 12)
    assert small.mean() == pytest.approx(img.mean(), abs=0.02)
    assert len(block_picture(img[None]).split("<br>")) == 12
    assert block_picture(np.zeros((3, 32, 32))) == ""
    assert block_picture(np.zeros(32)) == ""


def test_hover_texts_name_class_and_test_index():
    inputs = np.zeros((2, 1, 8, 8), np.float16)
    texts = hover_texts(np.array([1, 0]), np.array([17, 3]), ("zero", "one"), inputs)
    assert texts[0].startswith("<b>class one</b> · test #17<br>")
    assert texts[1].count("<br>") == 8
    assert hover_texts(np.array([0]), np.array([5]), ("a",), np.zeros((1, 32))) == ["<b>class a</b> · test #5"]


def test_thumbnail_upscales_by_nearest_neighbour():
    img = np.eye(8, dtype=np.float16)[None]
    t = thumbnail(img, 96)
    assert t.shape == (96, 96) and t.dtype == np.uint8
    assert t[0, 11] == 255 and t[0, 12] == 0  # 12 x 12 blocks, no blur
    assert thumbnail(np.zeros((3, 32, 32)), 64).shape == (64, 64, 3)
    assert thumbnail(np.zeros(16)) is None


def test_neighbours_by_cosine_and_hardest_negatives_of_other_classes():
    feats = np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    labels = np.array([0, 1, 0, 1, 0])
    nb = neighbours(feats, labels, 0, k=3)
    assert list(nb.nearest) == [1, 2, 3]
    assert np.all(np.diff(nb.nearest_cos) <= 0) and nb.nearest_cos[0] == pytest.approx(0.9 / np.hypot(0.9, 0.1))
    assert list(nb.same_class) == [False, True, False]
    assert list(nb.hardest) == [1, 3] and 0 not in nb.hardest
    assert nb.hardest_cos[1] == pytest.approx(0.0)


def _layouts(n=30, epochs=(0, 2, 4)):
    rng = np.random.default_rng(1)
    return [rng.normal(scale=1 + e, size=(n, 2)) for e in epochs], list(epochs), np.arange(n) % 3


def test_figure_has_a_frame_per_epoch_and_fixed_ranges_holding_every_frame():
    layouts, epochs, labels = _layouts()
    fig = embedding_figure(layouts, epochs, labels, class_names=("a", "b", "c"), active=1, validate=True,
                           axis_titles=[(f"x{e}", f"y{e}") for e in epochs], titles=[f"e{e}" for e in epochs])
    assert [f.name for f in fig.frames] == ["0", "2", "4"]
    assert [s.label for s in fig.layout.sliders[0].steps] == ["0", "2", "4"] and fig.layout.sliders[0].active == 1
    assert [b.label for b in fig.layout.updatemenus[0].buttons] == ["▶ Play", "❚❚ Pause"]
    x0, x1 = fig.layout.xaxis.range
    y0, y1 = fig.layout.yaxis.range
    allpts = np.concatenate(layouts)
    assert x0 < allpts[:, 0].min() and x1 > allpts[:, 0].max() and y0 < allpts[:, 1].min() and y1 > allpts[:, 1].max()
    assert fig.layout.xaxis.autorange is False and fig.layout.yaxis.scaleanchor == "x"
    assert all(f.layout.xaxis.range is None and f.layout.yaxis.range is None for f in fig.frames)  # never rescale
    assert fig.frames[2].layout.xaxis.title.text == "x4" and fig.layout.xaxis.title.text == "x2"
    assert fig.layout.title.text == "e2"
    # the figure opens at the active epoch; each class trace is one colour/symbol and knows its rows
    for k, trace in enumerate(fig.data):
        rows = [c[0] for c in trace.customdata]
        assert rows == list(np.flatnonzero(labels == k))
        np.testing.assert_allclose(trace.x, layouts[1][rows, 0], rtol=1e-6)
        np.testing.assert_allclose(fig.frames[2].data[k].y, layouts[2][rows, 1], rtol=1e-6)
        assert trace.marker.color == class_color(k) and trace.name == "abc"[k]


def test_highlight_rings_follow_their_points_in_every_frame():
    layouts, epochs, labels = _layouts()
    fig = embedding_figure(layouts, epochs, labels, class_names="abc", highlight=Highlight(4, [5, 6], [7]),
                           validate=True)
    assert [t.name for t in fig.data[3:]] == ["chosen sample", "nearest neighbours", "hardest negatives"]
    for frame, layout in zip(fig.frames, layouts, strict=True):
        assert len(frame.data) == 6
        np.testing.assert_allclose(frame.data[4].x, layout[[5, 6], 0], rtol=1e-6)
        np.testing.assert_allclose(frame.data[5].y, layout[[7], 1], rtol=1e-6)


def test_one_epoch_has_no_player_and_many_classes_get_symbols():
    n = 40
    labels = np.arange(n) % 12
    fig = embedding_figure([np.random.default_rng(0).normal(size=(n, 2))], [5], labels,
                           class_names=[str(k) for k in range(12)], equal_aspect=False)
    assert not fig.layout.sliders and not fig.layout.updatemenus and len(fig.frames) == 1
    assert fig.layout.yaxis.scaleanchor is None
    assert fig.data[10].marker.color == CLASS_COLORS[0] and fig.data[10].marker.symbol == class_symbol(10) != "circle"


def test_many_points_use_webgl_and_bad_shapes_are_refused():
    n = WEBGL_ABOVE + 1
    fig = embedding_figure([np.zeros((n, 2)), np.ones((n, 2))], [0, 1], np.zeros(n, int), class_names=["a"])
    assert isinstance(fig.data[0], go.Scattergl)
    with pytest.raises(ValueError, match="one layout per epoch"):
        embedding_figure([np.zeros((3, 2))], [0, 1], np.zeros(3, int), class_names=["a"])
    with pytest.raises(ValueError, match=r"expected \(3, 2\)"):
        embedding_figure([np.zeros((4, 2))], [0], np.zeros(3, int), class_names=["a"])

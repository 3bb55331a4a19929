"""The floor of the interaction benchmark: the app's navigation with trivial pages.

:func:`write_floor_app` writes, into a folder of its own, a copy of the real ``app.py`` (the same
``st.navigation``: page titles, icons, default page, wide layout), the app's
``.streamlit/config.toml``, and one trivial script per page that offers the same controls the
benchmark uses on the real page, each drawing one tiny chart where the real page draws its
charts (Plotly, except the Train page's markup):

* the Train page: ▶ Start / ■ Stop buttons; Start draws a two-point "Training loss" chart, the
  markup the real page draws while a run trains (:func:`hcl_core.plots.live.live_loss_html`,
  written into the page as a string), Stop shows "stopped by the user" (the texts the real page's
  checks look for);
* Embeddings: an "Epoch" select slider over the real run's snapshot epochs and a 3-point
  scatter animated over those epochs, built by :func:`hcl_core.plots.embeddings.embedding_figure`
  (so its ▶ Play has the real frame duration, transition and redraw settings);
* Negatives: a "Preview β" slider with the real range and step, and a one-point chart of β;
* Compare: a "Runs to compare" multiselect of four options (three chosen) and a chart with one
  line per chosen option;
* every other page: its title only.

The pages import nothing but streamlit and plotly (plus ``json``), so what an interaction costs
here is Streamlit's own round trip: the input event, the websocket, a script run, the deltas, and
React and plotly.js drawing the result.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np

__all__ = ["FLOOR_RUNS", "app_pages", "write_floor_app"]

ROOT = Path(__file__).resolve().parent.parent

#: The four options of the floor's Compare page (three chosen at first, like the real page's default).
FLOOR_RUNS = ("run A", "run B", "run C", "run D")

_HEADER = "import streamlit as st\n"

_PAGES = {
    "train": '''
st.title({title!r})
running = st.session_state.get("floor_running", False)


def _start():
    st.session_state["floor_running"] = True
    st.session_state["floor_stopped"] = False


def _stop():
    st.session_state["floor_running"] = False
    st.session_state["floor_stopped"] = True


b1, b2 = st.columns(2)
b1.button("▶ Start", disabled=running, on_click=_start)
b2.button("■ Stop", disabled=not running, on_click=_stop)
if st.session_state.get("floor_stopped"):
    st.warning("Run stopped by the user.")
if running:
    st.html({live_loss!r})
''',
    "embeddings": '''
import json
from pathlib import Path

import plotly.io as pio

st.title({title!r})
epochs = json.loads((Path(__file__).parent / "epochs.json").read_text())
epoch = st.select_slider("Epoch", epochs, value=epochs[-1], key="floor_epoch")
spec = (Path(__file__).parent / f"embedding_{{epoch}}.json").read_text()
st.plotly_chart(pio.from_json(spec, skip_invalid=True), key="floor_embedding")
''',
    "negatives": '''
import plotly.graph_objects as go

st.title({title!r})
beta = st.slider("Preview β (no training needed)", 0.0, 10.0, value=1.0, step=0.1, key="floor_beta")
st.subheader(f"preview β={{beta:g}}")
fig = go.Figure(go.Scatter(x=[beta], y=[beta], mode="markers"))
st.plotly_chart(fig.update_layout(title=f"β = {{beta:g}}", height=300), key="floor_beta_chart")
''',
    "compare": '''
import plotly.graph_objects as go

st.title({title!r})
runs = {runs!r}
chosen = st.multiselect("Runs to compare", runs, default=list(runs[:3]), key="floor_runs")
fig = go.Figure([go.Scatter(x=[1, 2], y=[i, i + 1], mode="lines", name=r) for i, r in enumerate(chosen)])
st.plotly_chart(fig.update_layout(title="Training loss", height=300), key="floor_compare")
''',
}


def app_pages(app_py: str) -> list[tuple[str, str]]:
    """``(path, title)`` of every ``st.Page(...)`` in the real app's ``app.py``."""
    found = re.findall(r'st\.Page\(\s*["\']([^"\']+)["\']\s*,\s*title\s*=\s*["\']([^"\']+)["\']', app_py)
    if not found:
        raise ValueError("app.py declares no st.Page(\"pages/...\", title=\"...\"): the floor app copies its "
                         "navigation, so the benchmark needs it")
    return found


def write_floor_app(dest: Path, *, epochs: list[int], app_dir: Path = ROOT) -> list[tuple[str, str]]:
    """Write the floor app into ``dest`` (see the module docstring); returns its ``(path, title)`` pages.

    ``epochs``: the snapshot epochs of the run the real Embeddings page shows (the floor's slider
    and animation get as many frames).
    """
    from hcl_core.plots.embeddings import embedding_figure
    from hcl_core.plots.live import live_loss_html

    live_loss = live_loss_html([1, 2], [1.0, 0.9], label="floor", color="#0072B2")

    # The app's navigation, without its warm-up of the app's own services (the floor has none).
    app_py = "\n".join(line for line in (app_dir / "app.py").read_text(encoding="utf-8").splitlines()
                        if "projection_service" not in line) + "\n"
    pages = app_pages(app_py)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "app.py").write_text(app_py, encoding="utf-8")
    config = app_dir / ".streamlit" / "config.toml"
    if config.is_file():
        (dest / ".streamlit").mkdir(exist_ok=True)
        shutil.copy(config, dest / ".streamlit" / "config.toml")
    for path, title in pages:
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        body = _PAGES.get(Path(path).stem, "\nst.title({title!r})\n")
        target.write_text(_HEADER + body.format(title=title, runs=FLOOR_RUNS, live_loss=live_loss),
                          encoding="utf-8")
    folder = (dest / pages[0][0]).parent
    (folder / "epochs.json").write_text(json.dumps(list(epochs)))
    rng = np.random.default_rng(0)
    layouts = [rng.normal(size=(3, 2)) for _ in epochs]
    for i, epoch in enumerate(epochs):
        fig = embedding_figure(layouts, list(epochs), np.array([0, 1, 2]), class_names=("0", "1", "2"), active=i,
                               titles=[f"3 points · epoch {e}" for e in epochs], revision="floor")
        (folder / f"embedding_{epoch}.json").write_text(fig.to_json())
    return pages

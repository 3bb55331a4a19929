"""Hardness Explorer: see what hard negative sampling does to contrastive representations.

Run with ``./run.sh app`` (or ``streamlit run app.py``). The pages live in ``pages/``; all the
maths and training is in ``hcl_core``.
"""

import streamlit as st

st.set_page_config(page_title="Hardness Explorer", page_icon="🧲", layout="wide")
# Progress bars jump to each new value instead of gliding there: in the live view, refreshed
# every 2 s, the glide's repaints cost Chromium more than the rest of the refresh (BENCHMARKS.md),
# and on a small machine the training worker pays for it.
st.html("<style>[data-testid='stProgress'] * {transition: none !important}</style>")

pages = [
    st.Page("pages/train.py", title="Train", icon=":material/model_training:", default=True),
    st.Page("pages/embeddings.py", title="Embeddings", icon=":material/scatter_plot:"),
    st.Page("pages/negatives.py", title="Negatives", icon=":material/balance:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("pages/theory.py", title="Theory", icon=":material/functions:"),
]
from ui.projections import projection_service  # noqa: E402

projection_service()  # warm UMAP in the background at the first request, whichever page it opens
st.navigation(pages).run()

"""Hardness Explorer: see what hard negative sampling does to contrastive representations.

Run with ``./run.sh app`` (or ``streamlit run app.py``). The pages live in ``pages/``; all the
maths and training is in ``hcl_core``.
"""

import streamlit as st

st.set_page_config(page_title="Hardness Explorer", page_icon="🧲", layout="wide")

pages = [
    st.Page("pages/train.py", title="Train", icon="🏋️", default=True),
    st.Page("pages/embeddings.py", title="Embeddings", icon="🗺️"),
    st.Page("pages/negatives.py", title="Negatives", icon="⚖️"),
    st.Page("pages/compare.py", title="Compare", icon="📊"),
    st.Page("pages/theory.py", title="Theory", icon="📐"),
]
st.navigation(pages).run()

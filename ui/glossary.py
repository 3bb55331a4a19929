"""Plain-language meanings of the words the pages use, in one popover."""

from __future__ import annotations

import streamlit as st

__all__ = ["GLOSSARY", "glossary"]

GLOSSARY: dict[str, str] = {
    "anchor, positive, negative": "Each view in a batch is an anchor. Its positive is the other augmented view of "
    "the same sample (for supervised losses: every view of its class); its negatives are the other views the loss "
    "pushes away.",
    "false negative": "A negative that shares the anchor's class. Unsupervised losses cannot tell, so they push "
    "it away too.",
    "s = cos/τ": "The similarity of two embeddings: their cosine divided by the temperature τ. s_ip is the anchor's "
    "similarity to its positive.",
    "β (hardness)": "How strongly a loss tilts its weight towards hard negatives (high s): weights ∝ e^{β s}. "
    "β = 0 is no tilt. β multiplies s = cos/τ, as in the published code.",
    "τ⁺ (class prior)": "DCL and HCL's guess of the chance that a random negative shares the anchor's class "
    "(0.1 for 10 balanced classes); they subtract that much positive mass from the negatives.",
    "M": "The number of candidate negatives of an anchor: 2N − 2 for a batch of N samples (two views each).",
    "clamp binds": "DCL/HCL keep their debiased negative term above M e^{−1/τ}. Where that floor is hit, the term "
    "is a constant and the anchor's negatives get no gradient.",
    "importance weight ω": "The papers' hardness weight of a negative: e^{β s} divided by its mean over the anchor's "
    "negatives. Mean 1; all 1 at β = 0.",
    "share": "The fraction of the anchor's negative term that one negative carries. Not the same as ω: at β = 0 "
    "the share still favours similar negatives.",
    "effective negatives": "How many negatives really carry the weight, (Σw)²/Σw²: all of them when the weights "
    "are equal, 1 when a single negative takes it all.",
    "alignment": "How far apart the two views of a sample land (lower = closer). It often rises early in training "
    "while the embedding spreads out: that is not bad news by itself.",
    "uniformity": "How evenly the embeddings cover the sphere (lower = more spread out).",
    "backbone / projection head": "The encoder's body, whose features the probes and plots use, and the small head "
    "on top whose output the loss sees.",
    "probe (linear, few-shot, kNN)": "Ways to read class information out of frozen backbone features: a linear "
    "classifier on all labels or 10 per class, and a vote of the 200 nearest training samples.",
    "raw inputs, random encoder": "The two reference lines: the same probes on the raw pixels or vectors, and on an "
    "untrained encoder. What lies above them is what training added.",
    "nats": "The unit of the loss values: natural logarithms (1 nat = 1.44 bits).",
}


def glossary(container=st) -> None:
    """A 'Glossary' popover listing :data:`GLOSSARY`."""
    with container.popover("Glossary", icon=":material/menu_book:"):
        for term, meaning in GLOSSARY.items():
            st.markdown(f"**{term}**: {meaning}")

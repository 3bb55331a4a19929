"""Hardness Explorer core: contrastive losses with hard negatives, training, evaluation, run files.

UI-free: nothing in this package imports streamlit.
"""

__version__ = "0.1.0"

"""The formula of each loss in KaTeX, with the hardness term highlighted."""

from hcl_core.plots import ACCENT

_HARD = r"\textcolor{" + ACCENT + "}"
_W = _HARD + r"{w_{ik}}"
_NOTE_S = r"s_{ij} = z_i^\top z_j/\tau,\ \ M = 2N-2"

FORMULAS: dict[str, str] = {
    "info_nce": r"\ell_i = -\log\frac{e^{s_{ip}}}{\sum_{j\ne i} e^{s_{ij}}},\qquad " + _NOTE_S,
    "dcl": (r"\ell_i = -\log\frac{e^{s_{ip}}}{e^{s_{ip}} + N_g},\quad N_g = \max\Big(\frac{\sum_{k} e^{s_{ik}}"
            r" - \tau^+ M e^{s_{ip}}}{1-\tau^+},\ M e^{-1/\tau}\Big)"),
    "hcl": (r"\ell_i = -\log\frac{e^{s_{ip}}}{e^{s_{ip}} + N_g},\quad N_g = \max\Big(\frac{M\sum_k " + _W
            + r" e^{s_{ik}} - \tau^+ M e^{s_{ip}}}{1-\tau^+},\ M e^{-1/\tau}\Big),\quad " + _W
            + r" = \frac{e^{" + _HARD + r"{\beta} s_{ik}}}{\sum_{k'} e^{" + _HARD + r"{\beta} s_{ik'}}}"),
    "h_ucl": (r"\ell_i = -\log\frac{e^{s_{ip}}}{e^{s_{ip}} + M \sum_k " + _W + r" e^{s_{ik}}},\quad "
              + _W + r" = \mathrm{softmax}_k(" + _HARD + r"{\beta} s_{ik})"),
    "supcon": (r"\ell_i = -\frac{1}{|P(i)|}\sum_{p\in P(i)}\log\frac{e^{s_{ip}}}{\sum_{j\ne i} e^{s_{ij}}}"
               r",\qquad P(i) = \{j \ne i: y_j = y_i\}"),
    "hard_supcon": (r"\ell_{ip} = -\log\frac{e^{s_{ip}}}{e^{s_{ip}} + M \sum_{k:\,y_k\ne y_i} " + _W
                    + r" e^{s_{ik}}},\quad " + _W + r" = \mathrm{softmax}_{k:\,y_k \ne y_i}("
                    + _HARD + r"{\beta} s_{ik})"),
}

EXPLANATIONS: dict[str, str] = {
    "info_nce": "Every other view in the batch is a negative, weighted by its similarity.",
    "dcl": "Subtracts the expected share of same-class negatives (class prior τ⁺) from the denominator.",
    "hcl": "Re-weights negatives towards hard ones (high similarity) with hardness β, and debiases with τ⁺.",
    "h_ucl": "HCL without debiasing or clamp: hard negatives, but same-class views still count as negatives.",
    "supcon": "Uses labels: every same-class view is a positive; all other views stay in the denominator.",
    "hard_supcon": "Uses labels: negatives are only other-class views, tilted towards hard ones by β — so "
                   "the tilt can no longer land on same-class 'false negatives'.",
}

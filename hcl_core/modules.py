"""The six losses as ``nn.Module`` s, for training loops outside this app.

Each module holds its hyper-parameters (keyword-only, validated in the constructor with the
same messages as the functions of :mod:`hcl_core.losses`) and computes, for two views
``z1, z2`` of shape ``(N, d)`` of the same N samples, the mean loss over the 2N anchors::

    loss_fn = HCLLoss(tau=0.5, beta=1.0, tau_plus=0.1)
    loss = loss_fn(model(x1), model(x2))          # scalar, differentiable
    loss = SupConLoss(tau=0.1)(z1, z2, labels)     # supervised: labels of shape (N,)

The arithmetic is the functions' (stable in log space, float32 accumulation for half-precision
inputs), so a module and its function give identical values and gradients. The views are
L2-normalised inside: pass the raw projections. ``labels`` are read by the supervised losses
only (``SupConLoss``, ``HardSupConLoss``, which refuse to run without them); the unsupervised
losses accept and ignore them, so one training loop can drive every loss.

Default hyper-parameters are the app's (``RunConfig``): tau 0.5, beta 1, tau_plus 0.1.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from . import losses, registry

__all__ = [
    "LOSS_MODULES",
    "ContrastiveLoss",
    "DCLLoss",
    "HCLLoss",
    "HUCLLoss",
    "HardSupConLoss",
    "InfoNCELoss",
    "SupConLoss",
    "loss_from_config",
    "loss_module",
]

_CHECKS = {"tau": losses._check_tau, "beta": losses._check_beta, "tau_plus": losses._check_tau_plus}


class ContrastiveLoss(nn.Module):
    """A loss of :mod:`hcl_core.losses` with its hyper-parameters bound.

    Subclasses name their loss (``name``, a key of :data:`hcl_core.registry.LOSSES`); which
    hyper-parameters they take, whether they read labels and whether ``detach_weights`` applies
    all come from that record.
    """

    name: ClassVar[str]

    def __init__(self, **hyper: Any):
        super().__init__()
        spec = registry.loss_spec(self.name)
        expected = set(spec.params) | ({"detach_weights"} if spec.detachable else set())
        if set(hyper) != expected:  # a subclass that disagrees with the registry: a bug here
            raise AssertionError(f"{type(self).__name__} takes {sorted(hyper)}, the registry says {sorted(expected)}")
        for param in spec.params:
            _CHECKS[param](hyper[param])
            hyper[param] = float(hyper[param])
        if spec.detachable and not isinstance(hyper["detach_weights"], bool):
            raise ValueError(f"detach_weights must be True or False, got {hyper['detach_weights']!r}")
        self._hyper_names = tuple(hyper)
        for k, v in hyper.items():
            setattr(self, k, v)

    @property
    def spec(self) -> registry.LossSpec:
        """What this loss is (label, reference, supervised, ...): its registry record."""
        return registry.loss_spec(self.name)

    @property
    def hyper_parameters(self) -> dict[str, Any]:
        """The hyper-parameters as passed to the loss function, e.g. ``{"tau": 0.5, "beta": 1.0}``."""
        return {k: getattr(self, k) for k in self._hyper_names}

    def forward(self, z1: Tensor, z2: Tensor, labels: Tensor | None = None) -> Tensor:
        """The mean loss over the 2N anchors of ``z1, z2`` (``(N, d)`` each); ``labels`` ``(N,)``.

        The hyper-parameters are checked again at every call (by the loss function), so an
        attribute changed after construction cannot slip through unchecked.
        """
        fn = losses.LOSSES[self.name]
        if self.spec.supervised:
            if labels is None:
                raise ValueError(
                    f"{type(self).__name__} is supervised: call it as loss_fn(z1, z2, labels) with integer "
                    "class labels of shape (N,). Without labels use InfoNCELoss or HUCLLoss instead."
                )
            return fn(z1, z2, labels, **self.hyper_parameters)
        return fn(z1, z2, **self.hyper_parameters)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.hyper_parameters.items())


class InfoNCELoss(ContrastiveLoss):
    r"""SimCLR's NT-Xent (Chen et al., ICML 2020): :func:`hcl_core.losses.info_nce`.

    .. math:: \ell_i = \log\sum_{j \ne i} e^{s_{ij}} - s_{i,p(i)}

    Args:
        tau: temperature > 0.
    """

    name = "info_nce"

    def __init__(self, *, tau: float = 0.5):
        super().__init__(tau=tau)


class DCLLoss(ContrastiveLoss):
    """Debiased contrastive loss (Chuang et al., NeurIPS 2020): :func:`hcl_core.losses.dcl`.

    Not the "decoupled" contrastive loss some libraries also call DCL.

    Args:
        tau: temperature > 0.
        tau_plus: class prior in [0, 1): the chance that a random negative shares the class.
    """

    name = "dcl"

    def __init__(self, *, tau: float = 0.5, tau_plus: float = 0.1):
        super().__init__(tau=tau, tau_plus=tau_plus)


class HCLLoss(ContrastiveLoss):
    """Hard negative contrastive loss (Robinson et al., ICLR 2021): :func:`hcl_core.losses.hcl`.

    ``beta = 0`` is :class:`DCLLoss`; ``beta = 0, tau_plus = 0`` is :class:`InfoNCELoss`.

    Args:
        tau: temperature > 0.
        beta: hardness >= 0; multiplies ``s = cos / tau``, as in the published code.
        tau_plus: class prior in [0, 1).
        detach_weights: treat the importance weights as constants in the backward pass.
    """

    name = "hcl"

    def __init__(self, *, tau: float = 0.5, beta: float = 1.0, tau_plus: float = 0.1, detach_weights: bool = False):
        super().__init__(tau=tau, beta=beta, tau_plus=tau_plus, detach_weights=detach_weights)


class HUCLLoss(ContrastiveLoss):
    """Hard unsupervised contrastive loss (H-UCL, Jiang et al. 2024): :func:`hcl_core.losses.h_ucl`.

    HCL without debiasing and without the clamp.

    Args:
        tau: temperature > 0.
        beta: hardness >= 0.
    """

    name = "h_ucl"

    def __init__(self, *, tau: float = 0.5, beta: float = 1.0):
        super().__init__(tau=tau, beta=beta)


class SupConLoss(ContrastiveLoss):
    """Supervised contrastive loss, L_out (Khosla et al., NeurIPS 2020): :func:`hcl_core.losses.supcon`.

    Needs ``labels``; anchors whose batch holds no view of another class are left out of the mean.

    Args:
        tau: temperature > 0.
    """

    name = "supcon"

    def __init__(self, *, tau: float = 0.5):
        super().__init__(tau=tau)


class HardSupConLoss(ContrastiveLoss):
    """Hard supervised contrastive loss (H-SCL, Jiang et al. 2024): :func:`hcl_core.losses.hard_supcon`.

    Negatives are the other-class views only, tilted towards the hard ones; ``beta = 0`` is
    Jiang et al.'s SCL. Needs ``labels``.

    Args:
        tau: temperature > 0.
        beta: hardness >= 0.
        detach_weights: treat the importance weights as constants in the backward pass.
    """

    name = "hard_supcon"

    def __init__(self, *, tau: float = 0.5, beta: float = 1.0, detach_weights: bool = False):
        super().__init__(tau=tau, beta=beta, detach_weights=detach_weights)


#: The module class of every loss, by the loss's registry name.
LOSS_MODULES: dict[str, type[ContrastiveLoss]] = {
    cls.name: cls for cls in (InfoNCELoss, DCLLoss, HCLLoss, HUCLLoss, SupConLoss, HardSupConLoss)
}
assert LOSS_MODULES.keys() == registry.LOSSES.keys(), "every registered loss needs a module, and no more"


def loss_module(name: str, **hyper: Any) -> ContrastiveLoss:
    """The module of loss ``name`` (a registry key) with the given hyper-parameters.

    ``loss_module("hcl", tau=0.5, beta=2)``; a name that is not a loss gives a ``ValueError``
    listing the choices, a hyper-parameter the loss does not take a ``TypeError``.
    """
    registry.loss_spec(name)  # the clear error for an unknown name
    return LOSS_MODULES[name](**hyper)


def loss_from_config(config: Any) -> ContrastiveLoss:
    """The loss a :class:`~hcl_core.config.RunConfig` (e.g. a stored run's ``run.config``) trains with.

    Only the hyper-parameters that loss reads are passed, so a setting found in the app carries
    over to another training loop unchanged.
    """
    spec = registry.loss_spec(config.loss)
    hyper: dict[str, Any] = {p: getattr(config, p) for p in spec.params}
    if spec.detachable:
        hyper["detach_weights"] = bool(config.detach_weights)
    return LOSS_MODULES[config.loss](**hyper)

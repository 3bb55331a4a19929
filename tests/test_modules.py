"""The nn.Module losses: the functions' values and gradients, their checks, their labels rule, their repr."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hcl_core import losses, modules, registry
from hcl_core.config import RunConfig
from hcl_core.modules import (
    LOSS_MODULES,
    DCLLoss,
    HardSupConLoss,
    HCLLoss,
    HUCLLoss,
    InfoNCELoss,
    SupConLoss,
    loss_from_config,
    loss_module,
)

#: Hyper-parameters away from the defaults, so a module that dropped one would differ.
HYPER = {"tau": 0.3, "beta": 2.5, "tau_plus": 0.15}


def _views(n: int = 12, d: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=g, dtype=torch.float64)
    z2 = z1 + 0.3 * torch.randn(n, d, generator=g, dtype=torch.float64)
    labels = torch.arange(n) % 3
    return z1, z2, labels


def _kwargs(name: str, detach: bool = False) -> dict:
    spec = registry.LOSSES[name]
    kw = {p: HYPER[p] for p in spec.params}
    if spec.detachable:
        kw["detach_weights"] = detach
    return kw


@pytest.mark.parametrize("name", list(LOSS_MODULES))
def test_each_module_gives_its_functions_value_and_gradients(name):
    z1, z2, labels = _views()
    spec = registry.LOSSES[name]
    for detach in (False, True) if spec.detachable else (False,):
        kw = _kwargs(name, detach)
        a1, a2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
        b1, b2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
        module_loss = LOSS_MODULES[name](**kw)(a1, a2, labels)
        args = (b1, b2, labels) if spec.supervised else (b1, b2)
        function_loss = losses.LOSSES[name](*args, **kw)
        assert module_loss.dtype == torch.float64
        assert torch.equal(module_loss, function_loss)
        module_loss.backward()
        function_loss.backward()
        assert torch.equal(a1.grad, b1.grad) and torch.equal(a2.grad, b2.grad)
        assert torch.isfinite(a1.grad).all() and a1.grad.abs().sum() > 0


def test_the_classes_are_the_named_losses():
    assert [c.__name__ for c in (InfoNCELoss, DCLLoss, HCLLoss, HUCLLoss, SupConLoss, HardSupConLoss)] == [
        LOSS_MODULES[n].__name__ for n in ("info_nce", "dcl", "hcl", "h_ucl", "supcon", "hard_supcon")]
    assert set(LOSS_MODULES) == set(registry.LOSSES)


@pytest.mark.parametrize("name", list(LOSS_MODULES))
def test_defaults_are_the_apps_defaults(name):
    default = RunConfig()
    module = LOSS_MODULES[name]()
    for param in registry.LOSSES[name].params:
        assert getattr(module, param) == getattr(default, param)
    if registry.LOSSES[name].detachable:
        assert module.detach_weights is False


@pytest.mark.parametrize(("param", "bad"), [("tau", -0.5), ("tau", 0.0), ("tau", float("nan")), ("tau", "warm"),
                                             ("beta", -1.0), ("beta", float("inf")),
                                             ("tau_plus", 1.0), ("tau_plus", -0.1)])
def test_a_bad_hyper_parameter_is_refused_at_construction_with_the_functions_message(param, bad):
    z1, z2, _ = _views()
    for name, cls in LOSS_MODULES.items():
        if param not in registry.LOSSES[name].params:
            continue
        kw = {**_kwargs(name), param: bad}
        with pytest.raises(ValueError) as from_function:
            losses.LOSSES[name](z1, z2, torch.zeros(len(z1)), **kw) if registry.LOSSES[name].supervised \
                else losses.LOSSES[name](z1, z2, **kw)
        with pytest.raises(ValueError) as from_module:
            cls(**kw)
        assert str(from_module.value) == str(from_function.value)
        assert param in str(from_module.value)


def test_hyper_parameters_are_keyword_only_and_a_loss_takes_only_its_own():
    with pytest.raises(TypeError):
        HCLLoss(0.5)  # type: ignore[misc]
    with pytest.raises(TypeError, match="beta"):
        InfoNCELoss(tau=0.5, beta=1.0)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="detach_weights must be True or False"):
        HCLLoss(detach_weights="yes")  # type: ignore[arg-type]


def test_supervised_losses_refuse_to_run_without_labels():
    z1, z2, labels = _views()
    for cls in (SupConLoss, HardSupConLoss):
        with pytest.raises(ValueError, match=r"supervised: call it as loss_fn\(z1, z2, labels\)"):
            cls()(z1, z2)
        assert torch.isfinite(cls()(z1, z2, labels))


def test_unsupervised_losses_ignore_labels():
    z1, z2, labels = _views()
    for cls in (InfoNCELoss, DCLLoss, HCLLoss, HUCLLoss):
        loss = cls()
        assert torch.equal(loss(z1, z2, labels), loss(z1, z2))


def test_an_attribute_changed_after_construction_is_still_checked():
    z1, z2, _ = _views()
    loss = HCLLoss()
    loss.tau = -1.0
    with pytest.raises(ValueError, match="tau must be a finite number > 0"):
        loss(z1, z2)


def test_repr_shows_the_hyper_parameters():
    assert repr(HCLLoss(tau=0.2, beta=2.0)) == "HCLLoss(tau=0.2, beta=2.0, tau_plus=0.1, detach_weights=False)"
    assert repr(SupConLoss(tau=0.07)) == "SupConLoss(tau=0.07)"
    assert repr(HardSupConLoss(beta=1)) == "HardSupConLoss(tau=0.5, beta=1.0, detach_weights=False)"
    assert HUCLLoss(tau=0.2, beta=3).hyper_parameters == {"tau": 0.2, "beta": 3.0}


def test_a_module_lives_in_a_model_and_has_no_parameters_of_its_own():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    model.loss = HCLLoss()
    assert list(model.loss.parameters()) == []
    assert "(loss): HCLLoss(tau=0.5" in repr(model)
    model.to(torch.float64).train(False)  # .to / .train pass through a parameter-free module
    assert loss_module("hcl", tau=0.5).state_dict() == {}


def test_loss_module_and_loss_from_config():
    assert isinstance(loss_module("h_ucl", tau=0.4, beta=2), HUCLLoss)
    with pytest.raises(ValueError, match="unknown loss 'ntxent'; choose one of info_nce"):
        loss_module("ntxent")
    config = RunConfig(loss="hard_supcon", beta=3.0, tau=0.2, detach_weights=True)
    loss = loss_from_config(config)
    assert isinstance(loss, HardSupConLoss)
    assert loss.hyper_parameters == {"tau": 0.2, "beta": 3.0, "detach_weights": True}
    for name in registry.LOSSES:  # every loss, with exactly what its config reads
        c = dataclasses.replace(RunConfig(), loss=name)
        assert type(loss_from_config(c)) is LOSS_MODULES[name]


def test_half_precision_inputs_give_a_float32_loss():
    z1, z2, labels = _views()
    out = modules.HardSupConLoss()(z1.half(), z2.half(), labels)
    assert out.dtype == torch.float32 and torch.isfinite(out)

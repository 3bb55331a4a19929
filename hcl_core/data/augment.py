"""The two-view augmentation: batched, per-sample random parameters, on any device.

:func:`augment` and :func:`two_views` draw every sample's random parameters at once and apply
them to the whole batch with a few dozen tensor operations (no loop over samples), on whatever
device the batch lives on. Each batch costs two random draws (an ``(N, K)`` table of per-sample
parameters and one per-pixel normal field); on small CPU batches the number of tensor
operations, not the number of pixels, sets the time, which is why the steps below are fused
where they can be (docs/DATASETS.md has the measurements).
"""

from __future__ import annotations

import functools
import math
import numbers
from statistics import NormalDist

import numpy as np
import torch
import torch.nn.functional as F

from .base import AUGMENTATIONS
from .twins import TWINS_NUISANCE_DIM, TWINS_NUISANCE_STD, TWINS_SIGNAL_DIM, TWINS_SPREAD

__all__ = ["AUGMENTATIONS", "MAX_STRENGTH", "augment", "two_views"]

#: Strengths above this are clamped to it (the config allows 0..2; 1 is the usual strong setting).
MAX_STRENGTH = 2.0

# Colour jitter as one 3x3 matrix per sample. In YIQ space (Y = luminance) a hue shift h rotates
# (I, Q) and saturation k scales it, so the RGB matrix is P0 + k cos(h) P1 + k sin(h) P2 with the
# constant matrices below. Saturation 0 gives the grayscale image, so random grayscale is k = 0.
_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_INV = np.linalg.inv(_YIQ)
_P0 = _YIQ_INV[:, :1] @ _YIQ[:1]
_P1 = _YIQ_INV[:, 1:] @ _YIQ[1:]
_P2 = _YIQ_INV[:, 1:] @ np.array([[0.0, -1.0], [1.0, 0.0]]) @ _YIQ[1:]
# As plain tuples: hashable keys for _const, which builds each device's tensor once.
_COLOUR_BASIS = tuple(tuple(float(v) for v in m.reshape(9)) for m in (_P0, _P1, _P2))  # 3 x (3x3 flattened)
_LUMA = tuple(float(v) for v in _YIQ[0])


def _check_strength(strength: float) -> float:
    if isinstance(strength, bool) or not isinstance(strength, numbers.Real) or not math.isfinite(strength) \
            or strength < 0:
        raise ValueError(f"augmentation strength must be a number from 0 (identical views) to 1 (strong; up to "
                         f"{MAX_STRENGTH:g} is accepted), got {strength!r}")
    return min(float(strength), MAX_STRENGTH)


def _rand(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device,
          normal: bool = False) -> torch.Tensor:
    """Uniform [0, 1) (or standard normal) float32 numbers on ``device``, drawn from ``generator``.

    A generator can only fill tensors on its own device: draw there, then move (a no-op when
    the generator lives where the batch does, as in training).
    """
    draw_on = generator.device if generator is not None else device
    fn = torch.randn if normal else torch.rand
    return fn(shape, generator=generator, device=draw_on).to(device)


@functools.lru_cache(maxsize=128)
def _const(values: tuple, device: torch.device) -> torch.Tensor:
    """A small constant float32 tensor, built once per device (strengths repeat every step)."""
    return torch.tensor(values, dtype=torch.float32, device=device)


def _param_table(u: torch.Tensor, ranges: tuple[tuple[float, float], ...]) -> torch.Tensor:
    """(N, K): column k of ``u`` (uniform in [0, 1)) mapped to uniform in ``ranges[k] = (lo, hi)``."""
    table = _const((tuple(lo for lo, _ in ranges), tuple(hi - lo for lo, hi in ranges)), u.device)
    return torch.addcmul(table[0], u, table[1])


@functools.lru_cache(maxsize=32)
def _base_grid(h: int, w: int, device: torch.device) -> torch.Tensor:
    """(3, H*W) rows x, y, 1 of the pixel centres in grid_sample's [-1, 1] coordinates (align_corners=False)."""
    ys = (torch.arange(h, dtype=torch.float32) * 2 + 1) / h - 1
    xs = (torch.arange(w, dtype=torch.float32) * 2 + 1) / w - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1), torch.ones(h * w)]).to(device)


@functools.lru_cache(maxsize=32)
def _pixel_centres(h: int, w: int, device: torch.device) -> torch.Tensor:
    """(2, max(H, W)): row centres / H and column centres / W in (0, 1), padded with 2 (never inside)."""
    out = torch.full((2, max(h, w)), 2.0)
    out[0, :h] = (torch.arange(h) + 0.5) / h
    out[1, :w] = (torch.arange(w) + 0.5) / w
    return out.to(device)


def _warp(x: torch.Tensor, theta: list[torch.Tensor], padding: str) -> torch.Tensor:
    """Resample each image through its own affine map.

    ``theta`` = [a, b, c, d, e, f], each (N,): output pixel (x, y) reads the input at
    (a x + b y + c, d x + e y + f), in [-1, 1] coordinates. One matrix product replaces
    ``F.affine_grid``, whose batched product took a third of the whole augmentation on small
    CPU batches.
    """
    n, _, h, w = x.shape
    rows = torch.stack(theta, dim=1).view(2 * n, 3)
    grid = (rows @ _base_grid(h, w, x.device)).view(n, 2, h, w).permute(0, 2, 3, 1).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def augment(
    x: torch.Tensor, strength: float, generator: torch.Generator | None = None, *, is_image: bool = True,
    kind: str | None = None,
) -> torch.Tensor:
    """One random view of each sample of a batch; returns a new tensor of ``x``'s shape and dtype.

    ``kind`` names the augmentation family (a key of :data:`AUGMENTATIONS`, as
    ``Dataset.augmentation`` holds it); left None, ``is_image`` and the shape decide: images
    ``(N, C, H, W)`` with values in ``[0, 1]`` (``is_image=True``), vectors ``(N, D)`` or signals
    ``(N, C, L)`` (``is_image=False``). Every sample gets its own random parameters; a seeded
    ``generator`` (on ``x``'s device, or the CPU) makes the views reproducible. ``strength`` 0
    returns an exact copy, 1 is strong, larger values (clamped at 2) are stronger still.

    * ``image``: a random affine warp (rotation, zoom, shift; for RGB a random resized crop with
      a horizontal flip and a small rotation), brightness/contrast jitter (RGB: also saturation,
      hue and random grayscale), light Gaussian noise, pixel dropout and a random erased
      rectangle; the output is clamped to ``[0, 1]``. Flips are used only for 3-channel images,
      because a flipped digit is another digit or none.
    * ``vector``: per-feature random scaling, Gaussian noise relative to the sample's RMS, and
      random feature dropout.
    * ``signal``: MNIST-1D's own generative transformations (:func:`_augment_signals`): circular
      shift, scale, linear trend (shear), correlated and i.i.d. noise.
    * ``twins``: the ``twins`` data set's nuisance coordinates redrawn, its signal coordinates
      jittered slightly (:func:`_augment_twins`).
    """
    s = _check_strength(strength)
    if not torch.is_floating_point(x):
        raise ValueError(f"augment needs a floating-point tensor, got {x.dtype}: convert with x.float() / 255")
    if kind is None:
        if is_image and x.dim() != 4:
            raise ValueError(f"images must be a batch of shape (N, C, H, W), got {tuple(x.shape)}; "
                             "for vectors or signals pass is_image=False, for one image use x[None]")
        if not is_image and x.dim() not in (2, 3):
            raise ValueError(f"vectors must be a batch of shape (N, D) and signals (N, C, L), got "
                             f"{tuple(x.shape)}; for images pass is_image=True")
        kind = "image" if is_image else "signal" if x.dim() == 3 else "vector"
    elif kind not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {kind!r}: choose one of {', '.join(AUGMENTATIONS)}")
    elif x.dim() != AUGMENTATIONS[kind] + 1:
        raise ValueError(f"{kind} augmentation needs a batch with {AUGMENTATIONS[kind] + 1} dimensions, got "
                         f"shape {tuple(x.shape)}")
    if s == 0.0 or len(x) == 0:
        return x.clone()
    if kind == "vector":
        out = _augment_vectors(x, s, generator)
    elif kind == "signal":
        out = _augment_signals(x, s, generator)
    elif kind == "twins":
        out = _augment_twins(x, s, generator)
    elif x.shape[1] == 3:
        out = _augment_rgb(x, s, generator)
    else:
        out = _augment_gray(x, s, generator)
    return out.to(x.dtype)


def two_views(
    x: torch.Tensor, strength: float, generator: torch.Generator | None = None, *, is_image: bool = True,
    kind: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent random views ``(x1, x2)`` of the batch ``x``, each of ``x``'s shape.

    Both views come from one :func:`augment` call on ``[x; x]``: half the operations of two
    calls, and still a different random draw for every row.
    """
    both = augment(torch.cat([x, x]), strength, generator, is_image=is_image, kind=kind)
    return both[: len(x)], both[len(x) :]


def _augment_vectors(x: torch.Tensor, s: float, generator: torch.Generator | None) -> torch.Tensor:
    n, d = x.shape
    r = _rand((2, n, d), generator, x.device)
    noise = _rand((n, d), generator, x.device, normal=True)
    # Noise relative to each sample's RMS, so it means the same at any data scale. At s = 1 on
    # unit-norm 32-d vectors: noise of norm ~0.3, features scaled by 0.8..1.2, 10 % dropped.
    rms = x.float().pow(2).mean(dim=1, keepdim=True).sqrt()
    scale = 1.0 + 0.2 * s * (2.0 * r[0] - 1.0)
    keep = r[1] >= min(0.1 * s, 0.5)
    return (x * scale + (0.3 * s) * rms * noise) * keep


#: Standard deviation, in samples, of the Gaussian that smooths the correlated noise: the
#: mnist1d package smooths with sigma 2 on its 72-sample grid, about 1.1 samples on the final 40.
_SMOOTH_SIGMA = 1.1


@functools.lru_cache(maxsize=8)
def _smoothing_kernel(device: torch.device) -> torch.Tensor:
    """(1, 1, 2r + 1) Gaussian taps scaled to unit L2 norm, so smoothed white noise keeps variance 1."""
    r = math.ceil(3.5 * _SMOOTH_SIGMA)
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / _SMOOTH_SIGMA) ** 2)
    return (k / k.norm()).view(1, 1, -1).to(device)


@functools.lru_cache(maxsize=8)
def _ramp(length: int, device: torch.device) -> torch.Tensor:
    """(L,) from -0.5 to 0.5: the linear trend the package's shear subtracts."""
    return torch.linspace(-0.5, 0.5, length, device=device)


def _augment_signals(x: torch.Tensor, s: float, generator: torch.Generator | None) -> torch.Tensor:
    """MNIST-1D's own transformations, batched, on standardised signals ``(N, C, L)``.

    Each sample ``x`` (channels share the parameters) becomes

    ``y[t] = a * x[(t - k) mod L] - b * (t / (L - 1) - 1/2) + s_c * smooth(n1)[t] + s_i * n2[t]``

    with, at strength s = 1: a circular shift ``k`` uniform in +-L/4 samples (fractional, linear
    interpolation; the package shifts circularly by up to 2/3 of its grid, so the class does not
    depend on where the digit sits), a scale ``a`` in 0.8..1.2 (the package's range), a trend ``b``
    in +-1.2 (half the package's shear in these standardised units), correlated noise of standard
    deviation ``s_c`` up to 0.3 and i.i.d. noise ``s_i`` up to 0.1 (``n1``, ``n2`` standard normal).
    """
    n, c, length = x.shape
    p = _param_table(_rand((n, 5), generator, x.device), (
        (-0.25 * length * s, 0.25 * length * s), (1 - 0.2 * s, 1 + 0.2 * s), (-1.2 * s, 1.2 * s),
        (0.0, 0.3 * s), (0.0, 0.1 * s),
    ))
    shift, scale, trend, corr_std, iid_std = p.unbind(1)
    # Output sample t reads input position t - k: floor and fraction, then two gathers.
    pos = torch.arange(length, device=x.device, dtype=p.dtype) - shift[:, None]
    lo = pos.floor()
    frac = (pos - lo)[:, None, :].to(x.dtype)
    i0 = lo.long().remainder(length)[:, None, :].expand(n, c, length)
    i1 = (i0 + 1).remainder(length)
    y = torch.lerp(x.gather(2, i0), x.gather(2, i1), frac)
    kernel = _smoothing_kernel(x.device)
    r = kernel.shape[-1] // 2
    white = _rand((n * c, 1, length + 2 * r), generator, x.device, normal=True)
    corr = F.conv1d(white, kernel).view(n, c, length)
    iid = _rand((n, c, length), generator, x.device, normal=True)
    y = y * scale.view(n, 1, 1).to(x.dtype) - trend.view(n, 1, 1).to(x.dtype) * _ramp(length, x.device)
    return y + corr * corr_std.view(n, 1, 1) + iid * iid_std.view(n, 1, 1)


#: Standard deviation of a twins view's jitter of the signal coordinates, as a share of the
#: within-class spread, at strength 1.
TWINS_JITTER = 0.5


def _augment_twins(x: torch.Tensor, s: float, generator: torch.Generator | None) -> torch.Tensor:
    """A view of ``twins`` vectors ``(N, 16 + 48)`` (:mod:`hcl_core.data.twins`).

    Signal coordinates: ``p (x_s + TWINS_JITTER * sigma_w * s * e)`` with a fresh polarity ``p = +-1``
    (flipped with probability ``min(s, 1) / 2``: a fair coin at s >= 1). Nuisance coordinates:
    ``rho x_n + sqrt(1 - rho^2) sigma_n n`` with ``rho = max(0, 1 - s)``: redrawn from their own
    distribution at s >= 1, partly kept below, and at every strength still ``N(0, sigma_n^2)``
    per coordinate (``e``, ``n`` standard normal).
    """
    d = TWINS_SIGNAL_DIM
    if x.shape[1] != d + TWINS_NUISANCE_DIM:
        raise ValueError(f"twins augmentation needs vectors of {d} signal and {TWINS_NUISANCE_DIM} nuisance "
                         f"coordinates, got shape {tuple(x.shape)}")
    noise = _rand(tuple(x.shape), generator, x.device, normal=True).to(x.dtype)
    rho = max(0.0, 1.0 - s)
    flip = _rand((len(x), 1), generator, x.device) < 0.5 * min(s, 1.0)
    signal = (x[:, :d] + (TWINS_JITTER * TWINS_SPREAD * s) * noise[:, :d]) * (1.0 - 2.0 * flip.to(x.dtype))
    nuisance = rho * x[:, d:] + (math.sqrt(1.0 - rho * rho) * TWINS_NUISANCE_STD) * noise[:, d:]
    return torch.cat([signal, nuisance], dim=1)


def _erase_ranges(s: float) -> tuple[tuple[float, float], ...]:
    """Columns of the erasing parameters: half the rectangle's height and width as fractions of
    the image's (sides of 14..40 %, 2..16 % of the area at s = 1), its centre (row, column, as
    fractions), and a coin deciding whether the sample is erased at all."""
    half = (0.07, 0.07 + 0.13 * s)
    return half, half, (0.0, 1.0), (0.0, 1.0), (0.0, 1.0)


def _noise_dropout_erase(y: torch.Tensor, s: float, generator: torch.Generator | None, sigma: torch.Tensor,
                         erase: torch.Tensor) -> torch.Tensor:
    """Add Gaussian noise, drop pixels, zero one rectangle in some samples, clamp to [0, 1].

    ``sigma`` (N,) is each sample's noise level, ``erase`` (N, 5) the columns of
    :func:`_erase_ranges`. The noise is one field per pixel shared by the channels (luminance
    noise: on the CPU the normal draw is the most expensive single step), and the dropout
    reuses it: a pixel is dropped where ``|noise| >= z`` with ``P(|N(0, 1)| >= z) = p``. The noise
    of a dropped pixel is never seen; kept pixels get noise truncated at ``|n| < z`` (z = 2.2 at
    s = 1), a negligible change for one draw saved.
    """
    n, _, h, w = y.shape
    p_drop = min(0.03 * s, 0.3)  # 3 % of the pixels at s = 1
    noise = _rand((n, 1, h, w), generator, y.device, normal=True)
    drop = noise.abs() >= NormalDist().inv_cdf(1.0 - p_drop / 2.0)
    y = y.addcmul_(noise, sigma.view(n, 1, 1, 1))
    # Erasing, Cutout-style (the centre may lie near a border, clipping the rectangle), as one
    # mask for both axes: |pixel centre - rectangle centre| < half side, on (N, 2, max(H, W)).
    half = erase[:, 0:2] * (erase[:, 4:5] < 0.5 * min(s, 1.0))  # half the samples at s = 1; size 0 = none
    inside = (_pixel_centres(h, w, y.device) - erase[:, 2:4, None]).abs() < half[:, :, None]
    drop |= (inside[:, 0, :h, None] & inside[:, 1, None, :w])[:, None]
    return y.masked_fill_(drop, 0.0).clamp_(0.0, 1.0)


def _augment_gray(x: torch.Tensor, s: float, generator: torch.Generator | None) -> torch.Tensor:
    """Digits-like images (any channel count but 3): no flip, black padding, modest geometry.

    At s = 1: rotation +-15 deg, zoom 0.85..1.15, shift +-15 % of the side (+-1.2 px on 8x8,
    +-4 px on 28x28); beyond that a 6 turns into a 9 or leaves the frame. Brightness and
    contrast 0.7..1.3, noise sigma up to 0.05.
    """
    n = len(x)
    rot, shift = math.radians(15.0) * s, 0.3 * s  # [-1, 1] spans the side, so 0.3 = 15 %
    p = _param_table(_rand((n, 12), generator, x.device), (
        (-rot, rot), (1 - 0.15 * s, 1 + 0.15 * s), (-shift, shift), (-shift, shift),
        (1 - 0.3 * s, 1 + 0.3 * s), (1 - 0.3 * s, 1 + 0.3 * s), (0.0, 0.05 * s), *_erase_ranges(s),
    ))
    angle, zoom, tx, ty, bright, contrast, sigma = p[:, :7].unbind(1)
    a, b = angle.cos() / zoom, angle.sin() / zoom
    y = _warp(x, [a, -b, tx, b, a, ty], "zeros")  # zeros: the digits' background is black
    # brightness b and contrast c around the sample mean m: y -> b c y + b (1 - c) m
    gain = bright * contrast
    bias = (bright - gain) * y.mean(dim=(1, 2, 3))
    y = torch.addcmul(bias.view(n, 1, 1, 1), y, gain.view(n, 1, 1, 1))
    return _noise_dropout_erase(y, s, generator, sigma, p[:, 7:])


def _augment_rgb(x: torch.Tensor, s: float, generator: torch.Generator | None) -> torch.Tensor:
    """Natural colour images, SimCLR-style.

    At s = 1: random resized crop of 20..100 % of the area with aspect 3/4..4/3, horizontal flip
    for half the samples, rotation +-10 deg; colour jitter for 80 % of the samples (brightness,
    contrast, saturation 0.6..1.4, hue +-0.1 turn), grayscale for 20 %; then noise and erasing.
    """
    n, _, h, w = x.shape
    s1 = min(s, 1.0)  # probabilities saturate at strength 1
    rot, lo_area, hue = math.radians(10.0) * s, max(0.1, 1 - 0.8 * s), 0.2 * math.pi * s
    aspect = math.log(4 / 3) * s1
    jit = (1 - 0.4 * s, 1 + 0.4 * s)  # >= 0.2 for s <= 2
    p = _param_table(_rand((n, 18), generator, x.device), (
        (-rot, rot), (lo_area, 1.0), (-aspect, aspect), (-1.0, 1.0), (-1.0, 1.0), (0.0, 1.0),
        (0.0, 1.0), jit, jit, jit, (-hue, hue), (0.0, 1.0), (0.0, 0.05 * s), *_erase_ranges(s),
    ))
    angle, area, log_aspect, u_tx, u_ty, u_flip, u_jitter = p[:, :7].unbind(1)
    # Crop of relative size (sx, sy) inside the image, flipped for some: output x reads input sx x + tx.
    ratio = log_aspect.exp()
    sx, sy = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)
    tx, ty = (1.0 - sx) * u_tx, (1.0 - sy) * u_ty
    sx = torch.where(u_flip < 0.5 * s1, -sx, sx)
    cos, sin = angle.cos(), angle.sin()
    y = _warp(x, [sx * cos, -sx * sin, tx, sy * sin, sy * cos, ty], "reflection")  # mirrored edges, not black

    # Colour: 20 % of the samples (at s = 1) keep brightness, contrast, saturation and hue as they are.
    jitter = torch.where((u_jitter >= 0.8 * s1)[:, None], _const((1.0, 1.0, 1.0, 0.0), x.device), p[:, 7:11])
    bright, contrast, sat, shift = jitter.unbind(1)
    sat = sat * (p[:, 11] >= 0.2 * s1)  # grayscale = saturation 0
    coef = torch.stack([torch.ones_like(sat), sat * shift.cos(), sat * shift.sin()], dim=1)  # (n, 3)
    gain = bright * contrast
    mat = (coef * gain[:, None]) @ _const(_COLOUR_BASIS, x.device)  # (n, 9)
    # Contrast around the mean luminance, which the colour matrix (before the gain) leaves unchanged.
    mean_luma = y.mean(dim=(2, 3)) @ _const(_LUMA, x.device)
    bias = ((bright - gain) * mean_luma).view(n, 1, 1)
    y = torch.bmm(mat.view(n, 3, 3).to(y.dtype), y.reshape(n, 3, h * w)).add_(bias).view(n, 3, h, w)
    return _noise_dropout_erase(y, s, generator, p[:, 12], p[:, 13:])

"""Random resized crops from large images to a smaller training size, batched, as the papers use them.

SimCLR, DCL and HCL train on random resized crops: a random part of the image (8..100 % of its
area, aspect ratio 3/4..4/3) resized to the training size, flipped for half the images.
HCL's STL-10 setup (``image/utils.py`` of github.com/joshr17/HCL: ``RandomResizedCrop(32)`` on
the 96-px images of ``train+unlabeled``; the kNN evaluation on the full 96-px images) crops
*before* it shrinks, so a crop keeps the detail of the 96-px original, where resizing the data
set to 32 px first and cropping that would upsample a blurred 14-px patch.

:func:`random_resized_crop` does this for a whole batch at once (one affine resampling, no loop
over images). Shrinking by up to 3x (96 -> 32) would alias with plain bilinear sampling, so it
samples a ``k`` times finer grid and averages ``k x k`` blocks (``k`` = the shrink factor,
rounded up, at most 4): close to torchvision's antialiased resize.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["random_resized_crop"]


def random_resized_crop(
    x: torch.Tensor,
    size: int,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One random resized crop per image: (N, C, H, W) uint8 or float in [0, 1] -> float32 (N, C, size, size).

    Each image gets its own area fraction ``a ~ U(scale)`` and log aspect ratio
    ``log r ~ U(log ratio)``; the crop is ``sqrt(a r)`` of the width by ``sqrt(a / r)`` of the
    height (each at most the whole side), placed uniformly inside the image, and mirrored
    left-right with probability ``flip``. A seeded ``generator`` (on ``x``'s device or the CPU)
    makes the crops reproducible. uint8 input is converted to float32 / 255 on the way.
    """
    if x.dim() != 4:
        raise ValueError(f"images must be a batch of shape (N, C, H, W), got {tuple(x.shape)}")
    if not (0 < scale[0] <= scale[1] <= 1) or not (0 < ratio[0] <= ratio[1]) or not 0 <= flip <= 1 or size < 1:
        raise ValueError(f"need 0 < scale[0] <= scale[1] <= 1, 0 < ratio[0] <= ratio[1], 0 <= flip <= 1 and "
                         f"size >= 1; got scale={scale}, ratio={ratio}, flip={flip}, size={size}")
    n, _, h, w = x.shape
    src = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    if n == 0:
        return src.new_zeros((0, x.shape[1], size, size))
    draw_on = generator.device if generator is not None else x.device
    u = torch.rand((n, 5), generator=generator, device=draw_on).to(x.device)
    area = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1]
    # Half-sides as fractions of the image, in grid_sample's [-1, 1] coordinates (the whole side = 1).
    fx = (area * log_r.exp()).sqrt().clamp(max=1.0)
    fy = (area / log_r.exp()).sqrt().clamp(max=1.0)
    cx = (1.0 - fx) * (2.0 * u[:, 2] - 1.0)
    cy = (1.0 - fy) * (2.0 * u[:, 3] - 1.0)
    sx = torch.where(u[:, 4] < flip, -fx, fx)
    zero = torch.zeros_like(fx)
    theta = torch.stack([torch.stack([sx, zero, cx], 1), torch.stack([zero, fy, cy], 1)], 1)
    k = max(1, min(4, math.ceil(max(h, w) / size)))
    grid = F.affine_grid(theta, [n, x.shape[1], size * k, size * k], align_corners=False)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return F.avg_pool2d(out, k) if k > 1 else out

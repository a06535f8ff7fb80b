"""Images that are not digits: what the judge learns to reject and is tested to reject.

A prompt-fidelity figure that accepts scribbles overstates every guided method (guidance at
large scales breaks images long before the judge's argmax stops naming a digit). The judge
therefore has an 11th class, "not a digit", trained on the kinds below, and is evaluated on
fresh draws of them (other seeds) and on kinds it never saw in training.

Every generator returns float32 images ``(n, 1, 16, 16)`` in [0, 1], white strokes on black
(the convention of :mod:`.digits_data`), and is deterministic given its ``torch.Generator``.

- :func:`uniform_noise`: i.i.d. uniform pixels, sparse salt, smooth blobs, blank images;
- :func:`random_strokes`: 2-5 random quadratic Bezier strokes (a scribble);
- :func:`digit_blends`: two digits of different classes superimposed or averaged;
- :func:`corrupted_digits`: real digits shuffled in tiles, scribbled over or torn apart.

Used by :func:`sparke_lab.models.judge.train_judge` and in notebook
08_guided_generation_digits (the rejecting judge).
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn.functional as F

from .digits_data import IMAGE_SIZE

#: The kinds of "not a digit" images, by name (what :func:`not_a_digit` accepts).
KINDS = ("noise", "strokes", "blends", "corrupted")
#: The kinds the judge trains on and their shares. Blends are held out: two superimposed
#: digits often look like a third (3 + 1 -> an 8-ish shape), and training on them made the
#: judge reject 13 % of real held-out digits (mostly 8s and 3s); they are reported instead.
TRAINING_MIX = {"noise": 0.3, "strokes": 0.4, "corrupted": 0.3}
TRAINING_CORRUPTIONS = ("tiles", "torn")


def _low_pass(x: torch.Tensor) -> torch.Tensor:
    """8x8 area-average then bilinear back to 16x16: the look of the upsampled sklearn digits."""
    small = F.avg_pool2d(x, 2)
    return F.interpolate(small, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear",
                         align_corners=False).clamp(0, 1)


def _rand(g: torch.Generator, *shape) -> torch.Tensor:
    return torch.rand(*shape, generator=g)


def uniform_noise(n: int, g: torch.Generator) -> torch.Tensor:
    """Noise images: a quarter each of i.i.d. uniform pixels, sparse salt (5-40 % of pixels
    lit), smooth blobs (8x8 uniform noise upsampled, thresholded at a random level) and
    near-blank images (a constant level below 0.3 plus faint noise)."""
    kind = torch.randint(0, 4, (n,), generator=g)
    S = IMAGE_SIZE
    out = torch.empty(n, 1, S, S)
    iid = _rand(g, n, 1, S, S)
    salt = (_rand(g, n, 1, S, S) < (0.05 + 0.35 * _rand(g, n, 1, 1, 1))).float()
    blobs = F.interpolate(_rand(g, n, 1, 8, 8), size=(S, S), mode="bilinear", align_corners=False)
    level = 0.3 + 0.4 * _rand(g, n, 1, 1, 1)
    blobs = ((blobs - level) / (1 - level)).clamp(0, 1)
    blank = 0.3 * _rand(g, n, 1, 1, 1) + 0.05 * _rand(g, n, 1, S, S)
    for k, src in enumerate((iid, salt, blobs, blank)):
        sel = kind == k
        out[sel] = src[sel]
    return out.clamp(0, 1)


def _render_curves(ctrl: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """Rasterise quadratic Bezier curves with soft edges.

    ``ctrl`` (n, k, 3, 2): k curves of 3 control points (pixel coordinates) per image;
    ``width`` (n, k) stroke widths in pixels. Returns (n, 1, S, S), the max over curves.
    """
    n, k = ctrl.shape[:2]
    S = IMAGE_SIZE
    s = torch.linspace(0, 1, 32).view(1, 1, -1, 1)
    p0, p1, p2 = ctrl[:, :, 0:1], ctrl[:, :, 1:2], ctrl[:, :, 2:3]
    pts = (1 - s) ** 2 * p0 + 2 * (1 - s) * s * p1 + s ** 2 * p2  # (n, k, 32, 2)
    yy, xx = torch.meshgrid(torch.arange(S) + 0.5, torch.arange(S) + 0.5, indexing="ij")
    grid = torch.stack([xx, yy], -1).view(1, 1, 1, S * S, 2)
    d = (pts.unsqueeze(3) - grid).norm(dim=-1).amin(2)  # (n, k, S*S): distance to each curve
    ink = (1 - (d - width.unsqueeze(-1) / 2).clamp(min=0) / 0.8).clamp(0, 1)
    return ink.amax(1).view(n, 1, S, S)


def random_strokes(n: int, g: torch.Generator, min_strokes: int = 2,
                   max_strokes: int = 5) -> torch.Tensor:
    """Scribbles: ``min_strokes``-``max_strokes`` random quadratic Bezier strokes per image,
    control points uniform in the central 12x12 pixels, widths 1.2-2.6 px; half of them
    low-passed like the real digits (8x8 then bilinear up)."""
    if not 1 <= min_strokes <= max_strokes:
        raise ValueError(f"need 1 <= min_strokes <= max_strokes, got {min_strokes}, {max_strokes}")
    k = max_strokes
    ctrl = 2 + 12 * _rand(g, n, k, 3, 2)
    width = 1.2 + 1.4 * _rand(g, n, k)
    count = torch.randint(min_strokes, max_strokes + 1, (n,), generator=g)
    width = torch.where(torch.arange(k).view(1, -1) < count.view(-1, 1), width,
                        torch.zeros_like(width) - 10)  # a negative width draws nothing
    x = _render_curves(ctrl, width)
    soft = _rand(g, n) < 0.5
    if soft.any():
        x[soft] = _low_pass(x[soft])
    return x


def digit_blends(images: torch.Tensor, labels: torch.Tensor, n: int,
                 g: torch.Generator) -> torch.Tensor:
    """Two real digits of different classes in one image: half superimposed (pixelwise max),
    half averaged with a weight in [0.35, 0.65] and rescaled to full intensity."""
    i = torch.randint(0, len(images), (n,), generator=g)
    j = torch.randint(0, len(images), (n,), generator=g)
    for _ in range(20):  # redraw partners of the same class
        same = labels[i] == labels[j]
        if not same.any():
            break
        j[same] = torch.randint(0, len(images), (int(same.sum()),), generator=g)
    j = torch.where(labels[i] == labels[j], (j + 1) % len(images), j)
    a, b = images[i], images[j]
    w = 0.35 + 0.3 * _rand(g, n, 1, 1, 1)
    mean = w * a + (1 - w) * b
    mean = mean / mean.amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-6)
    sup = _rand(g, n) < 0.5
    out = torch.where(sup.view(-1, 1, 1, 1), torch.maximum(a, b), mean)
    return out.clamp(0, 1)


def _tile_shuffle(x: torch.Tensor, g: torch.Generator, tile: int = 4) -> torch.Tensor:
    n, _, S, _ = x.shape
    t = S // tile
    tiles = x.view(n, 1, t, tile, t, tile).permute(0, 2, 4, 1, 3, 5).reshape(n, t * t, 1, tile, tile)
    perm = torch.argsort(_rand(g, n, t * t), dim=1)
    tiles = torch.gather(tiles, 1, perm.view(n, t * t, 1, 1, 1).expand_as(tiles))
    return tiles.view(n, t, t, 1, tile, tile).permute(0, 3, 1, 4, 2, 5).reshape(n, 1, S, S)


def _tear(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A strong random displacement field (several pixels, smooth at 4x4): the digit falls apart."""
    n = len(x)
    flow = (_rand(g, n, 2, 4, 4) - 0.5) * 2.2
    flow = F.interpolate(flow, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bicubic", align_corners=False)
    base = F.affine_grid(torch.eye(2, 3).expand(n, 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, base + flow.permute(0, 2, 3, 1), align_corners=False).clamp(0, 1)


def _scribble_over(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return torch.maximum(x, random_strokes(len(x), g, 2, 3))


def corrupted_digits(images: torch.Tensor, n: int, g: torch.Generator,
                     kinds: Tuple[str, ...] = ("tiles", "scribbled", "torn")) -> torch.Tensor:
    """Real digits broken beyond reading, in equal shares of ``kinds``: ``"tiles"`` (shuffled
    in 4x4 tiles), ``"scribbled"`` (2-3 random strokes drawn over) and ``"torn"`` (a strong
    smooth displacement field)."""
    breakers = {"tiles": _tile_shuffle, "scribbled": _scribble_over, "torn": _tear}
    if not kinds or any(k not in breakers for k in kinds):
        raise ValueError(f"kinds must be a non-empty subset of {tuple(breakers)}, got {kinds}")
    i = torch.randint(0, len(images), (n,), generator=g)
    x = images[i].clone()
    kind = torch.randint(0, len(kinds), (n,), generator=g)
    out = torch.empty_like(x)
    for k, brk in enumerate(breakers[name] for name in kinds):
        sel = kind == k
        if sel.any():
            out[sel] = brk(x[sel], g)
    return out.clamp(0, 1)


def not_a_digit(kind: str, n: int, seed: int = 0,
                digits: Tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """``n`` images of one kind (see :data:`KINDS`) from ``seed``; blends and corrupted digits
    need real ``digits`` = (images (N,1,16,16), labels (N,))."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {KINDS}")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    g = torch.Generator().manual_seed(int(seed))
    if kind == "noise":
        return uniform_noise(n, g)
    if kind == "strokes":
        return random_strokes(n, g)
    if digits is None:
        raise ValueError(f"kind {kind!r} needs real digits: pass digits=(images, labels)")
    images, labels = digits
    if kind == "blends":
        return digit_blends(images, torch.as_tensor(labels), n, g)
    return corrupted_digits(images, n, g)


def mixed_negatives(n: int, g: torch.Generator, images: torch.Tensor,
                    labels: torch.Tensor, weights: Dict[str, float] | None = None) -> torch.Tensor:
    """A training batch of ``n`` not-a-digit images, the kinds mixed by ``weights``
    (default: noise .2, strokes .3, blends .25, corrupted .25)."""
    weights = weights or TRAINING_MIX
    p = torch.tensor([weights.get(k, 0.0) for k in KINDS])
    kind = torch.multinomial(p / p.sum(), n, replacement=True, generator=g)
    out = torch.empty(n, 1, IMAGE_SIZE, IMAGE_SIZE)
    for k, name in enumerate(KINDS):
        sel = kind == k
        m = int(sel.sum())
        if not m:
            continue
        if name == "noise":
            out[sel] = uniform_noise(m, g)
        elif name == "strokes":
            out[sel] = random_strokes(m, g)
        elif name == "blends":
            out[sel] = digit_blends(images, labels, m, g)
        else:
            out[sel] = corrupted_digits(images, m, g, TRAINING_CORRUPTIONS)
    return out

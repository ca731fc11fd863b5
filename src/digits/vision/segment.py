"""Cutting a picture of several digits into one picture per digit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from digits.vision.normalize import Box, analyze, gap, ink_box, ink_crop, is_digit_sized, union

if TYPE_CHECKING:
    from numpy.typing import NDArray


@dataclass(frozen=True)
class Segment:
    """One digit cut out of a picture by :func:`split_digits`.

    ``box`` is ``(x0, y0, x1, y1)`` in the picture's pixels (x1, y1
    exclusive).  ``image`` is that digit alone, white ink on black with the
    other digits' ink and the noise removed, padded to a square with a margin:
    pass it to :func:`to_mnist`, or save it to see what the model was shown.
    """

    box: Box
    image: Image.Image



def _groups(ink: InkMap) -> list[list[int]]:
    """Group ink components into digits.

    A handwritten digit often falls apart into pieces (a pen lifted, a faint
    joint).  Pieces belong together when their x-ranges overlap by at least
    half the narrower one's width and they are vertically close (pieces of
    one digit stack, neighbouring digits stand side by side), or when a piece
    is small (under half the typical digit's height) and lies near a bigger
    group.  Small groups near nothing are dropped as noise.
    """
    n = len(ink.boxes)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i: int, j: int) -> None:
        parent[root(i)] = root(j)

    b = ink.boxes
    for i in range(n):
        for j in range(i + 1, n):
            overlap = min(b[i][2], b[j][2]) - max(b[i][0], b[j][0])
            narrower = min(b[i][2] - b[i][0], b[j][2] - b[j][0])
            taller = max(b[i][3] - b[i][1], b[j][3] - b[j][1])
            vgap = max(b[i][1], b[j][1]) - min(b[i][3], b[j][3])
            if overlap >= 0.5 * narrower and vgap <= 0.5 * taller:
                join(i, j)

    def collect() -> list[list[int]]:
        found: dict[int, list[int]] = {}
        for i in range(n):
            found.setdefault(root(i), []).append(i)
        return list(found.values())

    groups = collect()
    heights = [(union([b[i] for i in g])[3] - union([b[i] for i in g])[1]) for g in groups]
    typical = float(np.median(heights))
    small = [g for g, hgt in zip(groups, heights) if hgt < 0.5 * typical]
    big = [g for g, hgt in zip(groups, heights) if hgt >= 0.5 * typical]
    for g in small:
        box = union([b[i] for i in g])
        if not big:
            break
        nearest = min(big, key=lambda other: gap(box, union([b[i] for i in other])))
        other_box = union([b[i] for i in nearest])
        if gap(box, other_box) <= 0.3 * (other_box[3] - other_box[1]):
            join(g[0], nearest[0])
    groups = collect()
    keep = []
    for g in groups:
        box = union([b[i] for i in g])
        if (box[3] - box[1]) >= 0.3 * typical or (box[2] - box[0]) >= 0.3 * typical:
            keep.append(g)
    return sorted(keep, key=lambda g: union([b[i] for i in g])[0])


def split_digits(image: Image.Image | np.ndarray) -> list[Segment]:
    """Cut a picture of a row of digits into one :class:`Segment` per digit, left to right.

    Uses the same ink analysis as :func:`to_mnist`, then connected components
    of the ink, grouped into digits (see :func:`_groups`: broken strokes are
    put back together, specks dropped).  Returns an empty list when there is
    no ink.  Digits that touch each other come out as one segment; digits on
    several lines are not supported (pieces stacked vertically are merged).
    """
    ink = analyze(image)
    if not ink.boxes:
        return []
    segments = []
    for group in _groups(ink):
        box = union([ink.boxes[i] for i in group])
        if not is_digit_sized(box, ink.level.shape):
            continue
        patch = ink_crop(ink, group, ink_box(ink, group))
        segments.append(Segment(box=box, image=_pad_square(patch)))
    return segments


def _pad_square(patch: NDArray[np.float32]) -> Image.Image:
    """Centre ink on a black square with a margin, so the crop is mostly paper
    (to_mnist reads the majority of a picture as paper)."""
    h, w = patch.shape
    side = int(round(max(h, w) * 1.4)) + 2
    out = np.zeros((side, side), dtype=np.float32)
    top, left = (side - h) // 2, (side - w) // 2
    out[top : top + h, left : left + w] = patch
    return Image.fromarray(np.rint(out * 255.0).astype(np.uint8))



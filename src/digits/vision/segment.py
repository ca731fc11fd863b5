"""Cutting a picture of numbers into one picture per digit: rows, digits, and digits that touch.

1. **Rows.**  The ink's horizontal projection falls to nothing between lines
   of writing; bands of ink are the rows (a band much shorter than the
   others is a stray piece of the nearest row, such as a 5's detached bar),
   read top to bottom (:func:`split_rows`).
2. **Digits.**  Within a row, connected pieces of ink are grouped into
   digits (:func:`_groups`: a pen lifted mid-digit leaves pieces that stack
   vertically; neighbours stand side by side), left to right.
3. **Touching digits.**  A group may still hold several digits that touch
   or overlap.  :func:`cut_paths` proposes where to cut it: the least-ink
   paths from its top to its bottom (a "seam", found by dynamic
   programming, which bends around a stroke that leans into its neighbour
   instead of slicing it), and :func:`cut` makes the pieces.  Which cuts to
   make is decided by recognition (:func:`digits.inference.read_number`
   keeps the split the model is most confident in), since only a model knows
   whether two strokes are one 0 or the 1 and 0 of a 10.

What is small is judged against the other marks, not the picture: a row of
thirty digits on a wide photo keeps every one of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from digits.vision.normalize import Box, InkMap, analyze, gap, ink_box, ink_crop, union

if TYPE_CHECKING:
    from numpy.typing import NDArray

MIN_DIGIT_PIXELS = 8
"""Ink shorter than this many pixels is not a digit, whatever else is on the picture..."""
DUST = 0.01
"""...nor is ink shorter than this share of the picture's longer side (a speck, a remnant of a
printed line, a dash): a row of seventy digits across the picture still has digits taller."""
HAIRLINE = 0.03
"""Ink whose strokes are thinner than this share of its length is a printed line (see :func:`_hairline`)."""
ROW_GAP = 0.15
"""Bands of ink closer than this share of the typical band's height are one row."""
ROW_TURN = 4.0
"""Rows of writing are looked for up to this many degrees off horizontal (a page turned in the photo)."""
STRAY_BAND = 0.4
"""A band shorter than this share of the tallest one is a stray piece of the nearest row."""
SEAM_SLOPE = 0.3
"""The ink a cut may save by bending one pixel sideways (ink is 0..1 a pixel): a cut follows a
gap around a leaning stroke, but does not wander off through the paper."""
EDGE = 0.05
"""Ink within this share of the picture's shorter side from its frame is at the edge, where the
frame cuts printed lines and their ends and crossings are too short to be found as lines..."""
EDGE_REMNANT = 0.5
"""...so ink at the edge shorter than this share of the other digits' median height is a remnant,
not a digit..."""
EDGE_ALONE = 0.15
"""...or, with no other digit on the picture (a page of lines alone), shorter than this share of
the picture's shorter side.  A tight crop's digits touch the frame too, but fill it."""
MIN_CUT_SPACING = 0.12
"""Candidate cuts are at least this share of the row's height apart (a narrow 1 is about 0.15)."""


@dataclass(frozen=True)
class Segment:
    """A digit (or a group of touching digits) cut out of a picture by :func:`split_rows`.

    ``box`` is ``(x0, y0, x1, y1)`` in the picture's pixels (x1, y1
    exclusive).  ``image`` is that ink alone, white on black with the other
    digits' ink and the noise removed, padded to a square with a margin:
    pass it to :func:`to_mnist`, or save it to see what the model was shown.
    ``ink`` is the same crop unpadded (0 paper .. 1 ink), which :func:`cut`
    splits.
    """

    box: Box
    image: Image.Image
    ink: NDArray[np.float32] | None = field(default=None, repr=False, compare=False)


def _groups(ink: InkMap, members: list[int]) -> list[list[int]]:
    """Group ink components (the indices `members` into ``ink.boxes``: one row) into digits, left to right.

    A handwritten digit often falls apart into pieces (a pen lifted, a faint
    joint).  Pieces belong together when their x-ranges overlap by at least
    half the narrower one's width and they are vertically close (pieces of
    one digit stack, neighbouring digits stand side by side), or when a piece
    is small (under half the typical digit's height) and lies within half a digit of a bigger
    group.  Small groups near nothing are dropped as noise.
    """
    n = len(members)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i: int, j: int) -> None:
        parent[root(i)] = root(j)

    b = [ink.boxes[i] for i in members]
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
        if gap(box, other_box) <= 0.5 * (other_box[3] - other_box[1]):
            join(g[0], nearest[0])
    groups = collect()
    keep = []
    for g in groups:
        box = union([b[i] for i in g])
        if (box[3] - box[1]) >= 0.3 * typical or (box[2] - box[0]) >= 0.3 * typical:
            keep.append(g)
    return [[members[i] for i in g] for g in sorted(keep, key=lambda g: union([b[i] for i in g])[0])]


def split_rows(image: Image.Image | np.ndarray) -> list[list[Segment]]:
    """Cut a picture of numbers into rows (top to bottom) of :class:`Segment`\ s (left to right).

    Uses the same ink analysis as :func:`to_mnist` (printed lines removed),
    then the rows and groups described in the module docstring.  Digits that
    touch come out as one wide segment: see :func:`cut_paths`.  Returns an
    empty list when there is no ink.
    """
    ink = analyze(image)
    if not ink.boxes:
        return []
    dust = max(MIN_DIGIT_PIXELS, DUST * max(ink.level.shape))
    rows = []
    for members in _rows(ink):
        row = []
        for group in _groups(ink, members):
            box = union([ink.boxes[i] for i in group])
            if box[3] - box[1] < dust:
                continue
            patch = ink_crop(ink, group, ink_box(ink, group))
            if _hairline(patch):
                continue
            row.append(Segment(box=box, image=pad_square(patch), ink=patch))
        rows.append(row)
    return [row for row in _without_edge_remnants(rows, ink.level.shape) if row]


def _without_edge_remnants(rows: list[list[Segment]], shape: tuple[int, int]) -> list[list[Segment]]:
    """`rows` less the small pieces of ink at the picture's edge (see :data:`EDGE`)."""
    h, w = shape
    margin = EDGE * min(h, w)

    def at_edge(box: Box) -> bool:
        return min(box[0], box[1], w - box[2], h - box[3]) <= margin

    inside = [s.box[3] - s.box[1] for row in rows for s in row if not at_edge(s.box)]
    least = EDGE_REMNANT * float(np.median(inside)) if inside else EDGE_ALONE * min(h, w)
    return [[s for s in row if not (at_edge(s.box) and s.box[3] - s.box[1] < least)] for row in rows]


def _hairline(patch: NDArray[np.float32]) -> bool:
    """Is this ink one fine straight line (what is left of a printed line or box), not a pen's digit?

    Its mean stroke width (ink area over its longer side, exact for a 1) is
    under :data:`HAIRLINE` of its length: printed rulings are 1..5 pixels
    wide at sizes where a pen's 1 is 8..20 (MNIST's strokes are a tenth of
    the digit's height).
    """
    side = max(patch.shape)
    return np.count_nonzero(patch > 0.5) / side < HAIRLINE * side


def split_digits(image: Image.Image | np.ndarray) -> list[Segment]:
    """Every segment of :func:`split_rows`, row after row: the digits of a picture in reading order."""
    return [segment for row in split_rows(image) for segment in row]


def _along(boxes: list[Box], slope: float, shape: tuple[int, int]) -> tuple[list[Box], NDArray[np.bool_]]:
    """The boxes moved up or down by their centre's column times `slope` (kept within 0.. by a lift
    of the picture's width times the slope), and which rows they cover then."""
    h, w = shape
    lift = int(np.ceil(abs(slope) * w))
    shifted = []
    for x0, y0, x1, y1 in boxes:
        move = lift - slope * (x0 + x1) / 2
        shifted.append((x0, int(round(y0 + move)), x1, int(round(y1 + move))))
    profile = np.zeros(h + 2 * lift + 1, dtype=np.int64)
    for _, y0, _, y1 in shifted:
        profile[y0] += 1
        profile[y1] -= 1
    return shifted, np.cumsum(profile)[:-1] > 0


def _row_slope(boxes: list[Box], shape: tuple[int, int]) -> float:
    """The slope (rows per column) along which the rows of writing run: a turned page turns them.

    Of the slopes up to :data:`ROW_TURN` degrees, the one along which the
    boxes cover the fewest rows (:func:`_along`) wins, the smallest one among
    those within 1% of the picture's height of it, so writing that runs level
    stays level.
    """
    slopes = np.tan(np.radians(np.arange(-ROW_TURN, ROW_TURN + 1e-9, 0.5)))
    covered = np.array([_along(boxes, float(slope), shape)[1].sum() for slope in slopes])
    near = np.flatnonzero(covered <= covered.min() + 0.01 * shape[0])
    return float(slopes[near[np.argmin(np.abs(slopes[near]))]])


def _rows(ink: InkMap) -> list[list[int]]:
    """The components of each row of writing (indices into ``ink.boxes``), top to bottom.

    Rows are measured along the slope of :func:`_row_slope`, so the rows of a
    turned page do not run into each other.
    """
    shape = ink.level.shape
    shifted, covered = _along(ink.boxes, _row_slope(ink.boxes, shape), shape)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], covered.astype(np.int8), [0]])))
    bands = [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2])]
    typical = float(np.median([b - a for a, b in bands]))
    merged = [bands[0]]
    for a, b in bands[1:]:
        if a - merged[-1][1] < ROW_GAP * typical:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    tallest = max(b - a for a, b in merged)
    main = [band for band in merged if band[1] - band[0] >= STRAY_BAND * tallest]

    def row_of(box: Box) -> int:
        middle = (box[1] + box[3]) / 2
        return min(range(len(main)), key=lambda r: 0 if main[r][0] <= middle < main[r][1]
                   else min(abs(middle - main[r][0]), abs(middle - main[r][1])))

    rows: list[list[int]] = [[] for _ in main]
    for i, box in enumerate(shifted):
        rows[row_of(box)].append(i)
    return [r for r in rows if r]


def cut_paths(segment: Segment, height: float) -> list[NDArray[np.intp]]:
    """Where a segment of touching digits could be cut: least-ink paths from its top to its bottom.

    Each path gives, for every row of ``segment.ink``, the column the cut
    passes (pixels at or left of it go left).  `height` is the row's typical
    digit height, which sets how close two cuts may be.  Paths are found by
    dynamic programming over the ink (a seam: each step down moves at most
    one column, a sideways step costs :data:`SEAM_SLOPE`), one ending at
    each column; the cheapest ending in each stretch of
    :data:`MIN_CUT_SPACING` x `height` columns is kept, left to right.
    """
    ink = segment.ink
    if ink is None:
        return []
    h, w = ink.shape
    spacing = max(2, int(MIN_CUT_SPACING * height))
    if w < 2 * spacing:
        return []
    cost = ink.astype(np.float64)
    total = cost[0].copy()
    came = np.zeros((h, w), dtype=np.int8)
    for y in range(1, h):
        left = np.concatenate([[np.inf], total[:-1]]) + SEAM_SLOPE
        right = np.concatenate([total[1:], [np.inf]]) + SEAM_SLOPE
        choices = np.stack([left, total, right])
        came[y] = np.argmin(choices, axis=0) - 1
        total = choices.min(axis=0) + cost[y]
    paths = []
    ends = np.arange(spacing, w - spacing)
    for start in range(spacing, w - spacing, spacing):
        window = ends[(ends >= start) & (ends < start + spacing)]
        x = int(window[np.argmin(total[window])])
        path = np.empty(h, dtype=np.intp)
        for y in range(h - 1, -1, -1):
            path[y] = x
            x += int(came[y, x])
        paths.append(path)
    return paths


def cut(segment: Segment, left: NDArray[np.intp] | None, right: NDArray[np.intp] | None) -> Segment | None:
    """The piece of `segment` between two cut paths (None: its own edge); None when it holds no ink."""
    ink = segment.ink
    h, w = ink.shape
    columns = np.arange(w)[None, :]
    keep = np.ones((h, w), dtype=bool)
    if left is not None:
        keep &= columns > left[:, None]
    if right is not None:
        keep &= columns <= right[:, None]
    piece = np.where(keep, ink, 0.0).astype(np.float32)
    ys, xs = np.nonzero(piece > 0)
    if ys.size == 0:
        return None
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    piece = piece[y0:y1, x0:x1]
    # segment.ink is the segment's box grown by a one-pixel rim (ink_box), clipped to the picture.
    bx0, by0, bx1, by1 = segment.box
    ox, oy = bx0 - (1 if bx0 > 0 else 0), by0 - (1 if by0 > 0 else 0)
    box = (int(max(bx0, ox + x0)), int(max(by0, oy + y0)), int(min(bx1, ox + x1)), int(min(by1, oy + y1)))
    return Segment(box=box, image=pad_square(piece), ink=piece)


def pad_square(patch: NDArray[np.float32]) -> Image.Image:
    """Centre ink on a black square with a margin, so the crop is mostly paper
    (to_mnist reads the majority of a picture as paper)."""
    h, w = patch.shape
    side = int(round(max(h, w) * 1.4)) + 2
    out = np.zeros((side, side), dtype=np.float32)
    top, left = (side - h) // 2, (side - w) // 2
    out[top : top + h, left : left + w] = patch
    return Image.fromarray(np.rint(out * 255.0).astype(np.uint8))

"""Removing what is printed on the paper: ruled lines, grid lines and form boxes.

People write digits on notebook paper, on squared paper and in the boxes of
printed forms.  To an MNIST model those lines are ink: a ruled line through a
digit joins it to everything else on the row, and a box around it becomes
part of the digit.  So before the ink is cut into digits, the lines go:

1. **Straight and long.**  Printed lines are the only marks that stay
   straight over a long run.  The picture is sheared so that the page's lines
   are exactly horizontal (the shear angle, within ±:data:`MAX_SKEW` degrees,
   is the one whose row projection of the ink is peakiest: a tilted photo
   turns every line by the same angle), then a morphological opening with a
   long horizontal segment keeps only runs of ink at least that long.  The
   same is done for vertical lines on the transposed picture.
2. **Which runs are printed.**  A run is a printed line when it spans most of
   the picture (:data:`PAGE_SPAN`: ruled and squared paper run edge to edge;
   handwriting does not), or when it is one side of a box: a horizontal run
   with a vertical run at each of its ends (corners), or a vertical run that
   ends on a horizontal one at both ends.  A digit's strokes are never all
   of that: a 7's bar has a corner at one end only, a 1 ends in mid-air.
3. **Repair.**  The line's pixels are set to paper, and then every stroke
   that crossed the line is joined again: a pixel of the line is ink again
   where there is ink right above and right below it (right and left for a
   vertical line), within the line's thickness (a grey closing across the
   line, applied on the line's pixels only).  A stroke that runs *along* a
   line for a long way is lost with it; that is rare in handwriting.

What is left is the handwriting alone, which the usual ink analysis then
reads (:func:`digits.vision.normalize.analyze`).  A page of lines with no
writing is left blank, so it answers "no ink found".  Everything works on
the byte ink map (0 paper .. 255 ink) that the ink analysis uses, with
SciPy's 1-D minimum/maximum filters (linear time whatever the segment
length).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from numpy.typing import NDArray

MAX_SKEW = 5.0
"""Printed lines are looked for up to this many degrees off horizontal (or vertical):
a photo taken by hand is rarely turned more, and the search costs a shear per step."""
SKEW_STEP = 0.5
"""Degrees between the shear angles tried."""
SKEW_ROW = 0.25
"""Rows holding more ink than this share of the width are what the skew is measured on (lines)."""
PAGE_SPAN = 0.6
"""A straight row of ink over this share of the picture's width (height, for vertical lines) is a
printed line: ruled and squared paper run edge to edge, handwriting does not..."""
WORK_SIDE = 640
"""Lines are looked for on a copy at most this many pixels on its longer side (each pixel there set
when any pixel of its block is ink, so thin lines survive): a phone photo's lines are as straight at
a seventh of its resolution, and the search costs a fraction of the time.  Lengths below are in
those pixels."""
SHADE_WINDOW = 0.05
"""The paper's own level (under a shadow, or where the light falls off) is measured over this share of
the picture's longer side: wider than any stroke or line."""
MIN_PAGE_SIDE = 64
"""Pictures smaller than this (MNIST arrays, thumbnails, one digit's crop) have no printed lines."""
PAGE_RUNS = 0.3
"""...of which straight runs make at least this share (the rest may be hidden under handwriting)..."""
PAGE_EDGE = 0.1
"""...and reaches within this share of the width of both sides of the picture."""
MIN_BOX_SIDE = 24
"""A straight run is at least this many pixels long (the opening's segment; shorter ones are strokes)."""
MIN_BOX_SIDE_LENGTH = 48
"""A box's side is at least this long: a form's box holds a digit, while the straight parts of a
pen's 8 or 3, and the sides of a printed 0, are shorter (measured: renders of MNIST 8s lost strokes
to a box test at 24)."""
BOX_SIDE_THICKNESS = 6.0
"""...and at least this many times as long as it is thick (the edge of a blob of ink is no line)."""
MAX_LINE_THICKNESS = 0.02
"""A printed line is at most this share of the picture's longer side thick (and at least 3 pixels)."""
GAP = 3
"""Gaps of up to this many pixels along a line (faint printing, JPEG) do not break it."""
CORNER = 4
"""Two runs meet at a corner when their ends lie within this many pixels (plus their thickness)."""
COMB_WALLS = 3
"""A straight run that this many box walls stand on (or hang from) is a form's comb of boxes, even where
a digit's stroke along it hides its ends."""
PRINTED_THICKNESS = 1.5
"""A box's sides and walls are at most this many times (plus a pixel) as thick as its longest side."""
INNER_WALL = 0.4
"""A wall between a comb's outer walls, standing on its side, is at least this share of their length
(digits crossing it hide the rest)."""


def remove_printed_lines(q: NDArray[np.uint8], ink_threshold: float, paper: float) -> NDArray[np.uint8]:
    """The byte ink map `q` (ink high) with its printed lines and boxes replaced by paper, strokes repaired.

    `ink_threshold` is the byte level above which a pixel may be ink (the
    analysis's low threshold) and `paper` the paper's level.  Returns `q`
    itself when nothing printed is found, so clean pictures pass unchanged.
    """
    if min(q.shape) < MIN_PAGE_SIDE:
        return q
    scale = max(1, -(-max(q.shape) // WORK_SIDE))
    mask = q > ink_threshold + _shading(q, scale, paper)
    if not mask.any():
        return q
    small = block_any(mask, scale)
    thick = max(3, int(round(MAX_LINE_THICKNESS * max(small.shape))))
    horizontal = _straight_runs(small, thick)
    vertical = tuple(m.T for m in _straight_runs(small.T, thick))
    across, along, thickness = _printed(horizontal, vertical, small.shape)
    if not (across.any() or along.any()):
        return q
    if scale > 1:  # back to the picture's pixels: the blocks' ink pixels
        across, along = (block_grow(m, scale, mask.shape) & mask for m in (across, along))
        thickness *= scale
    return _erase_and_repair(q, across, along, paper, thickness)


def _shading(q: NDArray[np.uint8], scale: int, paper: float) -> NDArray[np.float32] | float:
    """How much darker than `paper` the paper is around each pixel (a shadow, light falling off).

    The paper's level is what an opening (a minimum, then a maximum filter,
    :data:`SHADE_WINDOW` of the longer side wide) leaves of the ink map: the
    strokes and lines, narrower than the window, are gone.  Worked out at a
    `scale` times smaller copy and returned at full size; 0 where the paper
    is as light as `paper`.
    """
    from scipy import ndimage

    small = np.asarray(Image.fromarray(q).reduce(scale)) if scale > 1 else q
    window = max(3, int(round(SHADE_WINDOW * max(small.shape))))
    level = ndimage.grey_opening(small, size=(window, window)).astype(np.float32)
    shade = np.maximum(0.0, level - paper)
    if not shade.any():
        return 0.0
    return np.repeat(np.repeat(shade, scale, axis=0), scale, axis=1)[: q.shape[0], : q.shape[1]] if scale > 1 else shade


def block_any(mask: NDArray[np.bool_], k: int) -> NDArray[np.bool_]:
    """`mask` shrunk k times, a pixel set when any of its k×k block is: a 1-pixel line survives."""
    if k == 1:
        return mask
    h, w = mask.shape
    padded = np.zeros((-(-h // k) * k, -(-w // k) * k), dtype=np.uint8)
    padded[:h, :w] = mask
    # Pillow's reduce averages each block in C: any ink in a block makes the average non-zero.
    return np.asarray(Image.fromarray(padded * np.uint8(255)).reduce(k)) > 0


def block_grow(small: NDArray[np.bool_], k: int, shape: tuple[int, int]) -> NDArray[np.bool_]:
    """Each pixel of `small` as a k×k block, cropped to `shape`: the inverse of :func:`block_any`."""
    if k == 1:
        return small[: shape[0], : shape[1]]
    return np.repeat(np.repeat(small, k, axis=0), k, axis=1)[: shape[0], : shape[1]]


def _skew(mask: NDArray[np.bool_]) -> float:
    """The shear (as a slope, rows per column) that makes the mask's long lines horizontal.

    Chosen as the slope whose row projection has the largest sum of squares
    over the rows that hold over :data:`SKEW_ROW` of the width, and at least
    half as much as the fullest row at any slope: a line's
    pixels fall into one or two rows only when the shear undoes its tilt,
    while handwriting never fills that much of a row, and it would sway the
    sum of all rows (a bold digit's many rows outweigh two thin lines).
    Without such rows, all rows count.  Only some pixels of a large mask are
    used: plenty for the sum.
    """
    ys, xs = np.nonzero(mask)
    step = max(1, ys.size // 200_000)
    ys, xs = ys[::step], xs[::step]
    offset = int(np.ceil(np.tan(np.radians(MAX_SKEW)) * mask.shape[1])) + 1
    slopes = [float(np.tan(np.radians(d))) for d in np.arange(-MAX_SKEW, MAX_SKEW + 1e-9, SKEW_STEP)]
    projections = [np.bincount(np.rint(ys - xs * slope).astype(np.int64) + offset).astype(np.float64)
                   for slope in slopes]
    # Bold digits across the width fill many rows a quarter full at any angle; a line, at its own
    # angle, fills one nearly whole: the rows that count are also at least half the fullest row's.
    fullest = max(float(counts.max()) for counts in projections)
    long_row = max(SKEW_ROW * mask.shape[1] / step, 0.5 * fullest)
    scores = [(float(np.square(counts[counts > long_row]).sum()), float(np.square(counts).sum()), slope)
              for counts, slope in zip(projections, slopes)]
    key = (lambda s: (s[0], -abs(s[2]))) if any(s[0] for s in scores) else (lambda s: (s[1], -abs(s[2])))
    return max(scores, key=key)[2]


def _shift_columns(a: np.ndarray, shifts: NDArray[np.intp], fill) -> np.ndarray:
    """Each column x of `a` moved down by shifts[x] rows (up when negative), padded with `fill`.

    A shear's shifts change only every 1/slope columns, so the columns are
    moved in blocks of equal shift: a few dozen slice copies.
    """
    h, w = a.shape
    out = np.full_like(a, fill)
    starts = np.flatnonzero(np.diff(shifts, prepend=shifts[0] - 1))
    for start, stop in zip(starts, [*starts[1:], w]):
        s = int(shifts[start])
        if abs(s) >= h:
            continue
        if s >= 0:
            out[s:, start:stop] = a[: h - s, start:stop]
        else:
            out[: h + s, start:stop] = a[-s:, start:stop]
    return out


def _straight_runs(mask: NDArray[np.bool_], thick: int) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Horizontal-ish straight runs of `mask`: (all runs, those on rows that span the page).

    A run is at least MIN_BOX_SIDE long and at most `thick` thick.  The mask
    is sheared so the page's lines are horizontal, gaps up to :data:`GAP` are
    closed along the rows, an opening with a horizontal segment keeps the
    long runs, and runs thicker than a line (a big blob of ink has long rows
    too) are dropped.  A sheared row (with its neighbours, for lines that are
    not quite straight) whose runs add up to :data:`PAGE_SPAN` of the width
    is a ruled or grid line, even where faint printing breaks it into pieces.
    Both masks are returned unsheared.
    """
    from scipy import ndimage

    slope = _skew(mask)
    shifts = -np.rint(np.arange(mask.shape[1]) * slope).astype(np.intp)
    shifts -= shifts.min()
    sheared = _shift_columns(mask, shifts, False)
    closed = ndimage.minimum_filter1d(ndimage.maximum_filter1d(sheared, GAP + 1, axis=1), GAP + 1, axis=1)
    closed &= ndimage.maximum_filter1d(sheared, 2 * GAP + 1, axis=1)  # closing does not grow the ends
    length = MIN_BOX_SIDE
    # A thin line that the shear leaves a little off horizontal steps from row to row: the segment
    # may step one row up or down anywhere along it.
    loose = ndimage.maximum_filter1d(closed, 3, axis=0)
    runs = ndimage.maximum_filter1d(ndimage.minimum_filter1d(loose, length, axis=1), length, axis=1) & closed
    # A line is thin: a run whose column of ink is thicker than `thick` is a blob, not a line.
    too_thick = ndimage.minimum_filter1d(runs, thick + 1, axis=0)
    too_thick = ndimage.maximum_filter1d(too_thick, thick + 1, axis=0)
    runs &= ~too_thick
    runs &= sheared
    near = ndimage.maximum_filter1d(runs, 3, axis=0)
    w = mask.shape[1]
    first = np.where(near.any(axis=1), np.argmax(near, axis=1), w)
    last = np.where(near.any(axis=1), w - 1 - np.argmax(near[:, ::-1], axis=1), -1)
    # Printed lines run off the picture at both sides; a pen's long stroke (a 7's bar, a 1 on a
    # tight crop) stops short of at least one.
    # Where the line runs under a digit, the digit's ink hides it: a row of runs covering PAGE_RUNS of
    # the width, and with the ink over it PAGE_SPAN, is a line.
    edge = PAGE_EDGE * w
    covered = (near | ndimage.maximum_filter1d(sheared, 3, axis=0)).sum(axis=1)
    page_rows = ((near.sum(axis=1) >= PAGE_RUNS * w) & (covered >= PAGE_SPAN * w)
                 & (first <= edge) & (last >= w - 1 - edge))
    page = runs & ndimage.maximum_filter1d(page_rows, 3)[:, None]
    return _shift_columns(runs, -shifts, False), _shift_columns(page, -shifts, False)


@dataclass(eq=False)  # runs are compared by identity
class _Run:
    """One straight run (a connected piece of a runs mask) and its geometry."""

    vertical: bool
    pixels: NDArray[np.bool_]  # its pixels, within `where`
    where: tuple[slice, slice]
    length: int
    thickness: float
    ends: tuple[tuple[float, float], tuple[float, float]]  # (y, x) of its two ends


def _runs(mask: NDArray[np.bool_], vertical: bool, min_length: int = 0) -> list[_Run]:
    """The straight pieces of a runs mask that could be the side of a box: long, thin, not slanted."""
    from scipy import ndimage

    # Pieces of one line that the shear's row steps leave a column or two apart are one run.
    joined = ndimage.maximum_filter1d(mask, GAP + 1, axis=0 if vertical else 1)
    labels, _ = ndimage.label(joined, structure=np.ones((3, 3), dtype=bool))
    found = []
    for i, where in enumerate(ndimage.find_objects(labels), start=1):
        if where is None:
            continue
        pixels = (labels[where] == i) & mask[where]
        ys, xs = np.nonzero(pixels)
        pixels = pixels[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        where = (slice(where[0].start + ys.min(), where[0].start + ys.max() + 1),
                 slice(where[1].start + xs.min(), where[1].start + xs.max() + 1))
        along, across = (pixels.T if vertical else pixels).shape[::-1]  # length along the run, extent across
        thickness = np.count_nonzero(pixels) / along
        # A printed line is long, and tilted at most MAX_SKEW: across its length it drifts
        # by length * tan(MAX_SKEW).  A slanted pen stroke drifts far more.
        if along < max(MIN_BOX_SIDE, BOX_SIDE_THICKNESS * thickness, min_length):
            continue
        if across > thickness + along * np.tan(np.radians(MAX_SKEW)) + 3:
            continue
        rows, cols = where
        if vertical:
            first, last = np.nonzero(pixels[0])[0].mean(), np.nonzero(pixels[-1])[0].mean()
            ends = ((rows.start, cols.start + first), (rows.stop - 1, cols.start + last))
        else:
            first, last = np.nonzero(pixels[:, 0])[0].mean(), np.nonzero(pixels[:, -1])[0].mean()
            ends = ((rows.start + first, cols.start), (rows.start + last, cols.stop - 1))
        found.append(_Run(vertical, pixels, where, along, thickness, ends))
    return found


def _meets(end: tuple[float, float], run: _Run, tolerance: float) -> bool:
    """Does `run` have a pixel within `tolerance` of the point `end` (a corner or a T)?"""
    rows, cols = run.where
    y, x = end
    y0, y1 = int(np.floor(y - tolerance)) - rows.start, int(np.ceil(y + tolerance)) + 1 - rows.start
    x0, x1 = int(np.floor(x - tolerance)) - cols.start, int(np.ceil(x + tolerance)) + 1 - cols.start
    h, w = run.pixels.shape
    if y1 <= 0 or x1 <= 0 or y0 >= h or x0 >= w:
        return False
    return bool(run.pixels[max(0, y0) : y1, max(0, x0) : x1].any())


def _printed(horizontal: tuple[NDArray[np.bool_], NDArray[np.bool_]],
             vertical: tuple[NDArray[np.bool_], NDArray[np.bool_]],
             shape: tuple[int, int]) -> tuple[NDArray[np.bool_], NDArray[np.bool_], float]:
    """The straight runs that are printed lines: page-spanning ones, and the sides of boxes.

    A horizontal side meets a vertical one at both of its ends; a vertical
    side meets a horizontal one at both of its ends (box walls stand on the
    box's top and bottom).  A wall that stands on page-spanning lines must
    also be as thin as they are: that is a grid, while a pen's 1 written
    from one ruled line to the next is thicker than the ruling.  Returns the
    horizontal lines' pixels, the vertical lines' pixels, and the thickest
    line's thickness in pixels.
    """
    h_runs, v_runs = _runs(horizontal[0], False, MIN_BOX_SIDE_LENGTH), _runs(vertical[0], True, MIN_BOX_SIDE_LENGTH)
    h_page, v_page = _runs(horizontal[1], False), _runs(vertical[1], True)
    h_all = _runs(horizontal[0], False)
    printed_h, printed_v = horizontal[1].copy(), vertical[1].copy()
    thickness = max([r.thickness for r in h_page + v_page], default=0.0)
    chosen: list[tuple[_Run, NDArray[np.bool_]]] = []  # box sides and walls, added to the masks at the end

    def tolerance(a: _Run, b: _Run) -> float:
        return CORNER + a.thickness + b.thickness

    def add(run: _Run, into: NDArray[np.bool_]) -> None:
        chosen.append((run, into))

    sides = []
    for run in h_runs:
        # A box's top or bottom: a corner at both ends, or a form's comb, where walls meet it all along.
        walls = sum(any(_meets(point, run, tolerance(run, v)) for point in v.ends) for v in v_runs)
        if walls >= COMB_WALLS or all(any(_meets(end, v, tolerance(run, v)) for v in v_runs) for end in run.ends):
            add(run, printed_h)
            sides.append(run)
    walls = []
    for run in v_runs:
        def stands(end, on: list[_Run], page: bool) -> bool:
            return any(_meets(end, hr, tolerance(run, hr)) and (not page or run.thickness <= 1.5 * hr.thickness + 1)
                       for hr in on)
        if all(stands(end, h_runs, False) or stands(end, h_page, True) for end in run.ends):
            add(run, printed_v)
            walls.append(run)
    # Where digits fill a comb's boxes, their strokes hide the walls' tops and most of the top side:
    # walls standing on one side, thin as it is and as long as each other, are walls, and the
    # pieces of straight run along the line through their other ends are the comb's other side.
    for side in sides:
        slope = (side.ends[1][0] - side.ends[0][0]) / max(1.0, side.ends[1][1] - side.ends[0][1])
        standing = [v for v in v_runs if v.thickness <= 1.5 * side.thickness + 1
                    and any(_meets(end, side, tolerance(side, v)) for end in v.ends)]
        matched = [v for v in standing
                   if sum(_same_span(v, other, slope, tolerance(v, other)) for other in standing) >= 2]
        if len(matched) < 2:
            continue
        # The walls inside the comb, half hidden by the digits that cross them, stand on the side too.
        span = max(abs(v.ends[1][0] - v.ends[0][0]) for v in matched)
        left, right = min(v.ends[0][1] for v in matched), max(v.ends[0][1] for v in matched)
        for v in standing:
            if v in matched or (left < v.ends[0][1] < right and v.length >= INNER_WALL * span):
                add(v, printed_v)
        far = [v.ends[0] if _meets(v.ends[1], side, tolerance(side, v)) else v.ends[1] for v in matched]
        (y0, x0), (_, x1) = min(far, key=lambda e: e[1]), max(far, key=lambda e: e[1])
        for run in h_all:
            if all(x0 - CORNER <= x <= x1 + CORNER and abs(y - (y0 + (x - x0) * slope)) <= tolerance(side, run)
                   for y, x in run.ends):
                add(run, printed_h)
    # One form prints its boxes with one pen: a run much thicker than the longest side found is a
    # pen's straight stroke that touches the box (a 7's bar under the top, a 4's stem on the bottom).
    if chosen:
        printing = max(chosen, key=lambda c: c[0].length)[0].thickness
        for run, into in chosen:
            if run.thickness <= PRINTED_THICKNESS * printing + 1:
                into[run.where] |= run.pixels
                thickness = max(thickness, run.thickness)
    return printed_h, printed_v, float(thickness)


def _same_span(a: _Run, b: _Run, slope: float, tolerance: float) -> bool:
    """Do two vertical runs start and end at the same heights, on a page tilted by `slope` (rows per column)?

    A run is the same span as itself.
    """
    shift = (b.ends[0][1] - a.ends[0][1]) * slope
    return all(abs(a.ends[i][0] + shift - b.ends[i][0]) <= tolerance for i in (0, 1))


def _erase_and_repair(q: NDArray[np.uint8], horizontal: NDArray[np.bool_], vertical: NDArray[np.bool_],
                      paper: float, thickness: float) -> NDArray[np.uint8]:
    """Paint the line pixels as paper, then restore them where a stroke crosses (ink on both sides).

    A horizontal line's pixels are restored only from ink above and below
    them, a vertical line's from ink left and right: restoring along a line
    would draw a bar across the hole of a 0 wherever the line runs through it.
    """
    from scipy import ndimage

    # The line's grey rim (blur, JPEG) goes with it.
    rim = np.ones((3, 3), dtype=bool)
    horizontal = ndimage.binary_dilation(horizontal, structure=rim)
    vertical = ndimage.binary_dilation(vertical, structure=rim)
    out = q.copy()
    out[horizontal | vertical] = np.uint8(min(255, max(0, round(paper))))
    size = int(np.ceil(thickness)) + 2 + 2 * GAP
    across_rows = ndimage.grey_closing(out, size=(size, 1))
    across_cols = ndimage.grey_closing(out, size=(1, size))
    repaired = out.copy()
    repaired[horizontal] = across_rows[horizontal]
    repaired[vertical & ~horizontal] = across_cols[vertical & ~horizontal]
    crossing = vertical & horizontal  # where lines cross, either side's strokes count
    repaired[crossing] = np.maximum(across_rows, across_cols)[crossing]
    return repaired

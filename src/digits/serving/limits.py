"""The work and memory a request may cost: pixel budgets per request and per process, memory given back.

A small file can claim a big picture (a 24 KB PNG of 5000×5000 pixels), so
the body's size bounds nothing.  Every upload's size is read from its header
before anything is decoded (:func:`digits.vision.decode.image_size`), and:

- a request whose uploads' decoders would fill more than
  ``max_request_pixels`` pixels in all is refused at once (413
  ``too_many_pixels``).  A PNG is decoded whole; /v1/predict has a big JPEG
  decoded at 1/2, 1/4 or 1/8 of its size (``predict_pixels``);
- a request waits, on the event loop and holding no worker thread, until
  the pixels it will decode at once (its largest picture: a request's
  pictures are decoded one after the other) fit in the worker's
  :class:`PixelBudget` of ``max_pixels_in_flight``.  That bounds the memory
  big pictures take, and how many are decoded at once, whatever the number
  of cores;
- a request with a big picture (a megapixel or more) runs in one of
  ``big_picture_threads`` threads of lower CPU priority
  (:func:`big_picture_threads`), not in the request threads, so a stream of
  them cannot take the CPU and the threads from small requests;
- after a request that decoded a big picture, the C allocator is asked to
  give its free memory back (:func:`give_memory_back`).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import os
import threading

import anyio

from digits.serving.errors import ApiError

BIG_PICTURE = 1_000_000
"""A request with a picture of at least this many pixels runs in a big-picture thread
(:func:`big_picture_threads`) and gives free memory back afterwards."""

BIG_PICTURE_NICE = 10
"""How much lower the big-picture threads' CPU priority is than the process's (Linux nice, +10):
the scheduler then gives them about a tenth of the CPU that the other threads get when both want it."""


class PixelBudget:
    """Pixels decoded at once in this process, over all requests: at most `capacity`.

    :meth:`hold` waits (asynchronously, so the waiting request holds no
    worker thread) until its pixels fit.  Every waiter rechecks when any
    holder leaves, so a small request is never queued behind a big one
    that does not fit yet.  Used from the event loop only.
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.used = 0
        self._waiters: collections.deque[anyio.Event] = collections.deque()

    @contextlib.asynccontextmanager
    async def hold(self, pixels: int):
        need = min(pixels, self.capacity)  # one picture over the whole budget waits to be alone
        while self.used + need > self.capacity:
            event = anyio.Event()
            self._waiters.append(event)
            try:
                await event.wait()
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(event)
        self.used += need
        try:
            yield
        finally:
            self.used -= need
            while self._waiters:
                self._waiters.popleft().set()


def check_request_pixels(sizes: list[tuple[int, int] | None], limit: int, max_pixels: int | None) -> None:
    """Refuse a request whose pictures' decoders would fill more than `limit` pixels in all (413).

    `sizes` are :func:`~digits.vision.decode.decoded_size`'s, from the
    uploads' headers (None: not an image; decoding says so, as it refuses
    a picture over `max_pixels` by name, so that one is not counted).
    """
    total = sum(_pixels(size, max_pixels) for size in sizes)
    if total > limit:
        raise ApiError(413, "too_many_pixels",
                       f"decoding these images takes {total:,} pixels; the limit per request is {limit:,} "
                       "(send fewer or smaller pictures)")


def largest_picture(sizes: list[tuple[int, int] | None], max_pixels: int | None) -> int:
    """The pixels a request decodes at once: its largest picture's (its pictures are decoded one at a time)."""
    return max((_pixels(size, max_pixels) for size in sizes), default=0)


def _pixels(size: tuple[int, int] | None, max_pixels: int | None) -> int:
    if size is None or (max_pixels is not None and size[0] * size[1] > max_pixels):
        return 0
    return size[0] * size[1]


def big_picture_threads(threads: int) -> concurrent.futures.ThreadPoolExecutor:
    """The worker threads for requests with big pictures: `threads` of them, at a lower CPU priority.

    Decoding a 25-megapixel picture takes a core for a second or more.  In
    the request threads (``settings.threads``), a stream of them took those
    threads and the CPU from every other request: the normal requests' p99
    went from 0.3 to 2.2 s beside batches of 4 such PNGs.  Here they take
    neither, whatever the number of cores, and run at full speed when
    nothing else wants the CPU.
    """
    return concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="digits-big-picture",
                                                 initializer=_lower_priority)


def _lower_priority() -> None:
    # Linux applies setpriority to one thread when given its thread id; elsewhere this is a no-op.
    with contextlib.suppress(AttributeError, OSError):
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + BIG_PICTURE_NICE))


def _malloc_trim():
    """glibc's ``malloc_trim``, or None elsewhere (musl, macOS): free heap memory back to the system."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None
    if trim is not None:
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def give_memory_back() -> None:
    """Return the allocator's free memory to the system.

    A big picture's arrays are freed when its request ends, but glibc keeps
    freed heap memory for later (its mmap threshold rises after each large
    free), so the RSS stays near its peak: 2.0 GB after one big batch in
    issue 12.  ``malloc_trim(0)`` hands it back: measured here, decoding and
    normalizing three times four 5000×5000 PNGs in a thread left 161 MB,
    91 MB after the trim.
    """
    if _TRIM is not None:
        _TRIM(0)

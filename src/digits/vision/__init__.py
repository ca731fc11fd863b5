"""Users' pictures → what an MNIST model can read.

- :mod:`digits.vision.decode`: image files and uploaded bytes as upright
  greyscale (:func:`load_image`, :func:`decode_image`), arrays as grey levels,
  and :func:`save_preprocessed` to write back what a model saw;
- :mod:`digits.vision.normalize`: one digit to MNIST's 28×28 format, the way
  MNIST was made (:func:`find_ink`, :func:`to_mnist`);
- :mod:`digits.vision.segment`: a picture of several digits cut into one
  picture per digit (:func:`split_digits`).

Nothing here imports Keras, so this package stays quick to import and runs on
any backend.  Recognizing what these functions produce is
:mod:`digits.inference`'s job.
"""

from digits.datasets.arrays import MNIST_SIDE
from digits.vision.decode import ImageDecodeError, decode_image, load_image, save_preprocessed
from digits.vision.normalize import NO_INK, InkReport, NoDigitError, find_ink, to_mnist
from digits.vision.segment import Segment, split_digits

__all__ = [
    "MNIST_SIDE",
    "NO_INK",
    "ImageDecodeError",
    "InkReport",
    "NoDigitError",
    "Segment",
    "decode_image",
    "find_ink",
    "load_image",
    "save_preprocessed",
    "split_digits",
    "to_mnist",
]

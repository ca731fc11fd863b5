"""The group reader: a CRNN with CTC that reads a group of touching digits at once (digits.sequence)."""

from __future__ import annotations

import numpy as np
import pytest

from digits.errors import DigitsError
from digits.sequence import (BLANK, DIGIT_HEIGHT, MARGIN, MAX_WIDTH, STRIDE, WIDTH_STEP, decode, group_input,
                             synthetic_group, synthetic_groups)


@pytest.fixture(scope="module")
def reader():
    from digits.backend import use_backend

    use_backend(None)
    from digits.sequence import load_group_reader

    return load_group_reader()


def test_group_input_scales_the_ink_to_a_digits_height_and_maps_columns_back() -> None:
    ink = np.zeros((100, 300), np.float32)
    ink[10:90, 50:210] = 1.0  # 80 tall, 160 wide
    arr, offset, scale = group_input(ink)
    assert arr.shape[0] == 28 and arr.shape[1] % WIDTH_STEP == 0
    ys, xs = np.nonzero(arr > 0.5)
    assert ys.min() == MARGIN and ys.max() == MARGIN + DIGIT_HEIGHT - 1
    assert xs.max() - xs.min() + 1 == 40  # the proportions are kept: 160 * 20 / 80
    # Input column MARGIN is the ink's first column, and the last inked column maps to its last.
    assert offset + MARGIN * scale == pytest.approx(50)
    assert offset + (xs.max() + 1) * scale == pytest.approx(210)


@pytest.mark.parametrize(("ink", "message"), [(np.zeros((40, 40), np.float32), "no ink"),
                                              (np.ones((10, 10 * MAX_WIDTH), np.float32), "too wide")])
def test_group_input_refuses_what_it_cannot_read(ink, message) -> None:
    with pytest.raises(DigitsError, match=message):
        group_input(ink)


def _logits(path: list[int]) -> np.ndarray:
    """Logits whose best class per step is `path` (sure, 0.9 or so)."""
    out = np.zeros((len(path), BLANK + 1), np.float32)
    out[np.arange(len(path)), path] = 5.0
    return out


def test_decode_merges_repeats_and_drops_blanks() -> None:
    b = BLANK
    found = decode(_logits([b, 3, 3, b, 1, b, 1, 1, b, b]), width=10 * STRIDE)
    assert [d.label for d in found] == [3, 1, 1]  # a blank between two 1s keeps both
    assert found[0].columns == (1 * STRIDE, 3 * STRIDE)
    assert all(0.9 < d.confidence < 1.0 for d in found)
    assert all(abs(sum(d.probabilities) - 1.0) < 1e-6 and int(np.argmax(d.probabilities)) == d.label for d in found)


def test_decode_reads_only_the_columns_that_hold_the_group() -> None:
    """What lies right of the group's width (the padding) is not read."""
    found = decode(_logits([BLANK, 7, BLANK, 2, 2]), width=3 * STRIDE)
    assert [d.label for d in found] == [7]


def test_a_digit_no_column_is_sure_of_is_doubtful() -> None:
    logits = _logits([BLANK, 4, 4, BLANK])
    logits[1:3, 9] = 4.9  # both columns hesitate between 4 and 9
    (digit,) = decode(logits, width=4 * STRIDE)
    assert digit.label == 4 and digit.confidence < 0.6
    logits[2, 9] = 0.0  # one column is sure: the digit is
    (digit,) = decode(logits, width=4 * STRIDE)
    assert digit.confidence > 0.9


def test_synthetic_groups_are_reproducible_and_labelled(mnist_data) -> None:
    x, y = mnist_data.x_train[:500], mnist_data.y_train[:500]
    a, la = synthetic_groups(x, y, 20, np.random.default_rng(0))
    b, lb = synthetic_groups(x, y, 20, np.random.default_rng(0))
    assert a.shape == (20, 28, 128, 1) and np.array_equal(a, b) and np.array_equal(la, lb)
    lengths = (la >= 0).sum(axis=1)
    assert lengths.min() >= 1 and lengths.max() <= 6
    assert all((row[:k] >= 0).all() and (row[k:] == -1).all() for row, k in zip(la, lengths))
    assert 0.0 <= a.min() and a.max() <= 1.0


def test_synthetic_digits_touch_or_overlap(mnist_data) -> None:
    """In most groups no column of paper separates the digits: they touch, or one reaches over the next."""
    rng = np.random.default_rng(1)
    joined = 0
    for i in range(20):
        group = synthetic_group([mnist_data.x_train[j] for j in range(3 * i, 3 * i + 3)], rng)
        columns = (group > 0.3).any(axis=0).astype(np.int8)
        pieces = int((np.diff(np.concatenate([[0], columns])) == 1).sum())
        joined += pieces < 3
    assert joined >= 12  # 13 of these 20; a group in five is drawn with its digits apart


def test_the_bundled_reader_reads_groups_of_test_digits(reader, mnist_data) -> None:
    """Groups made of MNIST *test* digits, which the reader never saw (it was trained on training digits)."""
    x, y = mnist_data.x_test[:2000], mnist_data.y_test[:2000]
    inputs, labels = synthetic_groups(x, y, 200, np.random.default_rng(2))
    right = 0
    for arr, truth in zip(inputs[..., 0], labels):
        (read,) = reader.read([arr])
        right += [d.label for d in read] == [int(t) for t in truth if t >= 0]
    assert right >= 170  # about 90% of whole groups read exactly (the model card has the measured rate)


def test_the_reader_gives_none_for_a_group_it_cannot_read(reader) -> None:
    assert reader.read([np.zeros((30, 30), np.float32), np.ones((5, 5 * MAX_WIDTH), np.float32)]) == [None, None]


def test_a_reader_that_is_not_there_is_one_clear_error(tmp_path) -> None:
    from digits.sequence import GroupReader

    with pytest.raises(DigitsError, match="no group reader model"):
        GroupReader(tmp_path / "missing.keras")


def test_training_reduces_the_ctc_loss(mnist_data, tmp_path) -> None:
    """A few steps of the recipe on a few groups: the loss is finite and falls (the real run: the model card)."""
    import keras

    from digits.sequence import build_reader, ctc_loss

    keras.utils.set_random_seed(0)
    inputs, labels = synthetic_groups(mnist_data.x_train[:300], mnist_data.y_train[:300], 64,
                                      np.random.default_rng(3))
    model = build_reader()
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss=ctc_loss)
    history = model.fit(inputs, labels, batch_size=32, epochs=4, verbose=0).history["loss"]
    assert np.isfinite(history).all() and history[-1] < history[0]


def test_the_readers_width_is_a_setting() -> None:
    """`filters` scales every layer; the output is one row of 11 logits per 4 input columns either way."""
    from digits.sequence import BLANK, build_reader

    small, wide = build_reader(8), build_reader(16)
    assert small.count_params() < wide.count_params() / 3
    for model in (small, wide):
        assert tuple(model(np.zeros((2, 28, 64, 1), np.float32)).shape) == (2, 16, BLANK + 1)


@pytest.mark.parametrize("flag", ["--groups", "--epochs", "--filters"])
def test_the_training_script_refuses_a_bad_count(flag, tmp_path, capsys) -> None:
    from digits.sequence import main

    with pytest.raises(SystemExit) as stop:
        main(["--out", str(tmp_path / "r.keras"), flag, "0"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and "must be at least 1" in err
    assert not (tmp_path / "r.keras").exists()


@pytest.mark.parametrize("argument, value, least", [("groups", 10, 64), ("epochs", 0, 1), ("validation", 0, 1),
                                                     ("filters", 0, 1)])
def test_train_reader_refuses_counts_it_cannot_train_or_validate_on(argument, value, least, tmp_path) -> None:
    from digits.sequence import train_reader

    with pytest.raises(DigitsError, match=f"^train_reader: {argument} must be at least {least}, got {value}$"):
        train_reader(tmp_path / "r.keras", **{argument: value})
    assert not (tmp_path / "r.keras").exists()


def test_the_training_script_refuses_a_reader_to_go_on_from_that_is_not_there(tmp_path, capsys) -> None:
    from digits.sequence import main

    with pytest.raises(SystemExit) as stop:
        main(["--out", str(tmp_path / "r.keras"), "--init", str(tmp_path / "nothing.keras")])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--init" in err and "nothing.keras: no such file" in err
    assert not (tmp_path / "r.keras").exists()


def test_training_goes_on_from_a_saved_reader(tmp_path, capsys) -> None:
    """--init: training starts from the saved reader's weights (the bundled one reads most groups
    before a single step; a new network reads none), and the result is a reader again."""
    from digits.sequence import BUNDLED, GroupReader, train_reader

    result = train_reader(tmp_path / "r.keras", groups=64, epochs=1, validation=40, init=BUNDLED)
    start = next(line for line in capsys.readouterr().out.splitlines() if "'init'" in line)
    assert float(start.split("'val_exact': ")[1].split(",")[0]) >= 0.75
    assert result["history"][-1]["val_exact"] >= 0.5  # 64 groups at a small rate do not undo it
    (read,) = GroupReader(tmp_path / "r.keras").read([np.ones((20, 40), np.float32)])
    assert read is not None

"""load_dataset: local folders, .npz, the cache, and downloads from a loopback server."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from digits.datasets import DATASETS, Dataset, DatasetSpec, default_cache_dir, load_dataset, write_idx
from digits.datasets import sources
from digits.errors import DigitsError
from helpers import free_port

FILES = sources.STANDARD_FILES
KEYS = ("x_train", "y_train", "x_test", "y_test")


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may see the developer's data dir, mirrors, proxy or ~/.cache."""
    for var in ("DIGITS_DATA_DIR", "DIGITS_MIRRORS", "http_proxy", "HTTP_PROXY", "https_proxy",
                "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("DIGITS_CACHE_DIR", str(tmp_path / "default-cache"))
    monkeypatch.setattr(sources, "DOWNLOAD_TIMEOUT_S", 5.0)


def assert_same_data(dataset: Dataset, arrays: dict[str, np.ndarray]) -> None:
    for key in KEYS:
        got = getattr(dataset, key)
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, arrays[key])


def lacked_files(message: str) -> list[str]:
    """The comma-separated file list after 'lacks ' in a missing-files error."""
    return message.split(" lacks ", 1)[1].split(";", 1)[0].split(", ")


# --------------------------------------------------------------------------
# Registry and cache location


def test_registry() -> None:
    assert list(DATASETS) == ["mnist", "fashion-mnist", "kmnist"]
    for spec in DATASETS.values():
        assert spec.files == FILES
        assert set(spec.md5) == set(FILES)
        assert all(len(h) == 32 for h in spec.md5.values())
        assert len(spec.class_names) == 10 and spec.mirrors
    assert DATASETS["mnist"].md5["train-images-idx3-ubyte.gz"] == "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert DATASETS["mnist"].mirrors[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/"
    assert DATASETS["fashion-mnist"].class_names[0] == "T-shirt/top"
    assert DATASETS["kmnist"].class_names[-1] == "wo"


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "default-cache"
    monkeypatch.delenv("DIGITS_CACHE_DIR")
    assert default_cache_dir() == tmp_path / "xdg" / "digits"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # ignored, as the XDG spec says
    assert default_cache_dir() == Path.home() / ".cache" / "digits"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "digits"


def test_unknown_dataset_name_lists_choices() -> None:
    expected = "unknown dataset 'emnist'; choose one of mnist, fashion-mnist, kmnist$"
    with pytest.raises(DigitsError, match=expected):
        load_dataset("emnist")


# --------------------------------------------------------------------------
# Local sources


def test_shared_mnist_dir(mnist_dir: Path) -> None:
    data = load_dataset(data_dir=mnist_dir)
    assert data.name == "mnist" and data.source == str(mnist_dir)
    assert data.x_train.shape == (60000, 28, 28) and data.x_test.shape == (10000, 28, 28)
    assert data.y_train.shape == (60000,) and data.y_test.shape == (10000,)
    assert data.x_train.dtype == data.y_train.dtype == np.uint8
    assert data.class_names == tuple("0123456789")
    assert "train=60000" in repr(data)


def test_shared_mnist_dir_is_not_fashion(mnist_dir: Path) -> None:
    if mnist_dir.name != "mnist":
        pytest.skip("the guard keys on the folder name")
    with pytest.raises(DigitsError, match="holds mnist, not fashion-mnist"):
        load_dataset("fashion_mnist", data_dir=mnist_dir)


@pytest.mark.parametrize("compressed", [True, False])
def test_tiny_idx_dir(tmp_path: Path, write_tiny_idx, compressed: bool) -> None:
    arrays = write_tiny_idx(tmp_path / "d", gzip=compressed)
    data = load_dataset(data_dir=tmp_path / "d")
    assert_same_data(data, arrays)
    assert len(data.x_train) == 50 and len(data.x_test) == 20
    assert data.source == str(tmp_path / "d")


def test_subfolder_named_after_dataset(tmp_path: Path, write_tiny_idx) -> None:
    arrays = write_tiny_idx(tmp_path / "root" / "kmnist")
    data = load_dataset("kmnist", data_dir=str(tmp_path / "root"))
    assert_same_data(data, arrays)
    assert data.class_names[0] == "o" and data.source == str(tmp_path / "root" / "kmnist")


def test_npz_file_and_folder_holding_it(tmp_path: Path) -> None:
    arrays = {
        "x_train": np.full((5, 28, 28), 9, np.uint8), "y_train": np.arange(5, dtype=np.int64),
        "x_test": np.zeros((3, 28, 28), np.uint8), "y_test": np.array([9, 8, 7], np.int64),
    }
    np.savez(tmp_path / "mnist.npz", **arrays)
    for where in (tmp_path / "mnist.npz", tmp_path):
        data = load_dataset(data_dir=where)
        assert_same_data(data, arrays)  # int64 labels arrive as uint8
        assert data.source == str(tmp_path / "mnist.npz")


def test_npz_missing_keys_and_not_an_npz(tmp_path: Path) -> None:
    np.savez(tmp_path / "partial.npz", x_train=np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(DigitsError, match=r"partial\.npz: lacks arrays y_train, x_test, y_test"):
        load_dataset(data_dir=tmp_path / "partial.npz")
    for junk in (b"not a zip", b"PK\x03\x04 but not a zip either"):
        (tmp_path / "junk.npz").write_bytes(junk)
        with pytest.raises(DigitsError, match=r"junk\.npz: not a readable \.npz archive"):
            load_dataset(data_dir=tmp_path / "junk.npz")
    np.save(tmp_path / "single.npy", np.zeros(3))
    (tmp_path / "single.npy").rename(tmp_path / "single.npz")
    with pytest.raises(DigitsError, match=r"single\.npz: not a readable \.npz archive"):
        load_dataset(data_dir=tmp_path / "single.npz")


def test_env_data_dir_and_argument_precedence(monkeypatch, tmp_path, write_tiny_idx, make_tiny_arrays):
    from_env = write_tiny_idx(tmp_path / "env", make_tiny_arrays(seed=1))
    from_arg = write_tiny_idx(tmp_path / "arg", make_tiny_arrays(seed=2))
    monkeypatch.setenv("DIGITS_DATA_DIR", str(tmp_path / "env"))
    assert_same_data(load_dataset(), from_env)
    assert_same_data(load_dataset(data_dir=tmp_path / "arg"), from_arg)


def test_data_dir_wins_over_cache_and_never_downloads(tmp_path: Path, write_tiny_idx) -> None:
    write_tiny_idx(tmp_path / "cache" / "mnist")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DigitsError, match="no local copy of mnist: .*empty lacks"):
        load_dataset(data_dir=tmp_path / "empty", cache_dir=tmp_path / "cache")


def test_missing_files_are_named_exactly(tmp_path: Path, write_tiny_idx) -> None:
    write_tiny_idx(tmp_path / "d", skip={"train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"})
    with pytest.raises(DigitsError) as info:
        load_dataset(data_dir=tmp_path / "d")
    message = str(info.value)
    assert message.startswith(f"no local copy of mnist: {tmp_path / 'd'} lacks ")
    assert lacked_files(message) == ["train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"]
    assert "--data-dir/DIGITS_DATA_DIR" in message


def test_tiny_mnist_dir_fixture(tiny_mnist_dir: Path) -> None:
    data = load_dataset(data_dir=tiny_mnist_dir)
    assert (len(data.x_train), len(data.x_test)) == (50, 20)


def test_nonexistent_data_dir(tmp_path: Path) -> None:
    with pytest.raises(DigitsError, match="does not exist"):
        load_dataset(data_dir=tmp_path / "nowhere")


# Each case replaces some of the tiny arrays with a broken version.
SPOILED = {
    "count-mismatch": (
        lambda a: {"y_train": a["y_train"][:49]},
        r"train-images-idx3-ubyte\.gz has 50 images but .*train-labels-idx1-ubyte\.gz has 49 labels",
    ),
    "image-size": (
        lambda a: {"x_test": a["x_test"][:, :27, :27]},
        r"t10k-images-idx3-ubyte\.gz: expected uint8 images of shape N×28×28, found uint8 20×27×27",
    ),
    "image-dtype": (
        lambda a: {"x_train": a["x_train"].astype(np.float32)},
        r"train-images-idx3-ubyte\.gz: expected uint8 images .* found float32",
    ),
    "label-range": (
        lambda a: {"y_test": np.full(20, 10, np.uint8)},
        r"t10k-labels-idx1-ubyte\.gz: label 10 is outside 0\.\.9",
    ),
    "label-shape": (
        lambda a: {"y_train": a["y_train"].reshape(25, 2)},
        r"train-labels-idx1-ubyte\.gz: expected a 1-D array of integer labels",
    ),
}


@pytest.mark.parametrize("case", SPOILED)
def test_structure_is_checked(case: str, tmp_path: Path, write_tiny_idx, make_tiny_arrays) -> None:
    spoil, message = SPOILED[case]
    arrays = make_tiny_arrays()
    arrays.update(spoil(arrays))
    write_tiny_idx(tmp_path / "d", arrays)
    with pytest.raises(DigitsError, match=message):
        load_dataset(data_dir=tmp_path / "d")


# --------------------------------------------------------------------------
# Cache without network


def test_cache_used_without_download(tmp_path: Path, write_tiny_idx) -> None:
    arrays = write_tiny_idx(tmp_path / "cache" / "fashion-mnist")
    data = load_dataset("fashion-mnist", cache_dir=tmp_path / "cache", download=False)
    assert_same_data(data, arrays)
    assert data.source == str(tmp_path / "cache" / "fashion-mnist")
    assert data.class_names[-1] == "Ankle boot"


# --------------------------------------------------------------------------
# The decoded copy of gzip IDX files


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Tiny files get a decoded copy too; returns the folder the copies go to."""
    monkeypatch.setattr(sources, "DECODED_MIN_BYTES", 0)
    return tmp_path / "default-cache" / sources.DECODED_FOLDER


def _refuse_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path):
        raise AssertionError(f"decoded {path} although a valid copy exists")

    monkeypatch.setattr(sources, "read_idx", refuse)


def test_gzip_files_are_decoded_once_then_read_from_the_copy(tmp_path, write_tiny_idx, decoded, monkeypatch):
    arrays = write_tiny_idx(tmp_path / "d")
    assert_same_data(load_dataset(data_dir=tmp_path / "d"), arrays)
    (copy,) = decoded.iterdir()
    assert copy.name.startswith("mnist-") and copy.suffix == ".npz"
    _refuse_decoding(monkeypatch)
    again = load_dataset(data_dir=tmp_path / "d")
    assert_same_data(again, arrays)
    assert again.source == str(tmp_path / "d")
    assert again.x_train.flags.writeable


def test_changed_files_replace_the_stale_copy(tmp_path, write_tiny_idx, decoded, make_tiny_arrays):
    write_tiny_idx(tmp_path / "d")
    load_dataset(data_dir=tmp_path / "d")
    newer = write_tiny_idx(tmp_path / "d", make_tiny_arrays(n_train=60, seed=1))
    assert_same_data(load_dataset(data_dir=tmp_path / "d"), newer)
    assert len(list(decoded.iterdir())) == 1  # one copy per folder, replaced


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other key", "bad labels"])
def test_a_damaged_copy_is_ignored_and_rebuilt(tmp_path, write_tiny_idx, decoded, monkeypatch, damage):
    arrays = write_tiny_idx(tmp_path / "d")
    load_dataset(data_dir=tmp_path / "d")
    (copy,) = decoded.iterdir()
    with np.load(copy) as npz:
        stored = {name: npz[name] for name in npz.files}
    if damage == "garbage":
        copy.write_bytes(b"not a zip at all")
    elif damage == "truncated":
        copy.write_bytes(copy.read_bytes()[:1000])
    elif damage == "other key":
        np.savez(copy, **{**stored, "key": np.str_("[0]")})
    else:  # a readable zip with the right key whose arrays fail the structure checks
        np.savez(copy, **{**stored, "y_train": np.full_like(stored["y_train"], 200)})
    assert_same_data(load_dataset(data_dir=tmp_path / "d"), arrays)
    _refuse_decoding(monkeypatch)  # the copy was written again, whole
    assert_same_data(load_dataset(data_dir=tmp_path / "d"), arrays)


def test_no_copy_for_small_or_uncompressed_files(tmp_path, write_tiny_idx, monkeypatch):
    folder = tmp_path / "default-cache" / sources.DECODED_FOLDER
    write_tiny_idx(tmp_path / "small")
    load_dataset(data_dir=tmp_path / "small")  # below DECODED_MIN_BYTES
    monkeypatch.setattr(sources, "DECODED_MIN_BYTES", 0)
    write_tiny_idx(tmp_path / "raw", gzip=False)
    load_dataset(data_dir=tmp_path / "raw")  # uncompressed: read as fast as a copy
    assert not folder.exists()


def test_an_unwritable_cache_only_costs_time(tmp_path, write_tiny_idx, decoded, monkeypatch):
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("DIGITS_CACHE_DIR", str(tmp_path / "a-file"))
    arrays = write_tiny_idx(tmp_path / "d")
    assert_same_data(load_dataset(data_dir=tmp_path / "d"), arrays)


def test_empty_cache_without_download_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DigitsError) as info:
        load_dataset(download=False)
    message = str(info.value)
    assert message.startswith(f"no local copy of mnist: {tmp_path / 'default-cache' / 'mnist'} lacks ")
    assert lacked_files(message) == list(FILES)
    assert message.endswith("or allow a download")


# --------------------------------------------------------------------------
# Downloads from a loopback HTTP server


class Handler(BaseHTTPRequestHandler):
    """Serves ``server.routes``: path -> (mode, body); mode "ok" or "truncate"; else 404."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.requests.append(self.path)
        mode, body = self.server.routes.get(self.path, ("404", b""))
        if mode == "404":
            self.send_error(404)
            return
        self.send_response(200)
        if mode == "truncate":
            # Promise more than we send, then hang up.
            self.send_header("Content-Length", str(len(body) + 1000))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[SimpleNamespace]:
    """A real HTTP server on 127.0.0.1 (port 0) in a thread, stopped on teardown."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.routes = {}
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield SimpleNamespace(
            url=f"http://127.0.0.1:{httpd.server_address[1]}", routes=httpd.routes, requests=httpd.requests
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def bounded(fn: Callable[..., Any], *args: Any, seconds: float = 20, **kwargs: Any) -> Any:
    """Run ``fn`` in a thread and fail the test if it takes longer than ``seconds``."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # re-raised in the test's thread
            outcome["error"] = exc

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        pytest.fail(f"{fn.__name__} still running after {seconds} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def publish(
    server: SimpleNamespace, tmp_path: Path, prefix: str, arrays: dict[str, np.ndarray], mode: str = "ok"
) -> dict[str, str]:
    """Serve the arrays as the four .gz files under /prefix/; return their md5s."""
    md5 = {}
    for name, key in zip(FILES, KEYS):
        path = tmp_path / "published" / prefix / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_idx(path, arrays[key])
        body = path.read_bytes()
        server.routes[f"/{prefix}/{name}"] = (mode, body)
        md5[name] = hashlib.md5(body).hexdigest()
    return md5


def register(monkeypatch: pytest.MonkeyPatch, md5: dict[str, str], mirrors: list[str]) -> DatasetSpec:
    spec = DatasetSpec(name="tiny", md5=md5, mirrors=tuple(mirrors), class_names=tuple("0123456789"))
    monkeypatch.setitem(DATASETS, "tiny", spec)
    return spec


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}/nothing-here/"


def test_mirror_fallback_after_404(server, tmp_path, monkeypatch, make_tiny_arrays) -> None:
    arrays = make_tiny_arrays()
    md5 = publish(server, tmp_path, "good", arrays)
    register(monkeypatch, md5, [f"{server.url}/gone/", f"{server.url}/good/"])
    data = bounded(load_dataset, "tiny", cache_dir=tmp_path / "cache", progress=False)
    assert_same_data(data, arrays)
    assert data.source == f"{tmp_path / 'cache' / 'tiny'} (downloaded from {server.url}/good/)"
    assert server.requests == [p for name in FILES for p in (f"/gone/{name}", f"/good/{name}")]


def test_md5_mismatch_leaves_nothing(server, tmp_path, monkeypatch, make_tiny_arrays) -> None:
    md5 = publish(server, tmp_path, "m", make_tiny_arrays())
    md5["train-images-idx3-ubyte.gz"] = "0" * 32
    register(monkeypatch, md5, [f"{server.url}/m/"])
    with pytest.raises(DigitsError) as info:
        bounded(load_dataset, "tiny", cache_dir=tmp_path / "cache", progress=False)
    message = str(info.value)
    assert "could not download tiny train-images-idx3-ubyte.gz" in message
    assert f"expected {'0' * 32}" in message
    assert list((tmp_path / "cache" / "tiny").iterdir()) == []


def test_truncated_response_leaves_nothing(server, tmp_path, monkeypatch, make_tiny_arrays) -> None:
    md5 = publish(server, tmp_path, "t", make_tiny_arrays(), mode="truncate")
    register(monkeypatch, md5, [f"{server.url}/t/"])
    with pytest.raises(DigitsError, match="truncated response"):
        bounded(load_dataset, "tiny", cache_dir=tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache" / "tiny").iterdir()) == []


def test_download_fills_cache_then_cache_needs_no_request(server, tmp_path, monkeypatch, make_tiny_arrays):
    arrays = make_tiny_arrays()
    md5 = publish(server, tmp_path, "ok", arrays)
    register(monkeypatch, md5, [f"{server.url}/ok/"])
    bounded(load_dataset, "tiny", progress=False)  # default cache: $DIGITS_CACHE_DIR
    cached = tmp_path / "default-cache" / "tiny"
    assert sorted(p.name for p in cached.iterdir()) == sorted(FILES)
    assert {n: hashlib.md5((cached / n).read_bytes()).hexdigest() for n in FILES} == md5
    assert len(server.requests) == 4

    again = bounded(load_dataset, "tiny", progress=False)
    assert_same_data(again, arrays)
    assert again.source == str(cached)
    assert len(server.requests) == 4


def test_only_missing_files_are_downloaded(server, tmp_path, monkeypatch, write_tiny_idx, make_tiny_arrays):
    arrays = make_tiny_arrays()
    md5 = publish(server, tmp_path, "ok", arrays)
    register(monkeypatch, md5, [f"{server.url}/ok/"])
    write_tiny_idx(tmp_path / "cache" / "tiny", arrays, skip={"t10k-labels-idx1-ubyte.gz"})
    data = bounded(load_dataset, "tiny", cache_dir=tmp_path / "cache", progress=False)
    assert_same_data(data, arrays)
    assert server.requests == ["/ok/t10k-labels-idx1-ubyte.gz"]


def test_no_mirror_reachable(tmp_path, monkeypatch) -> None:
    mirrors = [closed_port_url(), closed_port_url()]
    register(monkeypatch, {n: "0" * 32 for n in FILES}, mirrors)
    with pytest.raises(DigitsError) as info:
        bounded(load_dataset, "tiny", cache_dir=tmp_path / "cache", progress=False)
    message = str(info.value)
    for base in mirrors:
        assert base + "train-images-idx3-ubyte.gz" in message
    assert "--data-dir" in message and "DIGITS_DATA_DIR" in message
    assert list((tmp_path / "cache" / "tiny").iterdir()) == []


def test_mirrors_env_and_progress_on_stderr(server, tmp_path, monkeypatch, capsys, make_tiny_arrays):
    arrays = make_tiny_arrays()
    md5 = publish(server, tmp_path, "tiny", arrays)
    register(monkeypatch, md5, [closed_port_url()])
    monkeypatch.setenv("DIGITS_MIRRORS", f"{server.url}/{{name}}/")
    data = bounded(load_dataset, "tiny", cache_dir=tmp_path / "cache", progress=True)
    assert_same_data(data, arrays)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "\rdownloading train-images-idx3-ubyte.gz [" in captured.err
    assert "100%" in captured.err

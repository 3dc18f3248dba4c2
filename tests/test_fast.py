import numpy as np
import pytest
from scipy.fft import idct

from kinsul.tokenizers.fast import FastTokenizer

H, A, SCALE = 10, 3, 10.0


def smooth_chunks(n: int, seed: int) -> np.ndarray:
    """Random smooth chunks in [-1, 1]: a few low DCT frequencies per dimension."""
    rng = np.random.default_rng(seed)
    coeffs = np.zeros((n, H, A))
    coeffs[:, :4] = rng.normal(0, [1.0, 0.5, 0.25, 0.1], size=(n, A, 4)).transpose(0, 2, 1)
    chunks = idct(coeffs, type=2, norm="ortho", axis=1)
    return np.clip(chunks, -1, 1).astype(np.float32)


@pytest.fixture(scope="module")
def fast():
    return FastTokenizer(H, A, scale=SCALE, vocab_size=256).fit(smooth_chunks(2000, 0))


def test_round_trip_error_within_quantisation_bound(fast):
    """Rounding moves each orthonormal coefficient by <= 0.5/scale, so an element moves by at most
    0.5/scale * sum_k |basis_k(t)| and the RMS error is about 0.5/scale/sqrt(3)."""
    basis = idct(np.eye(H), type=2, norm="ortho", axis=0)
    bound = 0.5 / SCALE * np.abs(basis).sum(axis=1).max()
    chunks = smooth_chunks(300, 1)
    errors = []
    for chunk in chunks:
        decoded, valid = fast.decode(fast.encode(chunk))
        assert valid and decoded.shape == (H, A)
        assert np.abs(decoded - chunk).max() <= bound + 1e-6
        errors.append(decoded - chunk)
    assert np.sqrt(np.mean(np.square(errors))) <= 1.2 * 0.5 / SCALE / np.sqrt(3)


def test_compresses_smooth_chunks(fast):
    lengths = [len(fast.encode(c)) for c in smooth_chunks(300, 2)]
    ratio = H * A / np.mean(lengths)
    print(f"FAST compression: {H * A} coefficients -> {np.mean(lengths):.1f} tokens ({ratio:.2f}x)")
    assert ratio > 1.5


def test_wrong_length_decodes_without_crash(fast):
    ids = fast.encode(smooth_chunks(1, 3)[0])
    for bad in ([], ids[:1], ids + ids, [10_000, -1]):
        chunk, valid = fast.decode(bad)
        assert chunk.shape == (H, A) and not valid


def test_save_load_round_trip(fast, tmp_path):
    fast.save(tmp_path / "fast")
    again = FastTokenizer.load(tmp_path / "fast")
    chunk = smooth_chunks(1, 4)[0]
    assert again.encode(chunk) == fast.encode(chunk)
    with pytest.raises(ValueError, match="not a saved FAST tokenizer"):
        FastTokenizer.load(tmp_path / "missing")

"""Frequency Refinement and the DCT machinery against independent scipy references."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.fft
import torch

from segshield._checks import values_checked
from segshield.defenses import (
    FeatureDistillation,
    FrequencyRefinement,
    band_table,
    block_dct,
    block_idct,
    dct_matrix,
    frequency_refine,
    pad_to_multiple,
    quantize_blocks,
    scale_table,
    smooth_round,
    zigzag_order,
    zigzag_table,
)

PAPER = (30.0, 5.0, 60.0)


def paper_table(pd=30.0, ac=5.0, gd=60.0) -> np.ndarray:
    """docs/ALGORITHMS.md §2 table written out band by band (independent of band_table)."""
    q = np.empty((8, 8))
    for u in range(8):
        for v in range(8):
            q[u, v] = pd if (u < 2 and v < 2) else ac if (u < 4 and v < 4) else gd
    return q


def reference_fr(x: np.ndarray, q: np.ndarray, pad: str = "zero", smooth: bool = False):
    """Per-block loop with scipy's orthonormal DCT; returns (result in [0,1], tie mask).

    ``x``: (B, C, H, W) float64 in [0, 1]; ``q``: (8, 8) or (C, 8, 8). The tie mask marks
    pixels of blocks where some |C/Q - (k + 0.5)| < 1e-6 (rounding there is ambiguous).
    """
    b, c, h, w = x.shape
    ph, pw = (-h) % 8, (-w) % 8
    mode = "constant" if pad == "zero" else "edge"
    v = np.pad(x * 255.0, ((0, 0), (0, 0), (0, ph), (0, pw)), mode=mode)
    out = np.empty_like(v)
    tie = np.zeros(v.shape, dtype=bool)
    for i in range(b):
        for ch in range(c):
            qc = q[ch] if q.ndim == 3 else q
            for r in range(0, v.shape[2], 8):
                for s in range(0, v.shape[3], 8):
                    coef = scipy.fft.dctn(v[i, ch, r : r + 8, s : s + 8], norm="ortho")
                    t = coef / qc
                    k = np.round(t)
                    if smooth:
                        k = k + (t - k) ** 3
                    tie[i, ch, r : r + 8, s : s + 8] = (
                        np.abs(np.abs(t - np.floor(t)) - 0.5) < 1e-6
                    ).any()
                    out[i, ch, r : r + 8, s : s + 8] = scipy.fft.idctn(k * qc, norm="ortho")
    out = np.clip(out, 0, 255) / 255.0
    return out[:, :, :h, :w], tie[:, :, :h, :w]


def quantised_images(shape, seed=0) -> torch.Tensor:
    """Random 8-bit images (k / 255), as the paper's pipeline reads PNGs."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=g).float() / 255.0


def smooth_images(shape, seed=0) -> torch.Tensor:
    """Smooth random images (low-pass noise), so FR changes little but something."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g)
    x = torch.nn.functional.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)
    return x.clamp(0, 1)


# --- dct.py -------------------------------------------------------------------------------


def test_dct_matrix_matches_scipy_and_is_orthonormal():
    d = dct_matrix(8)
    ref = scipy.fft.dct(np.eye(8), norm="ortho", axis=0)
    np.testing.assert_allclose(d.numpy(), ref, atol=1e-14)
    np.testing.assert_allclose((d @ d.T).numpy(), np.eye(8), atol=1e-14)
    assert dct_matrix(4, dtype=torch.float32).dtype == torch.float32
    d.zero_()  # returns a copy: the cache is untouched
    assert dct_matrix(8)[0, 0] > 0


def test_block_dct_matches_per_block_scipy_and_inverts():
    x = torch.rand(2, 3, 16, 24, dtype=torch.float64)
    c = block_dct(x)
    assert c.shape == (2, 3, 2, 3, 8, 8)
    for i, j in [(0, 0), (1, 2), (0, 1)]:
        ref = scipy.fft.dctn(x[1, 2, 8 * i : 8 * i + 8, 8 * j : 8 * j + 8].numpy(), norm="ortho")
        np.testing.assert_allclose(c[1, 2, i, j].numpy(), ref, atol=1e-12)
    torch.testing.assert_close(block_idct(c), x)


def test_pad_to_multiple_modes():
    x = torch.rand(1, 2, 11, 9)
    for mode in ("edge", "zero"):
        y, size = pad_to_multiple(x, 8, mode)
        assert y.shape == (1, 2, 16, 16) and size == (11, 9)
        torch.testing.assert_close(y[..., :11, :9], x)
        fill = x[..., -1:, :1].expand(1, 2, 5, 1) if mode == "edge" else torch.zeros(1, 2, 5, 1)
        torch.testing.assert_close(y[..., 11:, :1], fill)
    y, size = pad_to_multiple(x, 8, "crop")
    assert y.shape == (1, 2, 8, 8) and size == (11, 9)
    same, _ = pad_to_multiple(torch.rand(1, 1, 8, 16))
    assert same.shape == (1, 1, 8, 16)


def test_zigzag_order_is_the_jpeg_scan():
    zz = zigzag_order(8).tolist()
    assert sorted(zz) == list(range(64))
    # walk the anti-diagonals independently: direction alternates, starting upward-right
    expect = []
    for s in range(15):
        cells = [(u, s - u) for u in range(8) if 0 <= s - u < 8]
        expect += [u * 8 + v for u, v in (cells if s % 2 else cells[::-1])]
    assert zz == expect
    assert zz[:10] == [0, 1, 8, 16, 9, 2, 3, 10, 17, 24]


def test_dct_errors():
    with pytest.raises(ValueError, match="multiples of 8"):
        block_dct(torch.rand(1, 1, 9, 8))
    with pytest.raises(ValueError, match=r"\(B, C, H/8, W/8, 8, 8\)"):
        block_idct(torch.rand(1, 1, 2, 2, 4, 4))
    with pytest.raises(TypeError, match="floating-point"):
        block_idct(torch.zeros(1, 1, 1, 1, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="mode"):
        pad_to_multiple(torch.rand(1, 1, 9, 9), 8, "reflect")
    with pytest.raises(ValueError, match="at least 8x8"):
        pad_to_multiple(torch.rand(1, 1, 5, 9), 8, "crop")
    with pytest.raises(TypeError, match="integer"):
        pad_to_multiple(torch.rand(1, 1, 5, 9), 2.5)
    with pytest.raises(ValueError, match="n"):
        dct_matrix(0)
    with pytest.raises(TypeError):
        zigzag_order(8.5)


def test_one_pad_to_multiple_and_the_deprecated_models_alias():
    from segshield.defenses import dct
    from segshield.models import base
    from segshield.utils import padding

    assert dct.pad_to_multiple is padding.pad_to_multiple is pad_to_multiple
    x = torch.rand(1, 1, 5, 9)
    with pytest.warns(DeprecationWarning, match="segshield.utils.padding.pad_to_multiple"):
        old = base.pad_to_multiple
    y, h, w = old(x, 4)  # the old contract: (padded, H, W), edge replication
    assert (tuple(y.shape), h, w) == ((1, 1, 8, 12), 5, 9)
    torch.testing.assert_close(y, pad_to_multiple(x, 4, "edge")[0])
    assert "pad_to_multiple" not in base.__all__


# --- quantize_blocks ------------------------------------------------------------------------


@pytest.mark.parametrize("pad", ["edge", "zero"])
def test_quantize_blocks_matches_per_block_reference(pad):
    x = quantised_images((2, 3, 21, 30), seed=4).double()
    q = 1 + 40 * torch.rand(
        3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    ref, tie = reference_fr(x.numpy(), q.numpy(), pad=pad)
    for table in (q, q.unsqueeze(0)):  # one per-channel table, and a batch of one
        y = quantize_blocks(x, table, pad=pad)
        y = y[0] if table.ndim == 4 else y
        np.testing.assert_allclose(y.numpy()[~tie], ref[~tie], atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("pad", ["edge", "zero"])
def test_quantize_blocks_batch_equals_one_table_at_a_time_bit_for_bit(pad, dtype):
    g = torch.Generator().manual_seed(2)
    for shape in ((2, 3, 17, 33), (1, 1, 8, 8), (3, 1, 40, 23)):
        x = torch.rand(shape, generator=g).to(dtype)
        c = shape[1]
        shared, per_channel = (
            1 + 60 * torch.rand(v, k, 8, 8, generator=g) for v, k in ((4, 1), (3, c))
        )
        for tables in (shared, per_channel):
            batch = quantize_blocks(x, tables, pad=pad)
            assert batch.shape == (tables.shape[0], *shape) and batch.dtype == dtype
            for i, t in enumerate(tables):
                single = quantize_blocks(x, t if c > 1 else t[0], pad=pad)
                assert torch.equal(batch[i], single)
                assert torch.equal(single, FrequencyRefinement.from_table(t, pad=pad)(x))


def test_quantize_blocks_zero_steps_leave_coefficients_untouched():
    x = torch.rand(2, 1, 16, 24, dtype=torch.float64)
    torch.testing.assert_close(quantize_blocks(x, torch.zeros(8, 8), clip=False), x)
    t = torch.zeros(8, 8, dtype=torch.float64)
    t[0, 0] = 40.0  # only the DC term is quantised
    c_in, c_out = block_dct(x * 255), block_dct(quantize_blocks(x, t, clip=False) * 255)
    torch.testing.assert_close(c_out[..., 1:, :], c_in[..., 1:, :])
    torch.testing.assert_close(c_out[..., 0, 0], torch.round(c_in[..., 0, 0] / 40) * 40)


@pytest.mark.parametrize("pad", ["edge", "zero"])
def test_quantize_blocks_traceable_path_gives_the_eager_numbers(pad):
    """traceable=True (for graph export) is the same quantiser, up to float summation order."""
    g = torch.Generator().manual_seed(3)
    for shape in ((2, 3, 223, 191), (1, 1, 1, 1), (1, 2, 8, 8), (3, 1, 9, 17)):
        x = torch.rand(shape, generator=g)
        tables = 1 + 60 * torch.rand(4, shape[1], 8, 8, generator=g)
        tables[0, 0, 0, 0] = 0.0  # a zero step: the coefficient is kept
        for table in (tables[1, 0], tables[1], tables):
            for smooth in (False, True):
                eager = quantize_blocks(x, table, pad=pad, smooth=smooth)
                traced = quantize_blocks(x, table, pad=pad, smooth=smooth, traceable=True)
                assert traced.shape == eager.shape and traced.dtype == eager.dtype
                torch.testing.assert_close(traced, eager, atol=1e-6, rtol=0)
    fr = FrequencyRefinement(pad=pad)
    x = torch.rand(2, 3, 30, 17, generator=g)
    torch.testing.assert_close(fr.transform(x, traceable=True), fr(x), atol=1e-6, rtol=0)


def test_quantize_blocks_traceable_exports_for_any_size():
    """One torch.export trace with symbolic B, H, W serves sizes 1x1 to 223x191."""
    from torch.export import Dim
    from torch.fx.experimental import _config as shape_config

    fr = FrequencyRefinement()

    class Defended(torch.nn.Module):
        def forward(self, x):
            return fr.transform(x, traceable=True)

    example = torch.rand(2, 3, 64, 48)
    fr(example)  # build the cached operands outside the trace (constants in the graph)
    size = {"min": 1, "max": 4096}
    dims = {"x": {0: Dim("b", **size), 2: Dim("h", **size), 3: Dim("w", **size)}}
    with shape_config.patch(backed_size_oblivious=True):
        program = torch.export.export(Defended(), (example,), dynamic_shapes=dims, strict=False)
    g = torch.Generator().manual_seed(5)
    for shape in ((1, 3, 1, 1), (5, 3, 8, 8), (1, 3, 9, 17), (5, 3, 223, 191)):
        x = torch.rand(shape, generator=g)
        torch.testing.assert_close(program.module()(x), fr(x), atol=1e-6, rtol=0)


def test_quantize_blocks_errors():
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="steps >= 0"):
        quantize_blocks(x, -torch.ones(8, 8))
    with pytest.raises(ValueError, match=r"\(V, C, 8, 8\)"):
        quantize_blocks(x, torch.ones(2, 2, 2, 8, 8))
    with pytest.raises(ValueError, match="one table per channel"):
        quantize_blocks(x, torch.ones(4, 2, 8, 8))
    with pytest.raises(ValueError, match="pad"):
        quantize_blocks(x, torch.ones(8, 8), pad="crop")
    with pytest.raises(ValueError, match="scale"):
        quantize_blocks(x, torch.ones(8, 8), scale=0)
    with pytest.raises(ValueError, match="compute_dtype"):
        quantize_blocks(x, torch.ones(8, 8), compute_dtype=torch.float16)
    with pytest.raises(TypeError):
        quantize_blocks(x.numpy(), torch.ones(8, 8))


# --- FR values ----------------------------------------------------------------------------


def test_paper_mode_equals_per_block_reference_except_ties():
    x = quantised_images((2, 3, 224, 224))
    y = FrequencyRefinement(*PAPER, pad="zero")(x)
    ref, tie = reference_fr(x.double().numpy(), paper_table())
    assert y.shape == x.shape and y.dtype == torch.float32
    ok = ~tie
    assert ok.mean() > 0.9  # ties are rare; most of the image is compared
    np.testing.assert_allclose(y.double().numpy()[ok], ref[ok], rtol=0, atol=1e-6)
    assert (y.numpy() != x.numpy()).mean() > 0.5  # FR really changed the image


def test_default_edge_mode_on_odd_sizes_and_channels():
    for c in (1, 4):
        x = smooth_images((1, c, 223, 191), seed=c)
        y = FrequencyRefinement()(x)
        ref, tie = reference_fr(x.double().numpy(), paper_table(), pad="edge")
        assert y.shape == x.shape
        diff = np.abs(y.double().numpy() - ref)
        # float32 arithmetic: a coefficient within ~1e-4 of a rounding tie may flip
        assert (diff[~tie] > 1e-4).mean() < 0.01
        assert np.median(diff) < 1e-6


def test_zero_padding_result_is_cropped_padded_result():
    x = quantised_images((1, 1, 20, 13), seed=3)
    padded = torch.nn.functional.pad(x, (0, 3, 0, 4))
    fr = FrequencyRefinement(pad="zero")
    torch.testing.assert_close(fr(x), fr(padded)[..., :20, :13], rtol=0, atol=1e-6)


def test_float64_input_is_exact_in_default_mode():
    x = smooth_images((1, 3, 32, 40), seed=5).double()
    y = FrequencyRefinement(gd=80)(x)
    ref, tie = reference_fr(x.numpy(), paper_table(gd=80), pad="edge")
    assert y.dtype == torch.float64
    np.testing.assert_allclose(y.numpy()[~tie], ref[~tie], rtol=0, atol=1e-10)


def test_idempotent_without_clip():
    x = quantised_images((2, 3, 48, 64), seed=1).double()
    fr = FrequencyRefinement(clip=False)
    y = fr(x)
    with values_checked():  # y leaves [0, 1] on purpose; the defence refuses it otherwise
        torch.testing.assert_close(fr(y), y, rtol=0, atol=1e-9)
    # float32 default too, to float tolerance
    fr32 = FrequencyRefinement(clip=False)
    y32 = fr32(x.float())
    with values_checked():
        torch.testing.assert_close(fr32(y32), y32, rtol=0, atol=2e-5)
    # and the clip is what breaks range: unclipped output leaves [0, 1] on noise
    assert float(y.min()) < 0 or float(y.max()) > 1


def test_shape_dtype_device_preserved(device):
    for dtype in (torch.float32, torch.float64, torch.float16):
        x = smooth_images((2, 3, 17, 30)).to(device=device, dtype=dtype)
        for fr in (FrequencyRefinement(), FrequencyRefinement(pad="zero", gradient="smooth")):
            y = fr(x)
            assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
            assert float(y.min()) >= 0 and float(y.max()) <= 1


def test_cuda_matches_cpu(device):
    if device.type != "cuda":
        pytest.skip("CPU-only run")
    x = quantised_images((2, 3, 64, 72), seed=9)
    fr = FrequencyRefinement(pad="zero")
    y_cpu, y_gpu = fr(x), fr(x.to(device)).cpu()
    assert (y_cpu - y_gpu).abs().gt(1e-6).float().mean() < 0.01


def test_uint8_numpy_round_trip():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (37, 45, 3), dtype=np.uint8)
    fr = FrequencyRefinement(pad="zero")
    out = fr(img)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == img.shape
    ref, tie = reference_fr(img.transpose(2, 0, 1)[None].astype(np.float64) / 255.0, paper_table())
    ref_u8 = np.clip(np.round(ref[0] * 255), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    ok = ~tie[0].transpose(1, 2, 0)
    np.testing.assert_array_equal(out[ok], ref_u8[ok])
    grey = img[:, :, 0]
    out_g = fr(grey)
    assert out_g.shape == grey.shape and out_g.dtype == np.uint8
    np.testing.assert_array_equal(out_g, out[:, :, 0][..., None][..., 0])
    # uint16 in, uint16 out
    out16 = fr(grey.astype(np.uint16) * 257)
    assert out16.dtype == np.uint16 and out16.shape == grey.shape


def test_numpy_errors():
    fr = FrequencyRefinement()
    with pytest.raises(TypeError, match="uint8 or uint16"):
        fr(np.zeros((8, 8), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, C\)"):
        fr(np.zeros((8,), dtype=np.uint8))


# --- gradients ----------------------------------------------------------------------------


def test_bpda_gradient_is_identity():
    x = smooth_images((2, 3, 20, 24)).requires_grad_(True)
    g = torch.randn(2, 3, 20, 24)
    y = FrequencyRefinement()(x)
    y.backward(g)
    torch.testing.assert_close(x.grad, g, rtol=0, atol=0)
    # forward is still FR
    torch.testing.assert_close(y.detach(), FrequencyRefinement()(x.detach()), rtol=0, atol=1e-6)


def test_smooth_gradient_matches_surrogate():
    x = quantised_images((1, 1, 16, 16), seed=2).double()
    fr = FrequencyRefinement(gradient="smooth", clip=False)
    ref, _ = reference_fr(x.numpy(), paper_table(), pad="edge", smooth=True)
    y = fr(x)
    # reference_fr clips; compare inside the range only
    inside = (ref > 1e-9) & (ref < 1 - 1e-9)
    np.testing.assert_allclose(y.detach().numpy()[inside], ref[inside], atol=1e-10)
    xs = x[..., :8, :8].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(fr, (xs,), eps=1e-7, atol=1e-5)
    xg = smooth_images((1, 3, 24, 24)).requires_grad_(True)
    FrequencyRefinement(gradient="smooth")(xg).square().sum().backward()
    assert torch.isfinite(xg.grad).all() and xg.grad.abs().sum() > 0


def test_smooth_round_surrogate():
    t = torch.tensor([0.2, 1.5, 2.5, -0.7], dtype=torch.float64, requires_grad=True)
    y = smooth_round(t)
    r = torch.tensor([0.0, 2.0, 2.0, -1.0], dtype=torch.float64)  # half to even
    torch.testing.assert_close(y.detach(), r + (t.detach() - r) ** 3)
    y.sum().backward()
    torch.testing.assert_close(t.grad, 3 * (t.detach() - r) ** 2)


# --- tables and constructors --------------------------------------------------------------


def test_band_table_and_sizes():
    np.testing.assert_array_equal(band_table().numpy(), paper_table())
    t = band_table(10, 20, 30, pd_size=1, ac_size=3)
    assert t[0, 0] == 10 and t[0, 1] == 20 and t[2, 2] == 20 and t[3, 0] == 30
    np.testing.assert_array_equal(FrequencyRefinement(gd=80).table.numpy(), paper_table(gd=80))


def test_per_channel_table_equals_channelwise_fr():
    x = quantised_images((2, 3, 24, 16), seed=4)
    tables = torch.stack([band_table(30, 5, 60), band_table(10, 2, 20), band_table(50, 50, 90)])
    y = FrequencyRefinement.from_table(tables, pad="zero")(x)
    for c in range(3):
        yc = FrequencyRefinement.from_table(tables[c], pad="zero")(x[:, c : c + 1])
        torch.testing.assert_close(y[:, c : c + 1], yc, rtol=0, atol=1e-7)
    ref, tie = reference_fr(x.double().numpy(), tables.numpy())
    np.testing.assert_allclose(y.double().numpy()[~tie], ref[~tie], atol=1e-6)


def test_from_zigzag():
    steps = torch.arange(1, 65, dtype=torch.float64)
    t = zigzag_table(steps)
    np.testing.assert_array_equal(t.flatten()[zigzag_order()].numpy(), steps.numpy())
    fr = FrequencyRefinement.from_zigzag((30, 5, 60), bounds=(3, 10))
    zz = zigzag_order().tolist()
    flat = fr.table.flatten()
    assert all(flat[i] == 30 for i in zz[:3]) and all(flat[i] == 5 for i in zz[3:10])
    assert all(flat[i] == 60 for i in zz[10:])


def test_scale_table_matches_libjpeg_tables():
    import io

    from PIL import Image

    # Annex K luminance table, the table libjpeg scales by quality
    lum = torch.tensor(
        [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
         14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
         18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
         49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99],
        dtype=torch.float64,
    ).reshape(8, 8)  # fmt: skip
    for q in (10, 50, 75, 95):
        buf = io.BytesIO()
        Image.new("L", (8, 8)).save(buf, format="JPEG", quality=q)
        buf.seek(0)
        with Image.open(buf) as im:
            pil = np.array(im.quantization[0], dtype=np.float64)
        ours = scale_table(lum, q).flatten().numpy()
        # Pillow reports natural (row-major) order; baseline libjpeg caps steps at 255,
        # FR tables are not capped (steps > 255 are meaningful on the 0..255 scale).
        np.testing.assert_array_equal(np.minimum(ours, 255), pil)
    fr = FrequencyRefinement(quality=50)
    np.testing.assert_array_equal(fr.table.numpy(), paper_table())


def test_file_round_trip(tmp_path):
    tables = torch.stack([band_table(), band_table(20, 4, 70)])
    fr = FrequencyRefinement.from_table(tables, pad="zero", gradient="smooth")
    path = tmp_path / "t.json"
    fr.to_file(path)
    data = json.loads(path.read_text())
    assert data["format"] == "segshield-fr-table" and len(data["table"]) == 2
    back = FrequencyRefinement.from_file(path)
    torch.testing.assert_close(back.table, fr.table)
    assert (back.pad, back.gradient, back.clip) == ("zero", "smooth", True)
    assert FrequencyRefinement.from_file(path, pad="edge").pad == "edge"


def test_feature_distillation_is_fr_with_two_band_table():
    fd = FeatureDistillation()
    expect = np.full((8, 8), 30.0)
    expect[:4, :4] = 25.0
    np.testing.assert_array_equal(fd.table.numpy(), expect)
    x = quantised_images((1, 3, 16, 16), seed=6)
    ref, tie = reference_fr(x.double().numpy(), expect, pad="zero")
    y = FeatureDistillation(pad="zero")(x)
    np.testing.assert_allclose(y.double().numpy()[~tie], ref[~tie], atol=1e-6)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: FrequencyRefinement(pd=0), ValueError, "pd"),
        (lambda: FrequencyRefinement(gd="a"), TypeError, "gd"),
        (lambda: FrequencyRefinement(pd_size=3, ac_size=2), ValueError, "ac_size"),
        (lambda: FrequencyRefinement(pd_size=2.5), TypeError, "pd_size"),
        (lambda: FrequencyRefinement(pad="crop"), ValueError, "pad"),
        (lambda: FrequencyRefinement(clip="yes"), TypeError, "clip"),
        (lambda: FrequencyRefinement(gradient="exact"), ValueError, "'bpda', 'smooth'"),
        (lambda: FrequencyRefinement(quality=0), ValueError, "quality"),
        (lambda: FrequencyRefinement(compute_dtype=torch.int32), ValueError, "compute_dtype"),
        (lambda: FrequencyRefinement.from_table(torch.ones(4, 4)), ValueError, r"\(8, 8\)"),
        (lambda: FrequencyRefinement.from_table(torch.zeros(8, 8)), ValueError, "> 0"),
        (lambda: zigzag_table(range(10)), ValueError, "64 steps"),
        (lambda: zigzag_table((1, 2), bounds=(5, 3)), ValueError, "increasing"),
        (lambda: zigzag_table((1, 2), bounds=(3, 5)), ValueError, "3 steps"),
        (lambda: scale_table(band_table(), 101), ValueError, "quality"),
        (lambda: scale_table(band_table(), 50.5), TypeError, "quality"),
        (
            lambda: frequency_refine(torch.rand(1, 2, 8, 8), torch.ones(3, 8, 8)),
            ValueError,
            "one table per channel",
        ),
        (lambda: FrequencyRefinement()(torch.rand(3, 8, 8)), ValueError, r"\(B, C, H, W\)"),
        (
            lambda: FrequencyRefinement()(torch.zeros(1, 1, 8, 8, dtype=torch.long)),
            TypeError,
            "float",
        ),
    ],
)
def test_fr_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_from_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such FR table"):
        FrequencyRefinement.from_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a JSON"):
        FrequencyRefinement.from_file(bad)
    bad.write_text('{"steps": []}')
    with pytest.raises(ValueError, match="'table'"):
        FrequencyRefinement.from_file(bad)
    bad.write_text('{"format": "other", "table": []}')
    with pytest.raises(ValueError, match="format"):
        FrequencyRefinement.from_file(bad)


def test_autograd_and_no_grad_paths_agree():
    x = quantised_images((1, 3, 21, 16), seed=8)
    table = band_table()
    plain = frequency_refine(x, table)
    tracked = frequency_refine(x.clone().requires_grad_(True), table)
    torch.testing.assert_close(tracked.detach(), plain, rtol=0, atol=0)
    x8 = x[..., :16, :16]
    torch.testing.assert_close(
        frequency_refine(x8.clone().requires_grad_(True), table).detach(),
        frequency_refine(x8, table),
        rtol=0,
        atol=0,
    )


def test_per_channel_table_channel_mismatch_in_module():
    fr = FrequencyRefinement.from_table(torch.full((3, 8, 8), 10.0))
    with pytest.raises(ValueError, match="one table per channel"):
        fr(torch.rand(1, 1, 8, 8))


def test_one_table_constructor():
    t = 1 + 50 * torch.rand(3, 8, 8, dtype=torch.float64)
    a = FrequencyRefinement(table=t, pad="zero", quality=60)
    b = FrequencyRefinement.from_table(t, pad="zero", quality=60)
    assert torch.equal(a.table, b.table) and a.spec() == b.spec()
    assert a.spec().startswith("fr:table=") and "quality" not in a.spec()
    x = torch.rand(1, 3, 19, 27)
    assert torch.equal(a(x), b(x))
    # the paper's band table given as a table is the band FR, but spelled as a table
    banded, tabled = FrequencyRefinement(), FrequencyRefinement(table=band_table())
    assert torch.equal(banded(x), tabled(x)) and banded.spec() != tabled.spec()
    assert FrequencyRefinement(table=band_table(), pd=30, gd=60.0).spec() == tabled.spec()
    with pytest.raises(ValueError, match="either a table or band settings.*gd, pd_size"):
        FrequencyRefinement(gd=80, pd_size=3, table=band_table())


def test_feature_distillation_custom_table_is_plain_fr():
    fr = FeatureDistillation.from_zigzag((30, 5, 60), bounds=(3, 10))
    assert type(fr) is FrequencyRefinement and fr.spec().startswith("fr:table=")

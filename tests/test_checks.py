"""``segshield._checks``: non-finite, out-of-range and channels-last images; one sync per call."""

from __future__ import annotations

import pytest
import torch

from segshield import _checks
from segshield._checks import check_images, checked_entry, values_checked
from segshield.attacks import ASMA, PGD, asma, dag, pgd
from segshield.attacks.adaptive import Defended
from segshield.attacks.cw import cw_l2
from segshield.defenses import get_defense
from segshield.models.base import SegmentationModel


@pytest.fixture
def value_checks(monkeypatch):
    """Count the value checks (each is one host sync)."""
    calls = []
    real = _checks._check_values

    def counting(x, name):
        calls.append(name)
        return real(x, name)

    monkeypatch.setattr(_checks, "_check_values", counting)
    monkeypatch.setattr(_checks._state, "last", None, raising=False)
    return calls


def model() -> SegmentationModel:
    torch.manual_seed(0)
    return SegmentationModel(torch.nn.Conv2d(3, 2, 1), num_classes=2, in_channels=3).eval()


# -- messages --------------------------------------------------------------------------------


def test_non_finite_values_are_counted():
    x = torch.rand(2, 3, 4, 4)
    x[0, 0, 0, :3] = float("nan")
    x[1, 2, 3, 0] = float("inf")
    x[1, 2, 3, 1] = -float("inf")
    with pytest.raises(ValueError) as exc:
        check_images(x, "x")
    assert str(exc.value).startswith(
        "x: expected finite values, got 5 non-finite of 96 (3 NaN, 2 inf); "
    )
    assert "torch.nan_to_num" in str(exc.value)


@pytest.mark.parametrize("spec", ["fr", "jpeg:q=75", "gaussian", "median"])
def test_defences_refuse_nan_on_entry(spec):
    x = torch.rand(1, 3, 16, 16)
    x[0, 1, 5, 5] = float("nan")
    with pytest.raises(ValueError, match=r"x: expected finite values, got 1 non-finite of 768"):
        get_defense(spec)(x)


@pytest.mark.parametrize(
    "lo,hi,fix",
    [
        (0.0, 255.0, "for 0..255 images use x / 255"),
        (0.0, 4095.0, "for 16-bit (0..65535) images use x / 65535"),
        (
            -2.1,
            2.6,
            "segshield images are not normalised: undo the normalisation (x * std + "
            "mean) and let the model wrapper normalise",
        ),
        (0.0, 70000.0, "scale the images to [0, 1] (e.g. x / x.max())"),
    ],
)
def test_out_of_range_names_the_range_and_the_fix(lo, hi, fix):
    x = torch.full((1, 3, 4, 4), (lo + hi) / 2)
    x[0, 0, 0, 0], x[0, 0, 0, 1] = lo, hi
    with pytest.raises(ValueError) as exc:
        check_images(x)
    assert str(exc.value) == (
        f"images: expected values in [0, 1], got min {lo:.4g} and max {hi:.4g}; {fix}"
    )


def test_float_rounding_just_outside_the_range_is_accepted():
    x = torch.rand(1, 1, 4, 4)
    x[0, 0, 0, 0], x[0, 0, 0, 1] = 1.0 + 1e-6, -1e-6
    assert check_images(x) is x
    x[0, 0, 0, 0] = 1.0 + 2 * _checks.RANGE_TOLERANCE
    with pytest.raises(ValueError, match="max 1.002"):
        check_images(x)


def test_model_refuses_0_255_images():
    with pytest.raises(ValueError, match="x / 255"):
        model()(torch.rand(1, 3, 8, 8) * 255)


@pytest.mark.parametrize("shape", [(2, 16, 16, 3), (2, 16, 16, 1), (1, 8, 8, 4)])
def test_channels_last_is_refused_with_the_permute(shape):
    with pytest.raises(ValueError) as exc:
        check_images(torch.rand(shape), "x")
    assert str(exc.value) == (
        f"x: expected channels first (B, C, H, W), got {shape}, which looks channels-last "
        "(B, H, W, C); use x.permute(0, 3, 1, 2)"
    )
    check_images(torch.rand(shape).permute(0, 3, 1, 2))


@pytest.mark.parametrize("shape", [(2, 3, 16, 3), (1, 4, 8, 3), (2, 16, 16, 5)])
def test_channels_first_shapes_pass(shape):
    check_images(torch.rand(shape))


def test_shape_only_mode_accepts_any_values():
    x = torch.full((1, 3, 4, 4), -300.0)
    assert check_images(x, check_range=False) is x


# -- when the value check runs -----------------------------------------------------------------


def test_values_checked_skips_and_restores_even_after_an_error(value_checks):
    bad = torch.full((1, 1, 2, 2), 255.0)
    with values_checked():
        with values_checked():
            check_images(bad)
        check_images(bad)
    with pytest.raises(RuntimeError), values_checked():
        raise RuntimeError("boom")
    with pytest.raises(ValueError, match="x / 255"):
        check_images(bad)
    assert value_checks == ["images"]
    with values_checked(), pytest.raises(ValueError, match="channels-last"):
        check_images(torch.rand(1, 8, 8, 3))  # shapes are still checked


def test_checked_entry_checks_the_named_argument_once(value_checks):
    seen = []

    @checked_entry("images")
    def f(scale, images):
        seen.append(check_images(images * scale, "inner").shape)
        return images

    f(255.0, torch.rand(1, 1, 2, 2))  # the inner, out-of-range tensor is not checked
    assert value_checks == ["images"] and seen == [torch.Size([1, 1, 2, 2])]
    with pytest.raises(ValueError, match="images: expected values"):
        f(1.0, images=torch.full((1, 1, 2, 2), 9.0))


def test_an_unchanged_tensor_is_checked_once_and_a_changed_one_again(value_checks):
    x = torch.rand(1, 3, 8, 8)
    check_images(x)
    check_images(x.detach())  # same memory, same version
    assert len(value_checks) == 1
    x.mul_(255)  # in place: a new version
    with pytest.raises(ValueError, match="x / 255"):
        check_images(x)
    with torch.inference_mode():
        y = torch.rand(1, 3, 8, 8)
        check_images(y)
        check_images(y)
    assert len(value_checks) == 4  # inference tensors have no version: checked each time


def test_a_defence_call_syncs_once(value_checks):
    x = torch.rand(2, 3, 16, 16)
    get_defense("fr")(x)  # forward, then frequency_refine and quantize_blocks on x
    assert value_checks == ["x"]


def test_tracing_skips_the_value_check(value_checks):
    m = model()
    traced = torch.jit.trace(m, torch.rand(1, 3, 8, 8), check_trace=False)
    assert value_checks == []
    torch.testing.assert_close(traced(torch.rand(1, 3, 8, 8)).shape, torch.Size([1, 2, 8, 8]))


def _count(value_checks, fn, steps: int) -> int:
    value_checks.clear()
    _checks._state.last = None
    fn(steps)
    return len(value_checks)


@pytest.mark.parametrize(
    "run",
    [
        lambda m, x, y, s: pgd(m, x, y, eps=0.05, alpha=0.01, steps=s),
        lambda m, x, y, s: asma(m, x, 1 - y, steps=s),
        lambda m, x, y, s: dag(m, x, y, 1 - y, steps=s),
        lambda m, x, y, s: cw_l2(
            lambda v: m(v).mean(dim=(2, 3)), x, y[:, 0, 0], search_steps=1, steps=s
        ),
        lambda m, x, y, s: PGD(eps=0.05, steps=s)(m, x, y),
        lambda m, x, y, s: ASMA(steps=s)(m, x, target_masks=1 - y),
        lambda m, x, y, s: PGD(eps=0.05, steps=s)(Defended(m, get_defense("fr")), x, y),
    ],
    ids=["pgd", "asma", "dag", "cw_l2", "PGD", "ASMA", "PGD-on-FR"],
)
def test_attacks_check_values_once_per_call_not_per_step(value_checks, run):
    m = model()
    x = torch.rand(2, 3, 8, 8)
    y = (x[:, 0] > 0.5).long()
    few = _count(value_checks, lambda s: run(m, x, y, s), 2)
    many = _count(value_checks, lambda s: run(m, x, y, s), 7)
    assert few == many and 1 <= few <= 2


def test_attacks_refuse_bad_images_on_entry():
    m = model()
    x = torch.rand(1, 3, 8, 8)
    y = torch.zeros(1, 8, 8, dtype=torch.long)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="images: expected finite values, got 1 non-finite"):
        pgd(m, x, y, steps=1)
    with pytest.raises(ValueError, match="images: expected values in"):
        PGD(steps=1)(m, torch.rand(1, 3, 8, 8) * 255, y)


def test_training_checks_the_first_batch_of_an_epoch_only(value_checks):
    from segshield.training.loop import _train_epoch

    m = model().train()
    batches = [torch.rand(2, 3, 8, 8) for _ in range(4)]

    class Steps:
        def batches(self, epoch):
            return batches

        def lr(self, epoch, step):
            return None

        def loss(self, net, batch):
            return net(batch).mean(), 1

    opt = torch.optim.SGD(m.parameters(), lr=0.0)
    _train_epoch(m, Steps(), opt, 1, 1, torch.device("cpu"))
    assert value_checks == ["images"]
    batches[0] = batches[0] * 255
    with pytest.raises(ValueError, match="x / 255"):
        _train_epoch(m, Steps(), opt, 1, 1, torch.device("cpu"))

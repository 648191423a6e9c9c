"""image_transforms: exact crop / flip / resize behaviour on known arrays, determinism."""
import numpy as np
import pytest
import torch
from PIL import Image

from workloads.datasets import image_transforms as T


def ramp(h, w):
    """uint8 [h, w, 3]: channel 0 = row, 1 = column, 2 = row + column (mod 256)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([y, x, (y + x) % 256], -1).astype(np.uint8)


def test_random_resized_crop_box_stays_inside_and_in_range():
    rng = np.random.default_rng(0)
    for _ in range(500):
        top, left, h, w = T.random_resized_crop_box(rng, 300, 500)
        assert 0 <= top and top + h <= 300 and 0 <= left and left + w <= 500
        if (h, w) != (300, 400):  # not the fallback
            assert 0.08 * 0.9 <= h * w / (300 * 500) <= 1.0
            assert 3 / 4 * 0.95 <= w / h <= 4 / 3 * 1.05


def test_random_resized_crop_box_is_the_documented_draw():
    # Replay the documented draws by hand: area fraction, log-ratio, then top, left.
    rng, ref = np.random.default_rng(5), np.random.default_rng(5)
    box = T.random_resized_crop_box(rng, 100, 120, scale=(0.5, 0.5), ratio=(1.0, 1.0))
    ref.uniform(0.5, 0.5), ref.uniform(0.0, 0.0)
    side = int(round(np.sqrt(0.5 * 100 * 120)))  # 77
    top, left = ref.integers(0, 100 - side + 1), ref.integers(0, 120 - side + 1)
    assert box == (top, left, side, side)


def test_random_resized_crop_fallback_is_the_central_clamped_box():
    # Scale > 1 can never fit: after 10 attempts the central box of the clamped ratio.
    rng = np.random.default_rng(0)
    assert T.random_resized_crop_box(rng, 100, 300, scale=(2, 2)) == (0, 83, 100, 133)
    assert T.random_resized_crop_box(rng, 100, 110, scale=(2, 2)) == (0, 0, 100, 110)


def test_center_crop_box_matches_algoperf_arithmetic():
    # s = int(224 / 256 * min(H, W)); offsets ((H - s) + 1) // 2.
    assert T.center_crop_box(256, 256) == (16, 16, 224, 224)
    assert T.center_crop_box(375, 500) == (24, 86, 328, 328)
    assert T.center_crop_box(32, 32, 32, 32) == (0, 0, 32, 32)


def test_crop_resize_is_an_exact_crop_at_the_target_size():
    image = Image.fromarray(ramp(40, 50))
    out = np.asarray(T.crop_resize(image, (3, 7, 16, 16), 16))
    np.testing.assert_array_equal(out, ramp(40, 50)[3:19, 7:23])


def test_crop_resize_downsamples_constant_and_linear_images_exactly():
    const = Image.fromarray(np.full((64, 64, 3), 77, np.uint8))
    assert (np.asarray(T.crop_resize(const, (0, 0, 64, 64), 16)) == 77).all()
    # Bicubic halving of a horizontal ramp: each output pixel is near its box's mean column.
    out = np.asarray(T.crop_resize(Image.fromarray(ramp(32, 64)), (0, 0, 32, 64), 32))
    np.testing.assert_allclose(out[16, 4:28, 1], 2 * np.arange(4, 28) + 0.5, atol=1.0)


def test_center_crop_resize_of_an_upscaled_image():
    # A 256x256 image -> central 224 box, already 224: an exact crop.
    a = ramp(256, 256)
    out = np.asarray(T.center_crop_resize(Image.fromarray(a), 224, 256))
    np.testing.assert_array_equal(out, a[16:240, 16:240])


def test_hflip_reverses_columns():
    a = ramp(5, 7)
    np.testing.assert_array_equal(np.asarray(T.hflip(Image.fromarray(a))), a[:, ::-1])


def test_rand_augment_is_deterministic_per_seed_and_changes_images():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 48, 3), np.uint8))
    a = [np.asarray(T.rand_augment(image, np.random.default_rng(s))) for s in (1, 1, 2)]
    np.testing.assert_array_equal(a[0], a[1])
    outs = {np.asarray(T.rand_augment(image, np.random.default_rng(s))).tobytes()
            for s in range(20)}
    assert len(outs) > 10  # different seeds, different ops
    assert all(np.asarray(T.rand_augment(image, np.random.default_rng(s))).shape == (48, 48, 3)
               for s in range(20))


@pytest.mark.parametrize("name", sorted(T.RANDAUG_OPS))
def test_every_rand_augment_op_keeps_shape_and_dtype(name):
    image = Image.fromarray(ramp(40, 40))
    out = np.asarray(T.RANDAUG_OPS[name](image, 10.0, np.random.default_rng(0)))
    assert out.shape == (40, 40, 3) and out.dtype == np.uint8


def test_rand_augment_ops_exact_on_known_arrays():
    image = Image.fromarray(ramp(20, 20))
    a = ramp(20, 20)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(np.asarray(T.RANDAUG_OPS["Invert"](image, 10, rng)), 255 - a)
    # Solarize at magnitude 5: threshold 128 -> pixels >= 128 inverted; ramp stays < 128.
    np.testing.assert_array_equal(np.asarray(T.RANDAUG_OPS["Solarize"](image, 5, rng)), a)
    # SolarizeAdd at magnitude 10 adds 110 to the pixels below 128 (all of them here).
    np.testing.assert_array_equal(np.asarray(T.RANDAUG_OPS["SolarizeAdd"](image, 10, rng)),
                                  a + 110)
    # Posterize at magnitude 10 keeps 4 bits.
    np.testing.assert_array_equal(np.asarray(T.RANDAUG_OPS["Posterize"](image, 10, rng)),
                                  a & 0xF0)
    # Brightness at magnitude 5: factor 1.0, the identity.
    np.testing.assert_array_equal(np.asarray(T.RANDAUG_OPS["Brightness"](image, 5, rng)), a)


def test_translate_moves_pixels_and_fills_grey():
    a = ramp(20, 20)
    out = np.asarray(T.RANDAUG_OPS["TranslateX"](Image.fromarray(a), 0.5,
                                                 np.random.default_rng(3)))
    # magnitude 0.5 -> 5 pixels, sign from the generator's first draw.
    shift = -5 if np.random.default_rng(3).random() < 0.5 else 5
    if shift > 0:  # output pixel x reads input x + 5
        np.testing.assert_array_equal(out[:, :15], a[:, 5:])
        assert (out[:, 15:] == 128).all()
    else:
        np.testing.assert_array_equal(out[:, 5:], a[:, :15])
        assert (out[:, :5] == 128).all()


def test_mixup_numpy_and_torch_agree_and_mix_rows_with_the_previous_one():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3, 2, 2)).astype(np.float32)
    y = np.array([0, 2, 1, 2])
    xm, ym = T.mixup(x, y, 3, 0.75)
    np.testing.assert_allclose(xm[1], 0.75 * x[1] + 0.25 * x[0], rtol=1e-6)
    np.testing.assert_allclose(xm[0], 0.75 * x[0] + 0.25 * x[3], rtol=1e-6)
    np.testing.assert_allclose(ym[1], [0.25, 0, 0.75])
    np.testing.assert_allclose(ym.sum(1), 1.0)
    # On the device, with the framework's roll: the same numbers.
    xt = T.mix(torch.from_numpy(x), 0.75, torch.roll)
    yt = T.mix(torch.nn.functional.one_hot(torch.from_numpy(y), 3).float(), 0.75, torch.roll)
    np.testing.assert_allclose(xt.numpy(), xm, rtol=1e-6)
    np.testing.assert_allclose(yt.numpy(), ym, rtol=1e-6)


def test_mixup_lambda_is_beta_distributed():
    rng = np.random.default_rng(0)
    lams = np.array([T.mixup_lambda(0.2, rng) for _ in range(4000)])
    assert ((lams >= 0) & (lams <= 1)).all()
    assert abs(lams.mean() - 0.5) < 0.03
    # Beta(0.2, 0.2) is U-shaped: most mass near 0 and 1.
    assert ((lams < 0.1) | (lams > 0.9)).mean() > 0.5

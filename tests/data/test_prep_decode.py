"""decode_image / open_image: every format and mode ends as 8-bit RGB(A) with the right pixels."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from prep_assets import design, pixel, png16_rgb

from ganplug.data import DEFAULT_MAX_PIXELS, ImageReadError, decode_image
from ganplug.data.decode import open_image, parse_color
from ganplug.errors import DataError


def test_transparency_composited_onto_the_background(tmp_path: Path) -> None:
    p = tmp_path / "a.png"
    im = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    im.putpixel((5, 5), (255, 0, 0, 255))
    im.putpixel((6, 5), (0, 0, 255, 128))  # half-transparent blue
    im.save(p)
    white = decode_image(p)
    assert white.shape == (10, 10, 3) and white.dtype == np.uint8
    assert pixel(white, 0, 0) == (255, 255, 255)
    assert pixel(white, 5, 5) == (255, 0, 0)
    # 50% blue over white: (255*127 + 0*128)/255 ~ 127 in R and G, 255 in B
    r, g, b = pixel(white, 5, 6)
    assert abs(r - 127) <= 1 and abs(g - 127) <= 1 and b == 255
    assert pixel(decode_image(p, background="black"), 0, 0) == (0, 0, 0)
    assert pixel(decode_image(p, background="gray"), 0, 0) == (128, 128, 128)
    assert pixel(decode_image(p, background="#10a0ff"), 0, 0) == (16, 160, 255)


def test_keep_alpha_returns_rgba_unchanged(tmp_path: Path) -> None:
    p = tmp_path / "a.png"
    im = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    im.putpixel((1, 2), (200, 100, 50, 77))
    im.save(p)
    arr = decode_image(p, keep_alpha=True)
    assert arr.shape == (4, 4, 4)
    assert pixel(arr, 2, 1) == (200, 100, 50, 77)
    assert arr[0, 0, 3] == 0
    # an opaque RGB file gets alpha 255
    q = tmp_path / "b.jpg"
    Image.new("RGB", (4, 4), (0, 128, 0)).save(q, quality=100)
    assert decode_image(q, keep_alpha=True)[..., 3].min() == 255


def test_grayscale_la_and_one_bit_expand_to_rgb(tmp_path: Path) -> None:
    Image.new("L", (3, 3), 77).save(tmp_path / "g.png")
    assert pixel(decode_image(tmp_path / "g.png"), 1, 1) == (77, 77, 77)
    la = Image.new("LA", (3, 3), (200, 0))
    la.putpixel((0, 0), (10, 255))
    la.save(tmp_path / "la.png")
    arr = decode_image(tmp_path / "la.png", background="black")
    assert pixel(arr, 0, 0) == (10, 10, 10) and pixel(arr, 2, 2) == (0, 0, 0)
    one = Image.new("1", (8, 8), 0)
    one.putpixel((3, 3), 1)
    one.save(tmp_path / "one.png")
    arr = decode_image(tmp_path / "one.png")
    assert pixel(arr, 3, 3) == (255, 255, 255) and pixel(arr, 0, 0) == (0, 0, 0)


def test_palette_with_transparent_index(tmp_path: Path) -> None:
    im = Image.new("P", (4, 4), 0)
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    im.putpixel((1, 1), 1)
    im.putpixel((2, 2), 2)
    im.info["transparency"] = 0
    im.save(tmp_path / "p.png", transparency=0)
    arr = decode_image(tmp_path / "p.png", background="#0000ff")
    assert pixel(arr, 1, 1) == (255, 0, 0)
    assert pixel(arr, 2, 2) == (0, 255, 0)
    assert pixel(arr, 0, 0) == (0, 0, 255)  # the transparent index shows the background


def test_sixteen_bit_is_scaled_not_clipped(tmp_path: Path) -> None:
    a = np.array([[0, 1000, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    arr = decode_image(tmp_path / "deep.png")
    # independent reference: v * 255 / 65535, rounded
    assert arr[0, :, 0].tolist() == [round(v * 255 / 65535) for v in (0, 1000, 32896, 65535)]
    assert arr[0, 1, 0] == 4  # clipping would have given 255


def test_sixteen_bit_rgb_png(tmp_path: Path) -> None:
    a = np.array([[[65535, 0, 32896], [1000, 65535, 0]]], dtype=np.uint16)
    arr = decode_image(png16_rgb(tmp_path / "deep_rgb.png", a))
    assert arr.shape == (1, 2, 3)
    assert np.abs(arr.astype(int) - np.round(a.astype(np.float64) * 255 / 65535)).max() <= 1


def test_cmyk_converts_to_rgb(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (4, 4), (255, 0, 0, 0))  # pure cyan
    cmyk.putpixel((0, 0), (0, 0, 0, 255))  # black
    cmyk.save(tmp_path / "c.tif")
    arr = decode_image(tmp_path / "c.tif")
    assert pixel(arr, 1, 1) == (0, 255, 255)
    assert pixel(arr, 0, 0) == (0, 0, 0)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # stored landscape: left half red, right half blue; EXIF 6 = display rotated 90 degrees clockwise
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    im.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    arr = decode_image(tmp_path / "rot.jpg")
    assert arr.shape == (40, 20, 3)  # now portrait
    top, bottom = arr[5, 10], arr[35, 10]
    assert top[0] > 200 and top[2] < 60  # red is on top after a clockwise turn
    assert bottom[2] > 200 and bottom[0] < 60


def test_gif_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    arr = decode_image(tmp_path / "anim.gif")
    assert pixel(arr, 4, 4) == (255, 0, 0)


@pytest.mark.parametrize("ext", ["png", "bmp", "tiff", "webp"])
def test_lossless_formats_decode_to_the_same_pixels(tmp_path: Path, ext: str) -> None:
    im = design((200, 30, 30), "triangle", (48, 40))
    kwargs = {"lossless": True} if ext == "webp" else {}
    im.save(tmp_path / f"x.{ext}", **kwargs)
    np.testing.assert_array_equal(decode_image(tmp_path / f"x.{ext}"), np.asarray(im))


def test_fake_png_is_refused_with_a_reason(tmp_path: Path) -> None:
    p = tmp_path / "fake.png"
    p.write_text("this is not a picture")
    with pytest.raises(ImageReadError) as e:
        decode_image(p)
    assert "not a valid PNG" in e.value.reason
    assert "fake.png" in str(e.value)
    assert isinstance(e.value, DataError)


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageReadError) as e:
        decode_image(tmp_path / "cut.png")
    assert "truncated or corrupt" in e.value.reason


def test_max_pixels_refuses_before_decoding_and_can_be_raised(tmp_path: Path) -> None:
    p = tmp_path / "big.png"
    Image.new("RGB", (300, 200), (1, 2, 3)).save(p)
    with pytest.raises(ImageReadError) as e:
        decode_image(p, max_pixels=50_000)
    assert "too large" in e.value.reason and "300x200" in e.value.reason and "--max-pixels" in str(e.value)
    assert decode_image(p, max_pixels=60_000).shape == (200, 300, 3)
    assert DEFAULT_MAX_PIXELS >= 50_000_000  # real concept art (8k x 6k) still reads by default


def test_max_pixels_above_pillows_own_guard_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pillow refuses images over 2x its MAX_IMAGE_PIXELS; raising --max-pixels must lift that too.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    Image.new("RGB", (100, 100)).save(tmp_path / "x.png")
    assert decode_image(tmp_path / "x.png", max_pixels=20_000).shape == (100, 100, 3)


def test_jpeg_draft_decodes_big_files_at_reduced_scale(tmp_path: Path) -> None:
    p = tmp_path / "photo.jpg"
    Image.new("RGB", (1600, 1200), (30, 90, 200)).save(p, quality=90)
    im = open_image(p, draft_need=128)
    assert 128 <= min(im.size) < 1200
    assert open_image(p).size == (1600, 1200)


def test_missing_and_unreadable_paths(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError) as e:
        decode_image(tmp_path / "nope.png")
    assert "not found" in e.value.reason
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    with pytest.raises(ImageReadError) as e:
        decode_image(loop)
    assert e.value.reason == "symlink loop"


def test_parse_color() -> None:
    assert parse_color("White") == (255, 255, 255)
    assert parse_color("#abc") == (0xAA, 0xBB, 0xCC)
    with pytest.raises(DataError, match="not understood"):
        parse_color("#12345z")

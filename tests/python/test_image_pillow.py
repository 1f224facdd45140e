"""The engine's image codecs against Pillow (decoding, EXIF orientation, encoding, the VOC
palette) and PyTorch (bilinear resize, input normalisation), through tests/tools/ecs_image_tool."""
import subprocess

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps


@pytest.fixture(scope="module")
def tool(bin_path):
    exe = bin_path("ecs_image_tool")

    def run(*args, check=True):
        p = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=30)
        if check and p.returncode != 0:
            pytest.fail(f"ecs_image_tool {' '.join(map(str, args))}: {p.stderr}")
        return p

    return run


def read_raw(path):
    b = path.read_bytes()
    w, h, c = np.frombuffer(b[:12], dtype="<i4")
    return np.frombuffer(b[12:], dtype=np.uint8).reshape(h, w, c)


def picture(w=37, h=23, seed=0):
    """Smooth gradients plus noise: JPEG-friendly but with every channel distinct."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([x * 255 / (w - 1), y * 255 / (h - 1), (x + y) * 127 / (w + h)], axis=-1)
    a = a + rng.normal(0, 8, a.shape)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


def decode(tool, tmp_path, path, grey=False):
    out = tmp_path / (path.name + ".raw")
    tool("decode", path, out, *(["grey"] if grey else []))
    return read_raw(out)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "P+trns"])
def test_png_modes_match_pillow(tool, tmp_path, mode):
    im = picture()
    path = tmp_path / "in.png"
    if mode == "P+trns":
        p = im.convert("P")
        p.info["transparency"] = 3
        p.save(path, transparency=3)
    else:
        im.convert(mode).save(path)
    want = np.asarray(Image.open(path).convert("RGB"))
    got = decode(tool, tmp_path, path)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_png_16_bit_keeps_the_high_byte(tool, tmp_path):
    rng = np.random.default_rng(3)
    a = rng.integers(0, 65536, size=(9, 14), dtype=np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(a).save(path)
    assert Image.open(path).mode.startswith("I")
    got = decode(tool, tmp_path, path, grey=True)
    np.testing.assert_array_equal(got[..., 0], (a >> 8).astype(np.uint8))


def test_png_grey_kept_when_asked(tool, tmp_path):
    path = tmp_path / "g.png"
    picture().convert("L").save(path)
    got = decode(tool, tmp_path, path, grey=True)
    assert got.shape[2] == 1
    np.testing.assert_array_equal(got[..., 0], np.asarray(Image.open(path)))


@pytest.mark.parametrize(
    "kind,kw",
    [
        ("RGB", dict(quality=90)),
        ("RGB", dict(quality=75, subsampling=0)),
        ("RGB", dict(quality=85, progressive=True)),
        ("L", dict(quality=90)),
        ("CMYK", dict(quality=95)),
    ],
)
def test_jpeg_matches_pillow(tool, tmp_path, kind, kw):
    path = tmp_path / "in.jpg"
    picture(48, 40).convert(kind).save(path, **kw)
    want = np.asarray(Image.open(path).convert("RGB")).astype(int)
    got = decode(tool, tmp_path, path).astype(int)
    assert got.shape == want.shape
    diff = np.abs(got - want)
    # Both are libjpeg-turbo with the same IDCT and upsampling; versions may round differently.
    assert diff.max() <= 2, diff.max()
    assert diff.mean() < 0.2


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tool, tmp_path, orientation):
    path = tmp_path / "o.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    picture(40, 24).save(path, quality=95, exif=exif.tobytes())
    want = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB")).astype(int)
    got = decode(tool, tmp_path, path).astype(int)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 2
    w, h, fmt = tool("probe", path).stdout.split()
    assert (int(w), int(h), fmt) == (want.shape[1], want.shape[0], "jpeg")


def test_encoders_read_back_in_pillow(tool, tmp_path):
    src = tmp_path / "src.png"
    im = picture()
    im.save(src)
    tool("encode", src, tmp_path / "out.png")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out.png")), np.asarray(im))
    tool("encode", src, tmp_path / "out.jpg", 95)
    back = Image.open(tmp_path / "out.jpg")
    assert back.format == "JPEG" and back.size == im.size
    # Pillow's own encoder at the same quality and 4:2:0 gives (nearly) the same picture.
    im.save(tmp_path / "pil.jpg", quality=95, subsampling=2)
    ref = np.asarray(Image.open(tmp_path / "pil.jpg")).astype(int)
    assert np.abs(np.asarray(back).astype(int) - ref).mean() < 0.5
    assert np.abs(np.asarray(back).astype(int) - np.asarray(im).astype(int)).mean() < 8


def voc_colormap():
    """The VOC devkit's labelcolormap, written out independently."""
    cmap = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


def test_voc_palette_mask(tool, tmp_path):
    out = tmp_path / "mask.png"
    tool("vocmask", 9, 5, out)
    im = Image.open(out)
    assert im.mode == "P"
    pal = np.array(im.getpalette()[: 256 * 3], dtype=np.uint8).reshape(256, 3)
    np.testing.assert_array_equal(pal, voc_colormap())
    assert tuple(pal[255]) == (224, 224, 192)
    idx = np.asarray(im)
    want = (np.arange(45) % 22).reshape(5, 9)
    want[-1] = 255
    np.testing.assert_array_equal(idx, want)
    tool("indexed", out, tmp_path / "idx.raw")
    np.testing.assert_array_equal(read_raw(tmp_path / "idx.raw")[..., 0], want)


@pytest.mark.parametrize("size", [(18, 11), (80, 50), (37, 23), (5, 40)])
def test_resize_matches_torch_bilinear(tool, tmp_path, size):
    src = tmp_path / "r.png"
    im = picture()
    im.save(src)
    tool("resize", src, tmp_path / "r.raw", *size)
    got = read_raw(tmp_path / "r.raw").astype(int)
    t = torch.from_numpy(np.asarray(im).astype(np.float32)).permute(2, 0, 1)[None]
    ref = F.interpolate(t, size=(size[1], size[0]), mode="bilinear", align_corners=False)
    ref = ref[0].permute(1, 2, 0).round().clamp(0, 255).numpy().astype(int)
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1


@pytest.mark.parametrize("src_size,size", [((400, 300), (40, 30)), ((400, 300), (57, 211)),
                                           ((37, 23), (80, 50)), ((451, 300), (338, 225)),
                                           ((1000, 7), (13, 1))])
def test_resample_matches_pillow_bilinear(tool, tmp_path, src_size, size):
    """The input-size policy's resampler: antialiased when shrinking, as Pillow's BILINEAR."""
    src = tmp_path / "s.png"
    g = np.random.default_rng(1)
    # a smooth picture plus fine noise, so aliasing would show
    yy, xx = np.mgrid[0:src_size[1], 0:src_size[0]]
    a = 127 + 60 * np.sin(xx / 9.0)[..., None] * np.cos(yy / 7.0)[..., None] \
        + g.integers(-60, 60, (src_size[1], src_size[0], 3))
    im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")
    im.save(src)
    tool("resample", src, tmp_path / "r.raw", *size)
    got = read_raw(tmp_path / "r.raw").astype(int)
    ref = np.asarray(im.resize(size, Image.BILINEAR)).astype(int)
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1
    if size[0] * 4 < src_size[0]:  # without antialiasing the noise would survive the shrink
        plain = torch.from_numpy(np.asarray(im).astype(np.float32)).permute(2, 0, 1)[None]
        plain = F.interpolate(plain, size=(size[1], size[0]), mode="bilinear", align_corners=False)
        plain = plain[0].permute(1, 2, 0).numpy()
        assert np.abs(plain - ref).mean() > 3 * np.abs(got - ref).mean() + 1


def test_chw_normalisation(tool, tmp_path):
    src = tmp_path / "c.png"
    im = picture()
    im.save(src)
    tool("chw", src, tmp_path / "c.f32")
    got = np.fromfile(tmp_path / "c.f32", dtype=np.float32).reshape(3, im.size[1], im.size[0])
    a = np.asarray(im).astype(np.float32) / 255.0
    want = ((a - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).transpose(2, 0, 1)
    assert np.linalg.norm(got - want) / np.linalg.norm(want) <= 1e-5


def test_bad_input_is_an_error_not_a_crash(tool, tmp_path):
    path = tmp_path / "bad.jpg"
    good = tmp_path / "good.jpg"
    picture().save(good, quality=90)
    path.write_bytes(good.read_bytes()[:300])
    p = tool("decode", path, tmp_path / "x.raw", check=False)
    assert p.returncode == 2 and "JPEG" in p.stderr
    path.write_bytes(b"not an image at all")
    p = tool("decode", path, tmp_path / "x.raw", check=False)
    assert p.returncode == 2

"""Upload guards, and every file of tests/fixtures/faces/bad refused cleanly."""
from __future__ import annotations

import io
import resource

import numpy as np
import pytest
from PIL import Image, ImageFile

from backend.core.errors import DomainError
from backend.core.i18n import gettext
from backend.faces.enrolment import is_upright
from backend.faces.errors import BadImage, NoFace
from backend.faces.images import MAX_UPLOAD_BYTES, load_image, read_image_file

from .conftest import BAD, IDENTITIES

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:.*estimate. is deprecated:FutureWarning")]

# file -> (error class, i18n key)
BAD_FILES = {
    "not_image.jpg": (BadImage, "faces.err_not_image"),
    "truncated.jpg": (BadImage, "faces.err_truncated"),
    "truncated_header_only.jpg": (BadImage, "faces.err_truncated"),
    "one_px.png": (BadImage, "faces.err_too_small"),
    "noface_noise.jpg": (NoFace, "faces.err_no_face"),
    "noface_gradient.jpg": (NoFace, "faces.err_no_face"),
    "bomb_20000.png": (BadImage, "faces.err_too_many_pixels"),
    "bomb_header_only.png": (BadImage, "faces.err_too_many_pixels"),
}


def test_every_bad_file_is_covered(faces_data):
    on_disk = {p.name for p in BAD.iterdir() if p.is_file()}
    assert on_disk == set(BAD_FILES) | {"exif_orient8.jpg"}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_refused_cleanly(name, session_service, faces_data, monkeypatch):
    cls, key = BAD_FILES[name]
    decoded = []
    real_load = ImageFile.ImageFile.load

    def spy(self):
        decoded.append(self.size)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(cls) as ei:
        session_service.embed_for_enrolment((BAD / name).read_bytes())
    assert ei.value.key == key
    assert isinstance(ei.value, DomainError)
    # a polite message exists in both languages
    for lang in ("zh", "en"):
        assert gettext(lang, key, **ei.value.params) != key
    if name.startswith("bomb"):
        assert decoded == []  # refused from the header: the pixels were never decoded
        assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB


def test_exif_orient8_is_an_upright_obama(session_service, embed, faces_data):
    data = (BAD / "exif_orient8.jpg").read_bytes()
    img, faces = session_service.analyze(data)
    assert len(faces) == 1 and is_upright(faces[0])
    assert img.bgr.shape[0] > img.bgr.shape[1]  # portrait once upright
    vec = session_service.embed_for_enrolment(data)
    assert float(vec @ embed(IDENTITIES / "obama" / "1.jpg")) > 0.5
    assert float(vec @ embed(IDENTITIES / "biden" / "1.jpg")) < 0.3


def _jpeg_with_orientation(img: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92, exif=exif)
    return buf.getvalue()


def test_exif_orientation_applied_before_detection(session_service, embed):
    upright = Image.open(IDENTITIES / "rose_leslie" / "1.jpg").convert("RGB")
    # stored rotated 90° counter-clockwise; orientation 6 = "rotate 90° CW to display"
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    data = _jpeg_with_orientation(stored, 6)
    img, faces = session_service.analyze(data)
    assert img.rotation == 0  # EXIF alone made it upright: no fallback needed
    assert img.bgr.shape[:2] == (upright.height, upright.width)
    assert len(faces) == 1 and is_upright(faces[0])
    assert float(faces[0].embedding @ embed(IDENTITIES / "rose_leslie" / "1.jpg")) > 0.9


def test_sideways_photo_without_exif_is_turned_upright(session_service, embed):
    sideways = Image.open(IDENTITIES / "obama" / "1.jpg").convert("RGB").rotate(90, expand=True)  # CCW
    buf = io.BytesIO()
    sideways.save(buf, "JPEG", quality=92)
    img, faces = session_service.analyze(buf.getvalue())
    assert img.rotation == 90 and len(faces) == 1 and is_upright(faces[0])
    assert float(faces[0].embedding @ embed(IDENTITIES / "obama" / "1.jpg")) > 0.95


def test_too_many_bytes_refused_before_parsing():
    with pytest.raises(BadImage) as ei:
        load_image(b"\xff\xd8\xff" + b"\0" * MAX_UPLOAD_BYTES)
    assert ei.value.key == "faces.err_too_large" and ei.value.params == {"max_mb": 10}


def test_read_image_file_checks_size_first(tmp_path):
    big = tmp_path / "big.jpg"
    with open(big, "wb") as fh:
        fh.truncate(MAX_UPLOAD_BYTES + 1)  # sparse: nothing is read
    with pytest.raises(BadImage, match="err_too_large"):
        read_image_file(big)
    with pytest.raises(BadImage, match="err_unreadable"):
        read_image_file(tmp_path / "missing.jpg")


def test_pixel_cap_below_pillow_limit():
    buf = io.BytesIO()
    Image.new("1", (7000, 6000)).save(buf, "PNG")  # 42 MP, a few KB
    with pytest.raises(BadImage) as ei:
        load_image(buf.getvalue())
    assert ei.value.key == "faces.err_too_many_pixels"


def test_pixel_cap_holds_when_pillow_limit_disabled(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(BadImage, match="err_too_many_pixels"):
        load_image((BAD / "bomb_header_only.png").read_bytes())


def test_unsupported_format_refused():
    buf = io.BytesIO()
    Image.new("RGB", (100, 100)).save(buf, "TIFF")
    with pytest.raises(BadImage, match="err_not_image"):
        load_image(buf.getvalue())


def test_large_photo_scaled_down(faces_data):
    img = load_image((IDENTITIES / "obama" / "3.jpg").read_bytes())  # 1434x2333
    assert max(img.bgr.shape[:2]) == 1920
    assert img.original_size == (1434, 2333)
    assert abs(img.scale - 1920 / 2333) < 1e-3
    small = load_image((IDENTITIES / "obama" / "3.jpg").read_bytes(), max_side=800)
    assert max(small.bgr.shape[:2]) == 800


def test_rgba_png_and_bgr_order(faces_data):
    img = load_image((IDENTITIES / "alex_lacamoire" / "2.png").read_bytes())
    assert img.bgr.dtype == np.uint8 and img.bgr.shape == (394, 424, 3) and img.format == "PNG"
    red = io.BytesIO()
    Image.new("RGB", (64, 64), (255, 0, 0)).save(red, "PNG")
    assert load_image(red.getvalue()).bgr[0, 0].tolist() == [0, 0, 255]

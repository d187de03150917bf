"""Pictures an officer decides on: the faces that matched, large and side by side.

A review card shows, per side (missing left, found right):

* the face crop of the photo that actually matched (not the case's first photo), 360 px;
* under it, that whole photo as a thumbnail with the chosen face boxed, so a group photo or a
  full-body shot shows *whose* face it was;
* a caption with the case numbers, the photo numbers (2/3) and the score.

Boxes come from ``PersonCase.photo_faces`` (recorded at upload in the pixels of the decoded,
EXIF-turned photo, see ``FaceService.examine``); a photo without one (saved while face
matching was down) is shown whole. Text is ASCII on purpose: the default font carries no
Chinese and the image must render the same on any server; the chat caption carries the words.
"""
from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from backend.faces.images import load_image
from backend.faces.quality import face_crop

CROP = 360
THUMB_H = 220
GAP = 16
BAR = 48
LABEL = 30
BOX_COLOR = (230, 30, 30)

CARD_SIZE = (2 * CROP + 3 * GAP, BAR + CROP + LABEL + THUMB_H + 2 * GAP)


def crop_area(side: int) -> tuple[int, int, int, int]:
    """Where a side's face crop lies on the review card (0 missing, 1 found): left, top, right, bottom."""
    x, y = GAP + side * (CROP + GAP), BAR + GAP // 2
    return x, y, x + CROP, y + CROP


def thumb_area(side: int) -> tuple[int, int, int, int]:
    """Where a side's source-photo thumbnail goes on the review card (CROP × THUMB_H; centred across, at the top)."""
    x, y = GAP + side * (CROP + GAP), BAR + GAP // 2 + CROP + LABEL
    return x, y, x + CROP, y + THUMB_H


def _decoded(data: bytes, placement: dict | None) -> np.ndarray:
    """The photo as the detector saw it (EXIF-turned, scaled, turned by the fallback), RGB."""
    img = load_image(data).bgr
    rot = int((placement or {}).get("rot") or 0)
    code = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}.get(rot)
    if code is not None:
        img = cv2.rotate(img, code)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _square(im: Image.Image, side: int) -> Image.Image:
    f = side / max(im.size)  # small faces are enlarged too: the officer must see them large
    im = im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))), Image.Resampling.LANCZOS)
    out = Image.new("RGB", (side, side), (24, 24, 24))
    out.paste(im, ((side - im.width) // 2, (side - im.height) // 2))
    return out


def face_image(data: bytes, placement: dict | None, *, side: int = CROP) -> Image.Image:
    """The chosen face of a photo with some context around it, as a square of ``side`` px."""
    rgb = _decoded(data, placement)
    box = (placement or {}).get("box")
    crop = face_crop(rgb, box, margin=0.35) if box else rgb
    return _square(Image.fromarray(np.ascontiguousarray(crop)), side)


def marked_photo(data: bytes, placement: dict | None, *, max_h: int | None = None,
                 max_w: int | None = None) -> Image.Image:
    """The whole photo with the chosen face boxed (scaled down to fit, if limits are given)."""
    im = Image.fromarray(_decoded(data, placement))
    box = (placement or {}).get("box")
    scale = 1.0
    if max_h or max_w:
        scale = min((max_h or im.height) / im.height, (max_w or im.width) / im.width, 1.0)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.LANCZOS)
    if box:
        x1, y1, x2, y2 = (v * scale for v in box)
        w = max(2, round(max(im.size) / 120))
        ImageDraw.Draw(im).rectangle((x1 - w, y1 - w, x2 + w, y2 + w), outline=BOX_COLOR, width=w)
    return im


def marked_jpeg(data: bytes, placement: dict | None) -> bytes:
    return _jpeg(marked_photo(data, placement, max_h=1280, max_w=1280))


def face_card(data: bytes, placement: dict | None, caption: str) -> bytes:
    """One side of a review card (help requests): the face crop large, the whole photo beside
    it with that face boxed — so the helper knows whom of a group photo to look for."""
    thumb = marked_photo(data, placement, max_h=CROP, max_w=CROP)
    width, height = 2 * CROP + 3 * GAP, BAR + CROP + GAP
    out = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, 0, width, BAR), fill=(28, 58, 110))
    draw.text((GAP, 12), caption, fill=(255, 255, 255), font=_font(22))
    out.paste(face_image(data, placement), crop_area(0)[:2])
    x, y, _, _ = crop_area(1)  # the photo where a review card has the other face, centred
    out.paste(thumb, (x + (CROP - thumb.width) // 2, y + (CROP - thumb.height) // 2))
    return _jpeg(out)


def _jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=88)
    return buf.getvalue()


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow without FreeType
        return ImageFont.load_default()


def review_card(left: tuple[bytes, dict | None, str], right: tuple[bytes, dict | None, str], caption: str) -> bytes:
    """JPEG of the card: ``(photo bytes, placement, label)`` for the missing and the found side."""
    out = Image.new("RGB", CARD_SIZE, (255, 255, 255))
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, 0, CARD_SIZE[0], BAR), fill=(28, 58, 110))
    draw.text((GAP, 12), caption, fill=(255, 255, 255), font=_font(22))
    for i, (data, placement, label) in enumerate((left, right)):
        x, y, _, bottom = crop_area(i)
        out.paste(face_image(data, placement), (x, y))
        draw.text((x + 4, bottom + 4), label, fill=(20, 20, 20), font=_font(18))
        thumb = marked_photo(data, placement, max_h=THUMB_H, max_w=CROP)
        tx, ty, _, _ = thumb_area(i)
        out.paste(thumb, (tx + (CROP - thumb.width) // 2, ty))
    return _jpeg(out)

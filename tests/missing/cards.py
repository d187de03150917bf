"""Reading a review card or a help-request card back (chat and console tests): is what the
officer is shown the face crop of the matched photo and that photo with the chosen face boxed —
recomputed here from the photo and the face box the model recorded — and not, say, the whole
photo, another photo of the case, or a photo without the mark?"""
from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from backend.missing import evidence


def difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per channel (0–255) of two images of the same size."""
    assert a.size == b.size, (a.size, b.size)
    return float(np.abs(np.asarray(a.convert("RGB"), dtype=np.int16) - np.asarray(b.convert("RGB"), dtype=np.int16)).mean())


def check_crop(card: Image.Image, area: tuple, data: bytes, placement: dict) -> Image.Image:
    """The face crop of ``data`` (large, some context round it) is what ``area`` of the card shows."""
    assert placement and placement.get("box"), "the face box was recorded at upload"
    shown = card.crop(area)
    near, far = difference(shown, evidence.face_image(data, placement)), difference(shown, evidence.face_image(data, None))
    assert near < 6 and far > 3 * near, (area, near, far)  # the crop (JPEG noise only), not the whole photo
    return shown


def check_boxed(card: Image.Image, area: tuple, data: bytes, placement: dict, *, middle: bool) -> None:
    """``area`` shows the whole photo scaled to fit, centred across (and down if ``middle``),
    with a box round the chosen face where the model found it."""
    x, y, right, bottom = area
    thumb = evidence.marked_photo(data, placement, max_h=bottom - y, max_w=right - x)
    x += (right - x - thumb.width) // 2
    y += (bottom - y - thumb.height) // 2 if middle else 0
    shown = card.crop((x, y, x + thumb.width, y + thumb.height))
    assert difference(shown, thumb) < 6, area
    # the box: where the boxed and the unboxed photo differ, the card must have the box's pixels
    plain = evidence.marked_photo(data, {k: v for k, v in placement.items() if k != "box"},
                                  max_h=bottom - area[1], max_w=right - area[0])
    boxed, bare, seen = (np.asarray(im.convert("RGB"), dtype=np.int16) for im in (thumb, plain, shown))
    line = np.abs(boxed - bare).max(axis=2) > 60
    ys, xs = np.nonzero(line)
    scale = thumb.width / evidence.marked_photo(data, placement).width
    x1, y1, x2, _ = (v * scale for v in placement["box"])
    assert abs(xs.min() - x1) < 8 and abs(xs.max() - x2) < 8 and abs(ys.min() - y1) < 8, area  # round the face
    # compared softened (JPEG keeps colour at half resolution: a 2-px red line comes out smeared)
    soft = [cv2.GaussianBlur(a.astype(np.float32), (5, 5), 0) for a in (seen, boxed, bare)]
    to_box, to_bare = (float(np.abs(soft[0] - ref)[line].mean()) for ref in soft[1:])
    assert to_bare > 2 * to_box, (area, to_box, to_bare)  # measured 2.5–4×


def check_card(card: Image.Image, sides: list[tuple[bytes, dict]]) -> list[Image.Image]:
    """Assert the review ``card`` shows, for each side ``(photo bytes, placement)`` (missing,
    found), the face crop large and the source photo with that face boxed; the two crops shown."""
    assert card.size == evidence.CARD_SIZE
    crops = []
    for i, (data, placement) in enumerate(sides):
        crops.append(check_crop(card, evidence.crop_area(i), data, placement))
        check_boxed(card, evidence.thumb_area(i), data, placement, middle=False)
    return crops


def check_face_card(card: Image.Image, data: bytes, placement: dict) -> Image.Image:
    """A help request's card: the chosen face large, the photo beside it with that face boxed."""
    crop = check_crop(card, evidence.crop_area(0), data, placement)
    check_boxed(card, evidence.crop_area(1), data, placement, middle=True)
    return crop

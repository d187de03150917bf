"""Reading a review card back (chat and console tests): is what the officer is shown the face
crop of each matched photo and that photo with the chosen face boxed — recomputed here from the
photo and the face box the model recorded at upload — and not, say, the whole photo?"""
from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from backend.missing import evidence


def difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per channel (0–255) of two images of the same size."""
    assert a.size == b.size, (a.size, b.size)
    return float(np.abs(np.asarray(a.convert("RGB"), dtype=np.int16) - np.asarray(b.convert("RGB"), dtype=np.int16)).mean())


def check_card(card: Image.Image, sides: list[tuple[bytes, dict]]) -> list[Image.Image]:
    """Assert ``card`` shows, for each side ``(photo bytes, placement)`` (missing, found), the
    face crop large and the source photo with that face boxed; returns the two crops shown."""
    assert card.size == evidence.CARD_SIZE
    crops = []
    for i, (data, placement) in enumerate(sides):
        assert placement and placement.get("box"), "the face box was recorded at upload"
        shown = card.crop(evidence.crop_area(i))
        crop = evidence.face_image(data, placement)
        whole = evidence.face_image(data, None)
        near, far = difference(shown, crop), difference(shown, whole)
        assert near < 6 and far > 3 * near, (i, near, far)  # the crop (JPEG noise only), not the whole photo
        crops.append(shown)
        # under it: the whole source photo, the chosen face boxed in red where the model found it
        thumb = evidence.marked_photo(data, placement, max_h=evidence.THUMB_H, max_w=evidence.CROP)
        x, y, _, _ = evidence.thumb_area(i)
        x += (evidence.CROP - thumb.width) // 2
        shown_thumb = card.crop((x, y, x + thumb.width, y + thumb.height))
        assert difference(shown_thumb, thumb) < 6, i
        # the box: where the boxed and the unboxed thumbnail differ, the card has the box's pixels
        plain = evidence.marked_photo(data, {k: v for k, v in placement.items() if k != "box"},
                                      max_h=evidence.THUMB_H, max_w=evidence.CROP)
        boxed, bare, seen = (np.asarray(im.convert("RGB"), dtype=np.int16) for im in (thumb, plain, shown_thumb))
        line = np.abs(boxed - bare).max(axis=2) > 60
        ys, xs = np.nonzero(line)
        scale = thumb.width / evidence.marked_photo(data, placement).width
        x1, y1, x2, y2 = (v * scale for v in placement["box"])
        assert abs(xs.min() - x1) < 8 and abs(xs.max() - x2) < 8 and abs(ys.min() - y1) < 8, i  # round the face
        # compared softened (JPEG keeps colour at half resolution: a 2-px red line comes out smeared)
        soft = [cv2.GaussianBlur(a.astype(np.float32), (5, 5), 0) for a in (seen, boxed, bare)]
        to_box, to_bare = (float(np.abs(soft[0] - ref)[line].mean()) for ref in soft[1:])
        assert to_bare > 2 * to_box, (i, to_box, to_bare)  # measured 2.5–4×
    return crops

"""Which face of a photo gets enrolled, and the numbered-boxes preview for choosing one."""
from __future__ import annotations

import cv2
import numpy as np

from backend.faces.engine import Face
from backend.faces.errors import BadChoice, MultipleFaces, NoFace

MIN_FACE_PX = 40
MIN_DET_SCORE = 0.5


def usable_faces(faces: list[Face], *, min_px: int = MIN_FACE_PX, min_score: float = MIN_DET_SCORE) -> list[Face]:
    """Faces big and sure enough to enrol or search with, ordered left to right."""
    ok = [f for f in faces if f.size >= min_px and f.det_score >= min_score]
    return sorted(ok, key=lambda f: (f.box[0], f.box[1]))


def select_enrolment_face(
    faces: list[Face],
    choose: int | None = None,
    *,
    image: np.ndarray | None = None,
    min_px: int = MIN_FACE_PX,
    min_score: float = MIN_DET_SCORE,
) -> Face:
    """The one usable face of a photo (a face ≥ ``min_px`` px with score ≥ ``min_score``).

    * none usable → :class:`NoFace` (key ``faces.err_face_too_small`` when faces were
      found but all too small or unsure, else ``faces.err_no_face``);
    * several usable and ``choose`` is None → :class:`MultipleFaces` carrying them
      (left to right, shown as 1..n by :func:`draw_numbered_boxes`) and ``image``;
    * ``choose`` = 0-based index into those faces → that face (:class:`BadChoice` if out of range).
    """
    ok = usable_faces(faces, min_px=min_px, min_score=min_score)
    if not ok:
        if faces:
            raise NoFace("faces.err_face_too_small", min_px=min_px)
        raise NoFace()
    if choose is not None:
        if isinstance(choose, bool) or not isinstance(choose, (int, np.integer)) or not 0 <= choose < len(ok):
            raise BadChoice(len(ok))
        return ok[int(choose)]
    if len(ok) > 1:
        raise MultipleFaces(ok, image)
    return ok[0]


def is_upright(face: Face) -> bool:
    """Eyes above the mouth, eye line within 45° of horizontal (from the 5 key points)."""
    if face.kps is None or len(face.kps) < 5:
        return True
    eyes = (face.kps[0] + face.kps[1]) / 2
    mouth = (face.kps[3] + face.kps[4]) / 2
    dx, dy = mouth - eyes
    return bool(dy > 0 and abs(dx) < dy)


_COLORS = [(0, 200, 255), (60, 220, 60), (255, 120, 40), (200, 80, 255), (40, 40, 255), (255, 220, 0)]


def draw_numbered_boxes(img_bgr: np.ndarray, faces: list[Face], *, quality: int = 85) -> bytes:
    """JPEG bytes of the photo with a box and its number (1..n) around each face."""
    img = np.ascontiguousarray(img_bgr.copy())
    h, w = img.shape[:2]
    thick = max(2, round(max(h, w) / 400))
    font = cv2.FONT_HERSHEY_SIMPLEX
    for i, f in enumerate(faces, start=1):
        color = _COLORS[(i - 1) % len(_COLORS)]
        x1, y1, x2, y2 = (int(round(v)) for v in f.box)
        x1, y1 = max(0, x1), max(0, y1)
        x2, y2 = min(w - 1, x2), min(h - 1, y2)
        cv2.rectangle(img, (x1, y1), (x2, y2), color, thick)
        label = str(i)
        scale = max(0.8, min(4.0, (x2 - x1) / 80))
        (tw, th), base = cv2.getTextSize(label, font, scale, thick)
        pad = thick + 2
        # label tag above the box, or inside its top edge when there is no room
        ty1 = y1 - th - base - 2 * pad
        if ty1 < 0:
            ty1 = y1
        tx1 = min(max(0, x1), max(0, w - tw - 2 * pad))
        cv2.rectangle(img, (tx1, ty1), (tx1 + tw + 2 * pad, ty1 + th + base + 2 * pad), color, -1)
        cv2.putText(img, label, (tx1 + pad, ty1 + pad + th), font, scale, (0, 0, 0), thick, cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - cv2 failure
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()

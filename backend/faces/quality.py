"""How good is a face for matching? Size, sharpness, detector confidence and pose → a grade.

A family that uploads a photo on which the face is tiny, blurred or turned away would
silently never get a match (a blurred copy of a man scored 0.198 against himself, below the
review threshold). The grade lets the chat say so at once and ask for a better photo.

* ``size``: the shorter side of the face box, in pixels of the decoded photo;
* ``sharpness``: variance of the Laplacian of the face crop, resized to 112 px first so the
  figure does not depend on the photo's resolution (a sharp face ~100–1000, a blurred one
  below ~20);
* ``det_score``: the detector's confidence;
* ``yaw``: how far the nose sits from the middle of the eyes, as a share of the eye distance
  (0 frontal, ~0.5 half profile) — from the 5 landmarks.

The thresholds (``QUALITY``) were measured on the test photos and degraded copies of them:
``python bench/faces.py quality`` prints the table and docs/faces.md ("Photo quality")
records how many true matches each rule saves and how many good photos it refuses.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from backend.faces.engine import Face

CROP_PX = 112  # the crop is compared at the size the embedder sees


@dataclass(frozen=True)
class Thresholds:
    # poor (the reporter is told why and asked for a better photo): chosen on the dev people of
    # ``bench/faces.py quality`` (every lost true match caught, fewest good photos refused) and
    # reported on the test people (docs/faces.md, "Photo quality at upload")
    min_size: int = 40  # px, = the detector's MIN_FACE_PX: smaller faces are refused before grading
    min_sharpness: float = 8.0  # Laplacian variance of the 112-px crop
    min_det_score: float = 0.6
    # fair (accepted; shown on the evidence): a bigger or sharper photo would help
    max_yaw: float = 0.45  # |nose offset| / eye distance: above, the face is turned away
    fair_size: int = 60
    fair_sharpness: float = 25.0


QUALITY = Thresholds()
GOOD, FAIR, POOR = "good", "fair", "poor"


@dataclass(frozen=True)
class Quality:
    size: int
    sharpness: float
    det_score: float
    yaw: float
    grade: str
    reasons: tuple[str, ...] = field(default_factory=tuple)  # small | blurred | unsure | turned

    def as_dict(self) -> dict:
        return {"size": self.size, "sharpness": round(self.sharpness, 1), "det_score": round(self.det_score, 3),
                "yaw": round(self.yaw, 3), "grade": self.grade, "reasons": list(self.reasons)}


def face_crop(img_bgr: np.ndarray, box, *, margin: float = 0.0) -> np.ndarray:
    """The face's box (grown by ``margin`` of its size on each side), clipped to the photo."""
    h, w = img_bgr.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    a, b = max(0, int(x1 - mx)), max(0, int(y1 - my))
    c, d = min(w, int(round(x2 + mx))), min(h, int(round(y2 + my)))
    if c <= a or d <= b:
        return img_bgr[0:1, 0:1]
    return img_bgr[b:d, a:c]


def sharpness(img_bgr: np.ndarray, box) -> float:
    crop = face_crop(img_bgr, box)
    gray = cv2.cvtColor(cv2.resize(crop, (CROP_PX, CROP_PX), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def yaw(face: Face) -> float:
    if face.kps is None or len(face.kps) < 3:
        return 0.0
    left, right, nose = face.kps[0], face.kps[1], face.kps[2]
    eyes = float(np.linalg.norm(right - left))
    if eyes <= 1e-6:
        return 1.0
    return float(abs(nose[0] - (left[0] + right[0]) / 2) / eyes)


def assess(img_bgr: np.ndarray, face: Face, t: Thresholds = QUALITY) -> Quality:
    sharp, turn = sharpness(img_bgr, face.box), yaw(face)
    poor, fair = [], []
    if face.size < t.min_size:
        poor.append("small")
    elif face.size < t.fair_size:
        fair.append("small")
    if sharp < t.min_sharpness:
        poor.append("blurred")
    elif sharp < t.fair_sharpness:
        fair.append("blurred")
    if face.det_score < t.min_det_score:
        poor.append("unsure")
    if turn > t.max_yaw:
        fair.append("turned")
    grade = POOR if poor else FAIR if fair else GOOD
    return Quality(size=int(face.size), sharpness=sharp, det_score=float(face.det_score), yaw=turn,
                   grade=grade, reasons=tuple(poor or fair))

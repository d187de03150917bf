"""Enrolment rule (exactly one usable face) and the choose-a-face flow."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from backend.faces.engine import Face
from backend.faces.enrolment import draw_numbered_boxes, select_enrolment_face
from backend.faces.errors import BadChoice, MultipleFaces, NoFace

from .conftest import GROUPS, IDENTITIES

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:.*estimate. is deprecated:FutureWarning")]


def _face(x: float, size: float, score: float = 0.9) -> Face:
    return Face(box=(x, 10.0, x + size, 10.0 + size), det_score=score, size=int(size),
                embedding=np.ones(512, np.float32) / np.sqrt(512))


def test_rule_exactly_one_usable_face():
    big, small, unsure = _face(300, 120), _face(10, 30), _face(150, 100, score=0.3)
    assert select_enrolment_face([small, big, unsure]) is big
    with pytest.raises(NoFace) as ei:
        select_enrolment_face([])
    assert ei.value.key == "faces.err_no_face"
    with pytest.raises(NoFace) as ei:
        select_enrolment_face([small, unsure])
    assert ei.value.key == "faces.err_face_too_small"
    with pytest.raises(MultipleFaces) as ei:
        select_enrolment_face([big, _face(20, 45)])
    assert [f.box[0] for f in ei.value.faces] == [20, 300]  # left to right = labels 1, 2
    assert ei.value.params == {"count": 2}
    assert select_enrolment_face([big, _face(20, 45)], choose=1) is big
    with pytest.raises(BadChoice):
        select_enrolment_face([big, _face(20, 45)], choose=2)
    with pytest.raises(BadChoice):
        select_enrolment_face([big], choose=-1)


@pytest.mark.parametrize("name", ["two_people.jpg", "obama_and_biden.jpg", "kit_with_rose.jpg"])
def test_group_photo_needs_a_choice(name, session_service, faces_data):
    data = (GROUPS / name).read_bytes()
    with pytest.raises(MultipleFaces) as ei:
        session_service.embed_for_enrolment(data)
    err = ei.value
    assert len(err.faces) >= 2
    xs = [f.box[0] for f in err.faces]
    assert xs == sorted(xs)
    jpeg = err.preview_jpeg()
    assert jpeg[:2] == b"\xff\xd8"
    preview = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert preview.shape == err.image.shape
    assert not np.array_equal(preview, err.image)  # boxes and numbers were drawn
    # the user picks a face: each choice gives that face's embedding
    for i, f in enumerate(err.faces):
        assert float(session_service.embed_for_enrolment(data, choose=i) @ f.embedding) > 0.999
    with pytest.raises(BadChoice):
        session_service.embed_for_enrolment(data, choose=len(err.faces))


def test_group_photo_choice_finds_the_right_people(session_service, embed, faces_data):
    data = (GROUPS / "two_people.jpg").read_bytes()
    with pytest.raises(MultipleFaces) as ei:
        session_service.embed_for_enrolment(data)
    obama = embed(IDENTITIES / "obama" / "1.jpg")
    biden = embed(IDENTITIES / "biden" / "1.jpg")
    best = {max(("obama", float(f.embedding @ obama)), ("biden", float(f.embedding @ biden)), key=lambda t: t[1])[0]
            for f in ei.value.faces}
    assert best == {"obama", "biden"}


def test_draw_numbered_boxes_on_small_image():
    img = np.full((60, 80, 3), 127, np.uint8)
    jpeg = draw_numbered_boxes(img, [_face(0, 40), _face(40, 39)])
    out = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert out.shape == img.shape

"""Face matching for the 灯塔工程 missing-person programme (see docs/faces.md).

Entry point: :class:`backend.faces.service.FaceService`. Importing this package is
cheap; the ONNX models load in ``FaceService.load()``.
"""

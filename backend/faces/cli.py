"""``hehe faces …``: enrol, search, bulk import and delete from the command line.

Also runnable as ``python -m backend.faces.cli``. Messages follow
``HEHE_DEFAULT_LANGUAGE`` (zh by default); errors exit with status 1.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

import typer

from backend.core.config import get_settings
from backend.core.errors import DomainError
from backend.core.i18n import gettext
from backend.faces.errors import FaceModelMissing, MultipleFaces
from backend.faces.images import read_image_file

app = typer.Typer(name="faces", help="Face matching (灯塔工程): enrol, search, import, delete.",
                  no_args_is_help=True, add_completion=False)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


def _t(key: str, **params) -> str:
    return gettext(get_settings().default_language, key, **params)


def _service(model: bool = True):
    from backend.faces.service import FaceService

    svc = FaceService(get_settings())
    if model:
        if not get_settings().face_enabled:
            _fail_text(_t("faces.err_not_ready"))
        try:
            svc.load()
        except DomainError as e:
            _fail(e)
    return svc


def _fail_text(text: str) -> None:
    typer.echo(text, err=True)
    raise typer.Exit(1)


def _fail(err: DomainError, *, preview: Path | None = None, source: Path | None = None) -> None:
    text = _t(err.key, **err.params)
    if source is not None:
        text = f"{source}: {text}"
    if isinstance(err, FaceModelMissing):
        text = f"{text}\n{err}"
    if isinstance(err, MultipleFaces):
        if preview is not None and err.image is not None:
            preview.write_bytes(err.preview_jpeg())
            text += "\n" + _t("faces.cli_preview_written", path=str(preview))
        text += "\n" + _t("faces.cli_use_choose", count=len(err.faces))
    _fail_text(text)


def _choose(choose: Optional[int]) -> Optional[int]:
    return None if choose is None else choose - 1  # the preview shows 1..n


@app.command()
def enroll(
    images: list[Path] = typer.Argument(..., help="Photos of the person (one face each)."),
    person_id: str = typer.Option(..., "--person-id", help="Case / person id."),
    gallery: str = typer.Option("missing", "--gallery", "-g", help="missing | found"),
    choose: Optional[int] = typer.Option(None, "--choose", help="Face number (1..n) in a photo with several faces."),
    preview: Optional[Path] = typer.Option(None, "--preview", help="Where to write the numbered-faces JPEG."),
) -> None:
    """Enrol one person from one or more photos."""
    svc = _service()
    current = None
    try:
        datas = []
        for p in images:
            current = p
            datas.append(read_image_file(p))
        current = None
        ids = svc.enroll(gallery, person_id, datas, [_choose(choose)] * len(datas))
    except DomainError as e:
        idx = getattr(e, "image_index", None)
        _fail(e, preview=preview, source=current or (images[idx] if idx is not None else None))
    finally:
        svc.close()
    typer.echo(_t("faces.cli_enrolled", count=len(ids), person_id=person_id, gallery=gallery))


@app.command()
def search(
    image: Path = typer.Argument(..., help="Photo to look for."),
    gallery: str = typer.Option("missing", "--gallery", "-g", help="missing | found"),
    k: int = typer.Option(5, "-k", "--top", min=1, max=100, help="How many persons."),
    as_json: bool = typer.Option(False, "--json", help="Print [{\"person_id\": …, \"score\": …}]."),
    min_score: Optional[float] = typer.Option(None, "--min-score", help="Only scores ≥ this."),
    choose: Optional[int] = typer.Option(None, "--choose", help="Face number (1..n) in a photo with several faces."),
    preview: Optional[Path] = typer.Option(None, "--preview", help="Where to write the numbered-faces JPEG."),
) -> None:
    """Search a gallery for the face in a photo."""
    svc = _service()
    try:
        matches = svc.search(gallery, read_image_file(image), k, choose=_choose(choose), min_score=min_score)
    except DomainError as e:
        _fail(e, preview=preview, source=image)
    finally:
        svc.close()
    if as_json:
        typer.echo(json.dumps([m.as_dict() for m in matches], ensure_ascii=False))
        return
    if not matches:
        typer.echo(_t("faces.cli_no_match"))
    for m in matches:
        flag = "  ← " + _t("faces.cli_candidate") if m.score >= svc.threshold else ""
        typer.echo(f"{m.person_id}\t{m.score:.4f}{flag}")


@app.command("import")
def import_dir(
    directory: Path = typer.Argument(..., help="One subfolder per person; the folder name is the person id."),
    gallery: str = typer.Option("found", "--gallery", "-g", help="missing | found"),
) -> None:
    """Bulk-enrol a folder tree; photos that cannot be used are listed and skipped."""
    from tqdm import tqdm

    if not directory.is_dir():
        _fail_text(_t("faces.err_not_a_folder", path=str(directory)))
    people = sorted(d for d in directory.iterdir() if d.is_dir() and not d.name.startswith("."))
    jobs = [(d.name, f) for d in people for f in sorted(d.iterdir())
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
    if not jobs:
        _fail_text(_t("faces.err_nothing_to_import", path=str(directory)))
    svc = _service()
    try:
        g = svc.gallery(gallery)
    except DomainError as e:
        _fail(e)
    skipped: list[str] = []
    enrolled = 0
    persons: set[str] = set()
    try:
        for person_id, f in tqdm(jobs, desc=f"import → {gallery}", unit="photo"):
            try:
                data = read_image_file(f)
                vec = svc.embed_for_enrolment(data)
            except DomainError as e:
                skipped.append(f"{f}: {_t(e.key, **e.params)}")
                continue
            g.add(person_id, vec, hashlib.sha256(data).hexdigest()[:32])
            enrolled += 1
            persons.add(person_id)
    finally:
        svc.close()
    for line in skipped:
        typer.echo(line, err=True)
    typer.echo(_t("faces.cli_imported", photos=enrolled, persons=len(persons), skipped=len(skipped),
                  gallery=gallery))
    if not enrolled:
        raise typer.Exit(1)


@app.command()
def delete(
    person_id: str = typer.Option(..., "--person-id", help="Case / person id."),
    gallery: Optional[str] = typer.Option(None, "--gallery", "-g", help="Only this gallery (default: all)."),
) -> None:
    """Erase a person's face data from the galleries (memory, index and disk)."""
    from backend.faces.service import GALLERIES

    svc = _service(model=False)
    try:
        n = svc.delete(person_id, (gallery,) if gallery else GALLERIES)
    except DomainError as e:
        _fail(e)
    finally:
        svc.close()
    if n:
        typer.echo(_t("faces.cli_deleted", count=n, person_id=person_id))
    else:
        typer.echo(_t("faces.cli_nothing_deleted", person_id=person_id))


if __name__ == "__main__":
    app()

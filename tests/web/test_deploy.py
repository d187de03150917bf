"""What an operator runs: `hehe serve` refuses public demo mode, the console SMS provider only
where it is allowed, the Aliyun SMS provider's signed request (against a local mock of its
API), and docker compose publishing on loopback."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qsl, quote, urlsplit

import pytest

from backend.auth.sms import (
    AliyunSms,
    ConsoleSms,
    SmsConfigError,
    SmsError,
    provider_for,
)
from tests.conftest import make_settings
from tests.foundation.test_compose import compose, needs_compose
from tests.web.conftest import running, site_settings

HEHE = shutil.which("hehe", path=str(Path(sys.executable).parent))


def run_serve(tmp_path: Path, *args: str, **env_extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEHE_")}
    env.update(HEHE_DATA_DIR=str(tmp_path / "data"), HEHE_FACE_ENABLED="0", HEHE_KB_ENABLED="0",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **env_extra)
    cmd = [HEHE] if HEHE else [sys.executable, "-m", "backend.cli"]
    return subprocess.run([*cmd, "serve", *args], capture_output=True, text=True, env=env, timeout=120,
                          cwd=tmp_path, check=False)


def test_serve_refuses_demo_mode_on_a_public_address(tmp_path):
    r = run_serve(tmp_path, "--host", "0.0.0.0", "--port", "1", HEHE_DEMO="1")
    assert r.returncode == 2 and "HEHE_DEMO_ALLOW_PUBLIC" in r.stderr


def test_the_console_sms_provider_is_refused_on_a_public_address_outside_demo_mode(tmp_path):
    assert isinstance(provider_for(make_settings(tmp_path, demo=False, sms_provider="console")), ConsoleSms)
    assert isinstance(provider_for(make_settings(tmp_path, demo=True, host="0.0.0.0", sms_provider="console")),
                      ConsoleSms)
    with pytest.raises(SmsConfigError):
        provider_for(make_settings(tmp_path, demo=False, host="0.0.0.0", sms_provider="console"))
    with pytest.raises(SmsConfigError):  # aliyun without its keys
        provider_for(make_settings(tmp_path, sms_provider="aliyun"))
    assert provider_for(make_settings(tmp_path, sms_provider="")) is None
    r = run_serve(tmp_path, "--host", "0.0.0.0", "--port", "1", HEHE_SMS_PROVIDER="console")
    assert r.returncode == 2 and "console" in r.stderr


async def test_without_a_provider_citizen_sign_in_is_off_and_says_so(tmp_path, template_db):
    async with running(site_settings(tmp_path, template_db, sms_provider="")) as site:
        b = site.browser()
        assert (await b.get("/auth/api/config")).json()["phone"] is False
        r = await b.post("/auth/api/phone/code", json={"phone": "13912345678"})
        assert r.status_code == 503 and r.json()["key"] == "auth.err_sms_unavailable"


class _Aliyun(BaseHTTPRequestHandler):
    """A mock of dysmsapi.aliyuncs.com: checks the signature the way Aliyun does."""

    secret = "test-secret"
    seen: ClassVar[list[dict]] = []

    def do_GET(self):
        params = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
        sig = params.pop("Signature", "")
        def enc(s):
            return quote(s, safe="~")

        canonical = "&".join(f"{enc(k)}={enc(v)}" for k, v in sorted(params.items()))
        expected = base64.b64encode(hmac.new(f"{self.secret}&".encode(),
                                             f"GET&%2F&{enc(canonical)}".encode(), hashlib.sha1).digest()).decode()
        self.seen.append(params)
        ok = sig == expected and params.get("Action") == "SendSms"
        body = {"Code": "OK", "Message": "OK", "BizId": "123^0"} if ok else {
            "Code": "SignatureDoesNotMatch", "Message": "Specified signature is not matched"}
        data = json.dumps(body).encode()
        self.send_response(200 if ok else 400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


@pytest.fixture
def aliyun_mock():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Aliyun)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Aliyun.seen.clear()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


async def test_the_aliyun_provider_sends_a_signed_request_the_service_accepts(tmp_path, aliyun_mock):
    settings = make_settings(tmp_path, sms_provider="aliyun", sms_aliyun_access_key_id="LTAItest",
                             sms_aliyun_access_key_secret="test-secret", sms_aliyun_sign_name="台州和合",
                             sms_aliyun_template_code="SMS_123456", sms_aliyun_endpoint=aliyun_mock)
    provider = provider_for(settings)
    assert isinstance(provider, AliyunSms)
    await provider.send_code("13912345678", "042137")
    sent = _Aliyun.seen[-1]
    assert sent["PhoneNumbers"] == "13912345678" and json.loads(sent["TemplateParam"]) == {"code": "042137"}
    assert sent["SignName"] == "台州和合" and sent["AccessKeyId"] == "LTAItest"
    wrong = provider_for(settings.model_copy(update={"sms_aliyun_access_key_secret": "not-the-secret"}))
    with pytest.raises(SmsError):
        await wrong.send_code("13912345678", "042137")


@needs_compose
def test_compose_publishes_the_port_on_loopback_unless_told_otherwise():
    cfg = json.loads(compose("config", "--format", "json").stdout)
    port = cfg["services"]["backend"]["ports"][0]
    assert port["host_ip"] == "127.0.0.1" and port["target"] == 8000
    assert cfg["services"]["backend"]["environment"]["HEHE_DEMO"] == "false"
    cfg = json.loads(compose("config", "--format", "json", env={"HEHE_BIND": "0.0.0.0"}).stdout)
    assert cfg["services"]["backend"]["ports"][0]["host_ip"] == "0.0.0.0"

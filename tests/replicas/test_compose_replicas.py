"""The replicas deployment (docker-compose.yml + deploy/compose.replicas.yml) is a valid compose
project: two backend replicas without a host port of their own, nginx in front."""
from __future__ import annotations

import json

from tests.foundation.test_compose import REPO, compose, needs_compose

OVERRIDE = REPO / "deploy" / "compose.replicas.yml"


@needs_compose
def test_the_replicas_deployment_is_valid_and_puts_two_backends_behind_the_proxy():
    r = compose("-f", str(OVERRIDE), "config", "-q")
    assert r.returncode == 0, r.stderr
    r = compose("-f", str(OVERRIDE), "config", "--format", "json")
    assert r.returncode == 0, r.stderr
    services = json.loads(r.stdout)["services"]
    assert services["backend"]["deploy"]["replicas"] == 2
    assert not services["backend"].get("ports")  # two replicas cannot publish one host port
    assert [p["target"] for p in services["proxy"]["ports"]] == [80]
    mount = services["proxy"]["volumes"][0]
    assert mount["source"].endswith("deploy/nginx.conf") and mount["target"] == "/etc/nginx/nginx.conf"
    assert (REPO / "deploy" / "nginx.conf").is_file()


@needs_compose
def test_the_replicas_run_faces_from_the_database_and_the_image_has_what_their_s3_store_needs():
    r = compose("-f", str(OVERRIDE), "config", "--format", "json")
    assert r.returncode == 0, r.stderr
    env = json.loads(r.stdout)["services"]["backend"]["environment"]
    # 灯塔 face matching runs on every replica: galleries in PostgreSQL, not files of one process
    assert env.get("HEHE_FACE_ENABLED", "true").lower() not in ("0", "false", "no")
    assert env["HEHE_FACE_STORE"] == "db"
    # uploads go to the bucket: the image must carry boto3 (the s3 extra), or every replica fails at start
    assert env["HEHE_S3_BUCKET"]
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    installs = [line for line in dockerfile.splitlines() if "pip install" in line and "--no-deps" not in line]
    assert any('".[s3]"' in line or "'.[s3]'" in line for line in installs), installs

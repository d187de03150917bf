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

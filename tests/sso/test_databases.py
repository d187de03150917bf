"""The sign-in's rules on both databases (SQLite and PostgreSQL): a login state is spent
once, an account is found again by the provider's stable id, an ID number is kept as its
keyed hash only."""
from __future__ import annotations

from sqlalchemy import select

from backend.sso.models import ExternalAccount, SsoLoginState
from backend.sso.service import hash_id_card, id_hash_key
from tests.sso.conftest import provider_settings
from tests.sso.driver import (
    browser,
    in_db,
    query,
    running_hehe,
    zlb_sign_in,
    zzd_sign_in,
)


def test_sign_in_links_by_stable_id_and_spends_each_state_once(db_settings, zzd_mock, zlb_mock):
    settings = db_settings.model_copy(update=dict(demo=False, **provider_settings(zzd_mock, zlb_mock)))
    with running_hehe(settings) as base:
        with browser(base) as c:
            assert zlb_sign_in(c, zlb_mock, "linxl").status_code == 302
            assert c.get("/sso/api/accounts").json()["user"]["name"] == "林小丽"
        with browser(base) as c:
            r = c.get("/sso/zzd/login")
            q = query(r.headers["location"])
            back = c.post(zzd_mock.base + "/oauth2/mock_scan",
                          data={"redirect_uri": q["redirect_uri"], "state": q["state"], "account": "wangfang"})
            assert c.get(back.headers["location"]).status_code == 302
            c.cookies.set("hehe_sso_state", q["state"], domain="127.0.0.1", path="/sso")
            assert c.get(back.headers["location"]).status_code == 400  # the state is spent
        with browser(base) as c:
            zzd_sign_in(c, zzd_mock, "wangfang")
            assert c.get("/sso/api/accounts").json()["user"]["name"] == "王芳"

    async def rows(session):
        accounts = (await session.scalars(select(ExternalAccount).order_by(ExternalAccount.id))).all()
        states = (await session.scalars(select(SsoLoginState))).all()
        return ([(a.provider, a.subject, a.id_card_hash) for a in accounts],
                sorted(s.used_at is not None for s in states))

    accounts, used = in_db(settings, rows)
    key = id_hash_key(settings, (settings.data_dir / "secret.key").read_text().strip())
    assert accounts == [("zlb", "8a11893e7c2f4b0d017c3a5e9f2b0987", hash_id_card(key, "331002199207150026")),
                        ("zzd", "100135", None)]
    assert used == [True, True, True]

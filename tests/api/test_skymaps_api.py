"""``/api/v1/skymaps``: a power user adds the real BAYESTAR map (base64), anyone lists and reads it, a bad map is a
400 with nothing stored, a plain user may not add or remove, and removing drops the map."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from nightjar.api.app import create_app
from nightjar.api.users import add_user_token
from nightjar.catalogs import skymap_store
from nightjar.settings import Settings

from ..skymap_reference import BAYESTAR


@pytest.mark.timeout(120)
def test_skymaps_api(settings: Settings, data_dir: Path) -> None:
    power = {"Authorization": f"Token {add_user_token(settings, 'gw', role='power')}"}
    plain = {"Authorization": f"Token {add_user_token(settings, 'bob')}"}
    content = base64.b64encode((data_dir / BAYESTAR).read_bytes()).decode()
    home = Path(settings.home)
    with TestClient(create_app(settings)) as client:
        body = {"skymap_fits_base64": content, "classification": {"BNS": 0.97, "Terrestrial": 0.03}}
        assert client.post("/api/v1/skymaps", json=body, headers=plain).status_code == 403
        bad = client.post("/api/v1/skymaps", json={"skymap_fits_base64": "bm90IGZpdHM="}, headers=power)
        assert bad.status_code == 400 and "not a FITS file" in bad.json()["detail"]
        assert skymap_store.list_skymaps(home) == []
        made = client.post("/api/v1/skymaps", json={**body, "window_days": 10}, headers=power)
        assert made.status_code == 201, made.text
        info = made.json()
        assert info["event_id"] == "G361581" and info["window_days"] == 10 and info["hits"] == 0
        assert info["classification"] == {"BNS": 0.97, "Terrestrial": 0.03}
        assert info["history"] == {"alerts": 0, "hits": 0, "stored": 0}
        listed = client.get("/api/v1/skymaps").json()
        assert [m["id"] for m in listed] == [info["id"]]
        assert client.get(f"/api/v1/skymaps/{info['id']}").json()["area90_sq_deg"] == info["area90_sq_deg"]
        assert client.get(f"/api/v1/skymaps/{info['id']}/hits").json() == []
        assert client.get("/api/v1/skymaps/99").status_code == 404
        assert client.delete(f"/api/v1/skymaps/{info['id']}", headers=plain).status_code == 403
        assert client.delete(f"/api/v1/skymaps/{info['id']}", headers=power).status_code == 204
        assert client.get("/api/v1/skymaps").json() == []

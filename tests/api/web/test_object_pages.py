"""Object pages of real LSST and ZTF alerts in a real browser: the plot, the cutouts, the context; cone search."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from fastapi.testclient import TestClient

from nightjar import paths
from nightjar.api.app import create_app
from nightjar.lake import commit, read
from nightjar.settings import Settings

from ..conftest import DataLake
from ..server import serving
from .conftest import Browser, Portal, no_errors, plot_traces


def busiest(portal: Portal, survey: str) -> dict[str, object]:
    """The object of ``survey`` with detections in the most bands, then the most detections."""
    sources = read.datasets(portal.settings.home)[paths.SOURCES]
    known = ds.field("diaObjectId").isin(portal.objects["diaObjectId"])  # not the 0 of LSST's solar-system alerts
    rows = sources.to_table(columns=["diaObjectId", "band"], filter=(ds.field(paths.SURVEY) == survey) & known)
    per = rows.group_by("diaObjectId").aggregate([("band", "count_distinct"), ("band", "count")])
    best = per.sort_by([("band_count_distinct", "descending"), ("band_count", "descending")])["diaObjectId"][0]
    return portal.objects.filter(pc.equal(portal.objects["diaObjectId"], best)).to_pylist()[0]


def points_by_band(portal: Portal, table: str, object_id: int, positive: bool = False) -> dict[str, int]:
    """Photometry points per band read straight from the Delta table (not through the API's functions)."""
    tables = read.datasets(portal.settings.home)
    if table not in tables:
        return {}
    where = (ds.field("diaObjectId") == pa.scalar(object_id, pa.int64())) & ds.field("psfFlux").is_valid()
    if positive:
        where = where & (ds.field("psfFlux") > 0)
    rows = tables[table].to_table(columns=["band"], filter=where)
    return dict(Counter(rows["band"].to_pylist()))


def stored_class(portal: Portal, object_id: int) -> str:
    context = read.datasets(portal.settings.home)[paths.CONTEXT]
    row = context.to_table(filter=ds.field("diaObjectId") == pa.scalar(object_id, pa.int64()))
    return str(row["classification"][0].as_py())


def check_object_page(browser: Browser, portal: Portal, path: str, object_id: int, shot: str) -> None:
    page = browser.open(f"{portal.url}{path}")
    page.wait_for_selector("#lightcurve[data-ready='true']")
    traces = plot_traces(page, "#lightcurve")
    detections = {t["band"]: t["points"] for t in traces if t["kind"] == "detections"}
    forced = {t["band"]: t["points"] for t in traces if t["kind"] == "forced"}
    # One trace per band, holding every detection of the band (and of forced photometry, when the lake has any).
    assert detections == points_by_band(portal, paths.SOURCES, object_id)
    assert sum(detections.values()) > 1
    assert len([t for t in traces if t["kind"] == "detections"]) == len(detections)
    # (The shared ZTF alerts' forced photometry holds no flux, and the LSST ones none: no forced trace is drawn.)
    assert forced == points_by_band(portal, paths.FORCED_SOURCES, object_id)
    # The three cutouts loaded as pictures.
    page.wait_for_function("() => [...document.querySelectorAll('img.cutout')].every(i => i.complete)")
    widths = page.eval_on_selector_all("img.cutout", "imgs => imgs.map(i => [i.dataset.kind, i.naturalWidth])")
    assert [kind for kind, _ in widths] == ["science", "template", "difference"]
    assert all(width > 0 for _, width in widths), widths
    assert page.inner_text("#context-class") == stored_class(portal, object_id)
    assert page.title().startswith("Object ")
    browser.screenshot(page, shot)
    # Magnitudes: only positive fluxes have one.
    page.get_by_role("button", name="Magnitude (AB)").click()
    page.wait_for_selector("#lightcurve[data-unit='mag']")
    mags = {t["band"]: t["points"] for t in plot_traces(page, "#lightcurve") if t["kind"] == "detections"}
    positive = points_by_band(portal, paths.SOURCES, object_id, positive=True)
    assert {b: n for b, n in mags.items() if n} == positive
    no_errors(browser)


def test_lsst_object_page(browser: Browser, portal: Portal) -> None:
    row = busiest(portal, "lsst")
    object_id = int(row["diaObjectId"])
    check_object_page(browser, portal, f"/objects/{object_id}", object_id, "object-lsst")


def test_ztf_object_page_by_its_ztf_name(browser: Browser, portal: Portal) -> None:
    row = busiest(portal, "ztf")
    name = str(row["objectId"])
    assert name.startswith("ZTF")
    check_object_page(browser, portal, f"/objects/{name}", int(row["diaObjectId"]), "object-ztf")


def test_forced_photometry_is_drawn_per_band(browser: Browser, data_lake: DataLake) -> None:
    """Simulated LSST alerts carry forced photometry with fluxes (the shared real ones do not)."""
    forced = read.datasets(data_lake.settings.home)[paths.FORCED_SOURCES].to_table(columns=["diaObjectId"])
    counts = forced.group_by("diaObjectId").aggregate([("diaObjectId", "count")])
    object_id = int(counts.sort_by([("diaObjectId_count", "descending")])["diaObjectId"][0].as_py())
    with serving(data_lake.settings) as url:
        page = browser.open(f"{url}/objects/{object_id}")
        page.wait_for_selector("#lightcurve[data-ready='true']")
        traces = plot_traces(page, "#lightcurve")
    lake = Portal(data_lake.settings, url, data_lake.objects, {})
    drawn = {t["band"]: t["points"] for t in traces if t["kind"] == "forced"}
    assert drawn == points_by_band(lake, paths.FORCED_SOURCES, object_id) and sum(drawn.values()) > 1
    assert {t["name"] for t in traces if t["kind"] == "forced"} == {f"{band} forced" for band in drawn}
    no_errors(browser)


def test_home_page_counts_and_cone_search(browser: Browser, portal: Portal) -> None:
    page = browser.open(portal.url)
    assert page.title() == "Nightjar · Nightjar"
    assert int(page.inner_text("#n-objects")) == portal.objects.num_rows
    assert page.inner_text("#rate").isdigit()  # the lake was written in several batches: a rate is known
    browser.screenshot(page, "home")
    row = busiest(portal, "lsst")
    page.get_by_label("RA (deg)").fill(str(row["ra"]))
    page.get_by_label("Dec (deg)").fill(str(row["dec"]))
    page.get_by_label("Radius (arcsec)").fill("2")
    page.get_by_role("button", name="Search").click()
    page.wait_for_selector("#cone-results")
    first = page.inner_text("#cone-results tbody tr:first-child td:first-child")
    assert first == str(row["diaObjectId"])
    page.get_by_role("link", name=first).click()
    page.wait_for_selector("#lightcurve[data-ready='true']")
    no_errors(browser)


def test_context_matches_are_ranked_with_distances(browser: Browser, portal: Portal) -> None:
    """An object given a host galaxy 1.5 arcsec away (the API tests' catalogue) shows the match and its class."""
    context = read.datasets(portal.settings.home)[paths.CONTEXT_MATCHES].to_table()
    hosted = int(context.filter(pc.equal(context["catalogue_table_name"], "hosts"))["diaObjectId"][0].as_py())
    page = browser.open(f"{portal.url}/objects/{hosted}")
    assert page.inner_text("#context-class") == stored_class(portal, hosted)
    first = page.eval_on_selector_all("#matches tbody tr:first-child td", "tds => tds.map(td => td.textContent)")
    header = page.eval_on_selector_all("#matches thead th", "ths => ths.map(th => th.textContent)")
    match = dict(zip(header, first, strict=True))
    assert match["rank"] == "1" and match["catalogue_table_name"] == "hosts"
    assert abs(float(match["separationArcsec"]) - 1.5) < 0.05
    no_errors(browser)


def test_an_unknown_object_is_a_404_page(browser: Browser, portal: Portal) -> None:
    page = browser.open(f"{portal.url}/objects/1")
    assert page.inner_text("#error-detail") == "no object 1 in the lake"
    # The document's own 404 is the one error the console shows.
    assert all("404" in e for e in browser.errors) and len(browser.errors) == 1


def test_annotation_links_are_web_addresses_only(settings: Settings, lake_builder: Any) -> None:
    """An annotator names the URL of its annotation: only http(s) ones become links (never ``javascript:``)."""
    lake_builder(settings.home, alerts=20, batches=1)
    object_id = int(
        read.datasets(settings.home)[paths.OBJECTS].to_table(columns=["diaObjectId"])["diaObjectId"][0].as_py()
    )
    notes = pa.table(
        {
            "diaObjectId": pa.array([object_id, object_id], pa.int64()),
            "annotationId": pa.array([1, 2], pa.int64()),
            "topic": ["t", "t"],
            "annotator": ["bot", "bot"],
            "version": ["1", "1"],
            "classification": ["SN", "AGN"],
            "explanation": ["safe", "hostile"],
            "classdict": ["{}", "{}"],
            "url": ["https://example.org/sn", "javascript:alert(1)"],
            "created": pa.array([datetime(2025, 9, 5, tzinfo=UTC)] * 2, pa.timestamp("us", tz="UTC")),
        }
    )
    with commit.lake_lock(settings.home):
        commit.append(settings.home, paths.ANNOTATIONS, notes, {})
    with TestClient(create_app(settings)) as client:
        page = client.get(f"/objects/{object_id}")
    assert page.status_code == 200 and "hostile" in page.text and "AGN" in page.text
    assert 'href="https://example.org/sn"' in page.text and "javascript:" not in page.text

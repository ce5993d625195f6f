"""Filter pages: the list (mine and public), one filter (SQL, outputs, health, versions, recent messages, a
backtest over the last nights), and the forms that create, edit and copy filters.

Every read and write goes through the filter API's own functions (``visible_filter``, ``create_filter``,
``update_filter``, ``copy_filter``), so visibility, ownership and the SQL check are the API's: a filter a visitor
may not see is a 404 here too.
"""

from __future__ import annotations

from typing import Annotated, Any

from confluent_kafka import KafkaException
from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.engine import Engine

from nightjar.api.filter_messages import recent_messages
from nightjar.api.filters import (
    FilterCreate,
    FilterUpdate,
    copy_filter,
    create_filter,
    owned_filter,
    update_filter,
    visible_filter,
    visible_filters,
)
from nightjar.api.users import User
from nightjar.api.web.session import PageUser, SignedInPage, checked_form
from nightjar.api.web.templating import render
from nightjar.lake import ledger
from nightjar.settings import Settings
from nightjar.sql import registry
from nightjar.sql.backtest import backtest, last_nights_since
from nightjar.storage import Home
from nightjar.streams import kafka

FilterId = Annotated[int, PathParam(ge=1, le=2**62)]
MESSAGES = 10
MAX_NIGHTS = 60


def _lines(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").replace(",", "\n").splitlines() if line.strip()]


def form_fields(form: dict[str, str]) -> dict[str, Any]:
    """The filter form's fields as the API's request body takes them."""
    return {
        "name": form.get("name", "").strip(),
        "sql": form.get("sql", "").strip(),
        "visibility": form.get("visibility", "private"),
        "mode": form.get("mode", "all"),
        "format": form.get("format", "json"),
        "kafka": form.get("kafka") == "on",
        "emails": _lines(form.get("emails")),
        "webhooks": _lines(form.get("webhooks")),
    }


def _invalid(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())


def delivery_health(home: Home, flt: registry.Filter) -> dict[str, int]:
    """Deliveries of the filter by channel and status, from the delivery ledger."""
    rows = ledger.read(home, flt.id)
    counts: dict[str, int] = {}
    for channel, state in zip(rows["channel"].to_pylist(), rows["status"].to_pylist(), strict=True):
        counts[f"{channel} {state}"] = counts.get(f"{channel} {state}", 0) + 1
    return dict(sorted(counts.items()))


def router(settings: Settings, db: Engine) -> APIRouter:
    """The portal's filter pages: the list, new and edited filters, copies, and a filter's page with its versions,
    recent messages and backtests."""
    pages = APIRouter(include_in_schema=False)
    home = settings.lake

    def editor(request: Request, user: User, values: dict[str, Any], error: str | None, flt: Any = None) -> Response:
        title = f"Edit filter {flt.name}" if flt else "New filter"
        context = {"user": user, "title": title, "values": values, "error": error, "filter": flt}
        return render(request, "filter_form.html", context)

    def detail(request: Request, user: User, filter_id: int, nights: int | None = None) -> Response:
        flt = visible_filter(db, filter_id, user)
        result = None
        if nights is not None:
            since = last_nights_since(home, nights)
            result = None if since is None else backtest(settings, flt.spec, flt.mode, since)
        try:
            messages: list[Any] | None = recent_messages(settings, db, flt.topic, MESSAGES) if flt.kafka else []
            messages_note = None
        except (kafka.KafkaNotConfigured, KafkaException) as exc:
            messages, messages_note = None, f"Kafka is not reachable: {exc}"
        context = {
            "user": user,
            "title": f"Filter {flt.name}",
            "filter": flt,
            "mine": not user.anonymous and flt.owner == user.name,
            "versions": registry.versions(db, flt.id),
            "backtest": result,
            "nights": nights or 7,
            "messages": messages,
            "messages_note": messages_note,
            "health": delivery_health(home, flt),
        }
        return render(request, "filter.html", context)

    @pages.get("/filters")
    async def filter_list(request: Request, user: PageUser) -> Response:
        found = await run_in_threadpool(visible_filters, db, user)
        mine = [f for f in found if not user.anonymous and f.owner == user.name]
        public = [f for f in found if f not in mine and f.visibility == "public"]
        others = [f for f in found if f not in mine and f not in public]
        context = {"user": user, "title": "Filters", "mine": mine, "public": public, "others": others}
        return render(request, "filters.html", context)

    @pages.get("/filters/new")
    async def new_form(request: Request, user: SignedInPage, sql: str = "") -> Response:
        return editor(request, user, {"sql": sql, "visibility": "private", "mode": "all", "kafka": True}, None)

    @pages.post("/filters/new")
    async def create(request: Request, user: SignedInPage) -> Response:
        values = form_fields(await checked_form(request))
        try:
            body = FilterCreate(**values)
            flt = await run_in_threadpool(create_filter, db, home, user, body)
        except ValidationError as exc:
            return editor(request, user, values, _invalid(exc))
        except HTTPException as exc:
            return editor(request, user, values, str(exc.detail))
        return RedirectResponse(f"/filters/{flt.id}", status_code=303)

    @pages.get("/filters/{filter_id}")
    async def show(request: Request, user: PageUser, filter_id: FilterId) -> Response:
        return await run_in_threadpool(detail, request, user, filter_id)

    @pages.post("/filters/{filter_id}/backtest")
    async def run_backtest(request: Request, user: PageUser, filter_id: FilterId) -> Response:
        form = await checked_form(request)
        try:
            nights = min(MAX_NIGHTS, max(1, int(form.get("nights", "7"))))
        except ValueError:
            raise HTTPException(status_code=400, detail="nights must be a whole number") from None
        return await run_in_threadpool(detail, request, user, filter_id, nights)

    @pages.get("/filters/{filter_id}/edit")
    async def edit_form(request: Request, user: SignedInPage, filter_id: FilterId) -> Response:
        flt = await run_in_threadpool(owned_filter, db, filter_id, user, "change")
        values = {
            "name": flt.name,
            "sql": flt.sql,
            "visibility": flt.visibility,
            "mode": flt.mode,
            "format": flt.format,
            "kafka": flt.kafka,
            "emails": list(flt.emails),
            "webhooks": list(flt.webhooks),
            "active": flt.active,
        }
        return editor(request, user, values, None, flt)

    @pages.post("/filters/{filter_id}/edit")
    async def edit(request: Request, user: SignedInPage, filter_id: FilterId) -> Response:
        form = await checked_form(request)
        values = {**form_fields(form), "active": form.get("active") == "on"}
        flt = await run_in_threadpool(owned_filter, db, filter_id, user, "change")
        try:
            body = FilterUpdate(**values)
            await run_in_threadpool(update_filter, db, home, user, filter_id, body)
        except ValidationError as exc:
            return editor(request, user, values, _invalid(exc), flt)
        except HTTPException as exc:
            if exc.status_code in (403, 404):
                raise
            return editor(request, user, values, str(exc.detail), flt)
        return RedirectResponse(f"/filters/{filter_id}", status_code=303)

    @pages.post("/filters/{filter_id}/copy")
    async def copy(request: Request, user: SignedInPage, filter_id: FilterId) -> Response:
        await checked_form(request)
        flt = await run_in_threadpool(copy_filter, db, home, user, filter_id, None)
        return RedirectResponse(f"/filters/{flt.id}/edit", status_code=303)

    return pages

"""The filter registry: versions, renames that keep the topic, visibility and copies, health, refusals."""

from __future__ import annotations

import pytest

from nightjar.sql import registry
from nightjar.sql.parse import QueryError

# The metadata database on SQLite, then on a real PostgreSQL server (tests/conftest.py).
pytestmark = pytest.mark.both_databases

BRIGHT = "SELECT diaObjectId, diaSourceId, psfFlux FROM sources WHERE psfFlux > 50000"


def test_versions_and_a_rename_keep_the_topic(db) -> None:
    first = registry.add_filter(db, "bright", BRIGHT, emails=["me@example.org"])
    assert (first.version, first.topic, first.channels) == (1, f"nightjar.filter.{first.id}", ("kafka", "email"))
    same = registry.add_filter(db, "bright", BRIGHT, emails=["me@example.org"])
    assert (same.id, same.version) == (first.id, 1)  # the same SQL again is not a new version
    edited = registry.edit_filter(db, first.id, sql=BRIGHT.replace("50000", "80000"))
    renamed = registry.edit_filter(db, first.id, name="very bright")
    assert (edited.version, renamed.version, renamed.topic) == (2, 2, first.topic)
    moded = registry.edit_filter(db, first.id, mode="new")
    assert moded.version == 3 and moded.mode == "new"
    history = registry.versions(db, first.id)
    assert [(v.version, v.name, v.mode) for v in history] == [
        (1, "bright", "all"),
        (2, "bright", "all"),
        (3, "very bright", "new"),
    ]
    assert "80000" in history[1].sql and "50000" in history[0].sql


def test_public_filters_can_be_copied_private_ones_cannot(db) -> None:
    public = registry.add_filter(db, "shared", BRIGHT, owner="alice", visibility="public")
    private = registry.add_filter(db, "mine", BRIGHT, owner="alice")
    copy = registry.copy_filter(db, public.id, owner="bob", name="my shared")
    assert (copy.owner, copy.copied_from, copy.sql, copy.visibility) == ("bob", public.id, public.sql, "private")
    assert copy.id != public.id and copy.topic != public.topic
    with pytest.raises(registry.RegistryError, match="not public"):
        registry.copy_filter(db, private.id, owner="bob")
    edited = registry.edit_filter(db, copy.id, requester="bob", sql=BRIGHT.replace("50000", "1000"))
    assert registry.get_filter(db, public.id).sql == BRIGHT and edited.version == 2
    with pytest.raises(registry.RegistryError, match="belongs to alice"):
        registry.edit_filter(db, public.id, requester="bob", active=False)
    assert {f.name for f in registry.list_filters(db, visible_to="bob")} == {"shared", "my shared"}


def test_deleted_ids_and_topics_are_never_reused(db) -> None:
    a = registry.add_filter(db, "a", BRIGHT)
    b = registry.add_filter(db, "b", BRIGHT, webhooks=["https://example.org/hook"])
    registry.delete_filter(db, b.id)
    c = registry.add_filter(db, "c", BRIGHT)
    assert c.id > b.id > a.id
    with pytest.raises(registry.RegistryError, match=f"no filter {b.id}"):
        registry.get_filter(db, b.id)


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT psfFlux FROM sources WHERE psfFlx > 1", 'Referenced column "psfFlx" not found'),
        ("SELECT * FROM read_csv('/etc/passwd')", "read_csv() is not available"),
        ("DELETE FROM sources", "only SELECT"),
        ("SELECT psfFlux FROM sources s JOIN objects o USING (diaObjectId)", "must select diaObjectId"),
        ("SELECT count(*) FROM sources", "must select diaObjectId"),
    ],
)
def test_bad_filters_are_refused_when_added(db, sql: str, message: str) -> None:
    with pytest.raises(QueryError, match=message.replace("(", r"\(").replace(")", r"\)")):
        registry.add_filter(db, "bad", sql)
    assert registry.list_filters(db) == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"emails": ["not-an-address"]}, "not an e-mail address"),
        ({"emails": ["m@example.org\u2028Bcc: evil@example.com"]}, "not an e-mail address"),
        ({"emails": ["m@example.org\x85Bcc: evil@example.com"]}, "not an e-mail address"),
        ({"emails": ["=?utf-8?q?m=0D=0A?=@example.org"]}, "not an e-mail address"),
        ({"emails": ["Me <m@example.org>"]}, "not an e-mail address"),
        ({"webhooks": ["ftp://example.org/x"]}, "http:// or https://"),
        ({"webhooks": ["http://a..b/"]}, "valid host"),
        ({"webhooks": ["http://[::1/"]}, "valid host"),
        ({"webhooks": ["http://example.org:99999/"]}, "valid host"),
        ({"webhooks": ["http://exa mple.org/"]}, "valid host"),
        ({"webhooks": ["http://example.org/\u2028x"]}, "valid host"),
        ({"format": "avro", "sql": "SELECT diaObjectId, psfFlux * 2 FROM sources"}, "cannot be delivered as Avro"),
        ({"format": "avro", "sql": "SELECT diaObjectId, INTERVAL 1 DAY AS i FROM sources"}, "delivered as Avro"),
        ({"name": "line\u2028sep"}, "may not contain U\\+2028"),
        ({"name": "nel\x85"}, "may not contain U\\+0085"),
        ({"name": "=?utf-8?q?hi=0D=0ABcc:_x@y.org?="}, "may not contain =\\?"),
        ({"name": "x" * 201}, "at most 200"),
        ({"visibility": "everyone"}, "unknown visibility"),
        ({"mode": "sometimes"}, "unknown mode"),
    ],
)
def test_bad_options_are_refused(db, options: dict, message: str) -> None:
    given = {"name": "bad", "sql": BRIGHT, **options}
    rest = {k: v for k, v in given.items() if k not in ("name", "sql")}
    with pytest.raises(registry.RegistryError, match=message):
        registry.add_filter(db, given["name"], given["sql"], **rest)
    good = registry.add_filter(db, "good", BRIGHT)
    with pytest.raises(registry.RegistryError, match=message):
        registry.edit_filter(db, good.id, **given)


def test_failing_filters_are_switched_off_after_repeated_failures(db) -> None:
    flt = registry.add_filter(db, "flaky", BRIGHT)
    other = registry.add_filter(db, "fine", BRIGHT)
    assert registry.record_health(db, {flt.id: "boom", other.id: None}, max_failures=2) == []
    assert registry.get_filter(db, flt.id).failures == 1
    stopped = registry.record_health(db, {flt.id: "boom again", other.id: None}, max_failures=2)
    assert [f.id for f in stopped] == [flt.id]
    again = registry.get_filter(db, flt.id)
    assert (again.active, again.last_error) == (False, "boom again")
    assert [f.id for f in registry.list_filters(db, active_only=True)] == [other.id]
    revived = registry.edit_filter(db, flt.id, active=True)
    assert revived.active and revived.failures == 0

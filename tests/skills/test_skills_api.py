"""The skills API: create, read, list, change, delete; errors in the app's one shape.

Every request here runs under the autouse blocking-call gate (tests/conftest.py,
blockbuster): a skills endpoint that blocked the event loop would fail its test.
"""

from typing import Any

import httpx
import pytest
from blockbuster import BlockBuster
from sqlalchemy import func, select

from app.db.session import Database
from app.models import Skill, SkillRevision
from tests.conftest import collect_pages, make_app, serve_app
from tests.skills.conftest import assert_error, create_skill, skill_md

LIMIT = 256 * 1024


async def revision_count(db: Database, name: str | None = None) -> int:
    stmt = select(func.count()).select_from(SkillRevision)
    if name is not None:
        stmt = stmt.join(Skill, Skill.id == SkillRevision.skill_id).where(Skill.name == name)
    async with db.session(write=False) as session:
        return int((await session.execute(stmt)).scalar_one())


async def test_every_skills_endpoint_answers_under_the_blocking_gate(
    client: httpx.AsyncClient, blockbuster: BlockBuster
) -> None:
    """One pass over every route, with the gate's functions armed."""
    assert blockbuster.functions["time.sleep"].activated
    created = await client.post("/api/skills", json={"content": skill_md("gate")})
    assert created.status_code == 201
    assert (await client.get("/api/skills")).status_code == 200
    assert (await client.get("/api/skills/gate")).status_code == 200
    patched = await client.patch("/api/skills/gate", json={"content": skill_md("gate", "New")})
    assert patched.status_code == 200
    assert (await client.get("/api/skills/gate/revisions")).status_code == 200
    rolled = await client.post("/api/skills/gate/rollback", json={"version": 1})
    assert rolled.status_code == 200
    assert (await client.delete("/api/skills/gate")).status_code == 204


async def test_create_from_content_alone(client: httpx.AsyncClient, db: Database) -> None:
    content = skill_md("pdf-forms", "Fill in PDF forms", "# Steps\n1. Open it")
    response = await client.post("/api/skills", json={"content": content})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "pdf-forms"
    assert body["description"] == "Fill in PDF forms"
    assert body["content"] == content
    assert body["enabled"] is True and body["version"] == 1
    assert body["created_at"] == body["updated_at"] and body["created_at"].endswith("Z")
    assert response.headers["etag"] == '"1"'
    got = await client.get("/api/skills/pdf-forms")
    assert got.json() == body and got.headers["etag"] == '"1"'
    revisions = (await client.get("/api/skills/pdf-forms/revisions")).json()["items"]
    assert [(r["version"], r["content"], r["enabled"]) for r in revisions] == [(1, content, True)]
    assert await revision_count(db) == 1


async def test_create_with_name_and_description(client: httpx.AsyncClient) -> None:
    content = "---\nname: 'notes'\ndescription: from the file\nlicense: MIT\n---\nBody\n"
    response = await client.post(
        "/api/skills",
        json={"name": "notes", "description": "  given  ", "content": content, "enabled": False},
    )
    assert response.status_code == 201, response.text
    assert response.json()["description"] == "given"
    assert response.json()["enabled"] is False


async def test_description_may_come_from_the_request_alone(client: httpx.AsyncClient) -> None:
    content = "---\nname: bare\n---\nBody\n"
    missing = await client.post("/api/skills", json={"content": content})
    assert "description" in assert_error(missing, 422, "validation_error")["message"]
    given = await client.post("/api/skills", json={"content": content, "description": "d"})
    assert given.status_code == 201 and given.json()["description"] == "d"


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"content": "no front matter"}, "front matter"),
        ({"content": "---\nname: x\ndescription: y\n"}, "not closed"),
        ({"content": "---\ndescription: y\n---\nbody"}, "no `name`"),
        ({"content": "---\nname: Bad_Name\ndescription: y\n---\n"}, "must match"),
        ({"content": "---\nname: a\nname: b\ndescription: y\n---\n"}, "twice"),
        ({"content": "---\nthis is not yaml\n---\n"}, "key: value"),
        ({"content": '---\nname: "open\ndescription: y\n---\n'}, "unterminated"),
        ({"name": "other", "content": skill_md("mine")}, "not the skill's name"),
        ({"content": skill_md("x", "d" * 1025)}, "1024"),
    ],
)
async def test_bad_front_matter_is_422(
    client: httpx.AsyncClient, payload: dict[str, Any], fragment: str
) -> None:
    body = assert_error(await client.post("/api/skills", json=payload), 422, "validation_error")
    assert fragment in body["message"], body
    assert (await client.get("/api/skills")).json()["items"] == []


@pytest.mark.parametrize(
    "payload",
    [
        {"name": "Upper", "content": skill_md("upper")},
        {"name": "-dash", "content": skill_md("dash")},
        {"name": "a" * 65, "content": skill_md("a" * 65)},
        {"content": skill_md("x"), "colour": "blue"},
        {"content": skill_md("x"), "description": "   "},
        {"content": "---\nname: x\ndescription: y\n---\nnul \x00 here"},
        {"description": "no content"},
    ],
)
async def test_invalid_requests_are_422(client: httpx.AsyncClient, payload: dict[str, Any]) -> None:
    assert_error(await client.post("/api/skills", json=payload), 422, "validation_error")


async def test_a_taken_name_is_409(client: httpx.AsyncClient, db: Database) -> None:
    await create_skill(client, "twice")
    again = await client.post("/api/skills", json={"content": skill_md("twice", "other")})
    body = assert_error(again, 409, "conflict")
    assert body["details"] == {"name": "twice"}
    assert (await client.get("/api/skills/twice")).json()["description"] == "Does things"
    assert await revision_count(db) == 1


async def test_content_over_256_kib_is_413(client: httpx.AsyncClient) -> None:
    head = skill_md("big")
    exact = head + "x" * (LIMIT - len(head))
    assert len(exact.encode()) == LIMIT
    assert (await client.post("/api/skills", json={"content": exact})).status_code == 201
    over = head + "é" * ((LIMIT - len(head)) // 2 + 1)  # 2 bytes each in UTF-8
    assert len(over) < LIMIT < len(over.encode())
    response = await client.post("/api/skills", json={"content": over})
    body = assert_error(response, 413, "payload_too_large")
    assert body["details"]["limit_bytes"] == LIMIT
    patched = await client.patch("/api/skills/big", json={"content": exact + "y"})
    assert_error(patched, 413, "payload_too_large")
    assert (await client.get("/api/skills/big")).json()["version"] == 1


async def test_get_unknown_is_404_and_bad_names_are_422(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/skills/nope"), 404, "not_found")
    assert_error(await client.get("/api/skills/Not_A_Name"), 422, "validation_error")
    for method in ("PATCH", "DELETE"):
        response = await client.request(method, "/api/skills/nope", json={"enabled": False})
        assert_error(response, 404, "not_found")
    assert_error(await client.get("/api/skills/nope/revisions"), 404, "not_found")
    response = await client.post("/api/skills/nope/rollback", json={"version": 1})
    assert_error(response, 404, "not_found")


async def test_patch_toggles_and_writes_one_revision_per_change(
    client: httpx.AsyncClient, db: Database
) -> None:
    await create_skill(client, "toggle")
    off = await client.patch(
        "/api/skills/toggle", json={"enabled": False}, headers={"If-Match": '"1"'}
    )
    assert off.status_code == 200, off.text
    assert off.json()["enabled"] is False and off.json()["version"] == 2
    assert off.headers["etag"] == '"2"'
    assert off.json()["updated_at"] > off.json()["created_at"]
    stale = await client.patch(
        "/api/skills/toggle", json={"enabled": True}, headers={"If-Match": '"1"'}
    )
    body = assert_error(stale, 412, "precondition_failed")
    assert stale.headers["etag"] == '"2"' and body["details"] == {"current_version": 2}
    on = await client.patch("/api/skills/toggle", json={"enabled": True}, headers={"If-Match": "*"})
    assert on.json()["version"] == 3 and on.json()["enabled"] is True
    listed = await client.patch(
        "/api/skills/toggle", json={"enabled": False}, headers={"If-Match": 'W/"9", "3"'}
    )
    assert listed.json()["version"] == 4
    assert await revision_count(db, "toggle") == 4
    revisions = (await client.get("/api/skills/toggle/revisions")).json()["items"]
    assert [(r["version"], r["enabled"]) for r in revisions] == [
        (4, False),
        (3, True),
        (2, False),
        (1, True),
    ]
    bad = await client.patch(
        "/api/skills/toggle", json={"enabled": True}, headers={"If-Match": "3"}
    )
    assert_error(bad, 400, "bad_request")


async def test_patch_without_changes_keeps_the_version(
    client: httpx.AsyncClient, db: Database
) -> None:
    """An empty body, or values equal to the stored ones: 200, same version, no revision.
    A stale If-Match is still 412."""
    created = await create_skill(client, "still")
    for payload in ({}, {"enabled": True}, {"description": "Does things"}):
        response = await client.patch("/api/skills/still", json=payload)
        assert response.status_code == 200, response.text
        assert response.json() == created and response.headers["etag"] == '"1"'
    content = await client.patch("/api/skills/still", json={"content": created["content"]})
    assert content.json()["version"] == 1
    stale = await client.patch("/api/skills/still", json={}, headers={"If-Match": '"7"'})
    assert_error(stale, 412, "precondition_failed")
    stale = await client.patch(
        "/api/skills/still", json={"enabled": True}, headers={"If-Match": '"7"'}
    )
    assert_error(stale, 412, "precondition_failed")
    assert await revision_count(db, "still") == 1


async def test_patch_content_and_description(client: httpx.AsyncClient) -> None:
    await create_skill(client, "doc")
    new = skill_md("doc", "From the new file", "New body")
    changed = (await client.patch("/api/skills/doc", json={"content": new})).json()
    assert changed["content"] == new and changed["description"] == "From the new file"
    assert changed["version"] == 2
    explicit = await client.patch("/api/skills/doc", json={"description": "Set by hand"})
    assert explicit.json()["description"] == "Set by hand"
    assert explicit.json()["content"] == new and explicit.json()["version"] == 3
    both = await client.patch(
        "/api/skills/doc",
        json={"content": skill_md("doc", "ignored", "Third"), "description": "Wins"},
    )
    assert both.json()["description"] == "Wins" and both.json()["version"] == 4
    renamed = await client.patch("/api/skills/doc", json={"content": skill_md("other")})
    assert "not the skill's name" in assert_error(renamed, 422, "validation_error")["message"]
    for payload in ({"enabled": None}, {"content": None}, {"version": 9}, {"enabled": "maybe"}):
        response = await client.patch("/api/skills/doc", json=payload)
        assert_error(response, 422, "validation_error")
    assert (await client.get("/api/skills/doc")).json()["version"] == 4


async def test_rollback_restores_content_as_a_new_version(
    client: httpx.AsyncClient, db: Database
) -> None:
    first = await create_skill(client, "roll", body="First body")
    second = skill_md("roll", "Second", "Second body")
    await client.patch("/api/skills/roll", json={"content": second})
    await client.patch("/api/skills/roll", json={"enabled": False})
    rolled = await client.post("/api/skills/roll/rollback", json={"version": 1})
    assert rolled.status_code == 200, rolled.text
    body = rolled.json()
    assert body["version"] == 4 and rolled.headers["etag"] == '"4"'
    assert body["content"] == first["content"] and body["description"] == first["description"]
    assert body["enabled"] is False, "rollback restores instructions, not the switch"
    latest = (await client.get("/api/skills/roll/revisions", params={"limit": 1})).json()
    assert latest["items"][0]["version"] == 4
    assert latest["items"][0]["content"] == first["content"]
    again = await client.post("/api/skills/roll/rollback", json={"version": 1})
    assert again.json()["version"] == 4, "already that content: nothing to change"
    unknown = await client.post("/api/skills/roll/rollback", json={"version": 99})
    assert assert_error(unknown, 404, "not_found")["details"] == {"current_version": 4}
    stale = await client.post(
        "/api/skills/roll/rollback", json={"version": 2}, headers={"If-Match": '"3"'}
    )
    assert_error(stale, 412, "precondition_failed")
    assert stale.headers["etag"] == '"4"'
    ok = await client.post(
        "/api/skills/roll/rollback", json={"version": 2}, headers={"If-Match": '"4"'}
    )
    assert ok.json()["content"] == second and ok.json()["version"] == 5
    for version in (0, -1, 2**31, "two"):
        response = await client.post("/api/skills/roll/rollback", json={"version": version})
        assert_error(response, 422, "validation_error")
    assert await revision_count(db, "roll") == 5


async def test_list_is_keyset_paginated_and_filters_enabled(client: httpx.AsyncClient) -> None:
    names = [f"skill-{i:03d}" for i in range(23)]
    for i, name in enumerate(reversed(names)):
        await create_skill(client, name, enabled=(i % 3 != 0))
    everything = await collect_pages(client, "/api/skills", "name", limit=5)
    assert everything == names
    page = (await client.get("/api/skills", params={"limit": 5})).json()
    assert len(page["items"]) == 5 and "content" not in page["items"][0]
    enabled = await collect_pages(client, "/api/skills", "name", limit=4, enabled="true")
    disabled = await collect_pages(client, "/api/skills", "name", limit=4, enabled="false")
    assert sorted(enabled + disabled) == names and not set(enabled) & set(disabled)
    assert len(disabled) == 8
    last = (await client.get("/api/skills", params={"limit": 23})).json()
    assert last["next_page_id"] is None


async def test_bad_cursors_are_400(client: httpx.AsyncClient) -> None:
    for i in range(3):
        await create_skill(client, f"c{i}")
    skills_cursor = (await client.get("/api/skills", params={"limit": 1})).json()["next_page_id"]
    revs = "/api/skills/c0/revisions"
    for url, page_id in (
        ("/api/skills", "not-a-cursor"),
        (revs, skills_cursor),
        ("/api/skills", "eyJzY29wZSI6InNraWxscyIsIm9yZGVyIjoiTkFNRSIsIm5hbWUiOjF9"),
    ):
        response = await client.get(url, params={"page_id": page_id})
        assert_error(response, 400, "bad_request")


async def test_revisions_are_keyset_paginated_both_ways(client: httpx.AsyncClient) -> None:
    await create_skill(client, "many")
    for i in range(11):
        await client.patch("/api/skills/many", json={"description": f"d{i}"})
    url = "/api/skills/many/revisions"
    newest_first = await collect_pages(client, url, "version", limit=4)
    assert newest_first == list(range(12, 0, -1))
    oldest_first = await collect_pages(client, url, "version", limit=5, sort_order="VERSION")
    assert oldest_first == list(range(1, 13))
    descending = (await client.get(url, params={"limit": 2})).json()["next_page_id"]
    wrong_order = await client.get(url, params={"page_id": descending, "sort_order": "VERSION"})
    assert_error(wrong_order, 400, "bad_request")


async def test_delete_removes_the_skill_and_its_revisions(
    client: httpx.AsyncClient, db: Database
) -> None:
    await create_skill(client, "gone")
    await create_skill(client, "kept")
    await client.patch("/api/skills/gone", json={"enabled": False})
    assert await revision_count(db) == 3
    assert (await client.delete("/api/skills/gone")).status_code == 204
    assert_error(await client.get("/api/skills/gone"), 404, "not_found")
    assert await revision_count(db) == 1
    again = await create_skill(client, "gone")
    assert again["version"] == 1
    revisions = (await client.get("/api/skills/gone/revisions")).json()["items"]
    assert [r["version"] for r in revisions] == [1]


async def test_skills_need_the_api_key(db: Database) -> None:
    async with serve_app(make_app(db, session_api_keys=["k"])) as secured:
        for method, path in (("GET", "/api/skills"), ("POST", "/api/skills")):
            response = await secured.request(method, path, json={"content": skill_md("x")})
            assert_error(response, 401, "unauthorized")
        ok = await secured.get("/api/skills", headers={"X-Session-API-Key": "k"})
        assert ok.status_code == 200

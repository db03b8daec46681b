"""Concurrent changes of skills lose nothing, on SQLite and on Postgres.

Real concurrency: asyncio.gather over an httpx client on the ASGI app, as in
tests/test_concurrency.py; every request runs under the blocking-call gate.

Each lost-update test was checked against a deliberately broken variant, and that check is
itself a test here (`test_the_lost_update_tests_fail_against_a_naive_read_then_write`):
`naive_patch` reads the skill in one transaction and then writes in another without a
version check, as a store that rewrites a JSON file does. Against it, the same scenarios let
several If-Match PATCHes through and lose toggles, so their checks fail. Note that counting
revisions alone would not catch the naive variant in the toggle scenario (each client still
gets its 10 successes, so there are 500 new revisions): the check that every revision flips
the one before it does.
"""

import asyncio
import itertools
import random
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select, update

from app.clock import utcnow
from app.db.session import Database, get_database
from app.http import parse_if_match
from app.models import Skill, SkillRevision
from app.skills import repository
from app.skills.schemas import SkillRead, SkillUpdate
from tests.conftest import make_app, serve_app
from tests.skills.conftest import create_skill

API = "/api/skills"
NAIVE = "/naive/skills"

naive_router = APIRouter()


@naive_router.patch(f"{NAIVE}/{{name}}")
async def naive_patch(
    name: str,
    body: SkillUpdate,
    request: Request,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The broken variant: read, then write without a version check."""
    db = get_database(request)
    async with db.session(write=False) as session:
        current = await repository.get(session, name)
    if current is None:
        return JSONResponse({"message": "not found"}, status_code=404)
    expected = parse_if_match(if_match)
    if expected is not None and current.version not in expected:
        return JSONResponse({}, status_code=412, headers={"ETag": f'"{current.version}"'})
    async with db.session(write=True) as session:
        stmt = (
            update(Skill)
            .where(Skill.name == name)
            .values(**body.model_dump(exclude_unset=True), version=Skill.version + 1)
            .values(updated_at=utcnow())
            .returning(Skill)
        )
        skill = (await session.execute(stmt)).scalars().one()
        await repository.insert_revision(session, skill)
        read = SkillRead.model_validate(skill)
    return JSONResponse(read.model_dump(mode="json"), headers={"ETag": f'"{read.version}"'})


async def revision_states(db: Database, name: str) -> list[tuple[int, bool]]:
    """(version, enabled) of every revision of the skill, by version."""
    stmt = (
        select(SkillRevision.version, SkillRevision.enabled)
        .join(Skill, Skill.id == SkillRevision.skill_id)
        .where(Skill.name == name)
        .order_by(SkillRevision.version)
    )
    async with db.session(write=False) as session:
        return [(v, e) for v, e in (await session.execute(stmt)).all()]


# ---- the scenarios, each against a PATCH route (`base`), and their checks -----------------


async def one_etag_for_all(
    client: httpx.AsyncClient, db: Database, base: str
) -> tuple[list[httpx.Response], list[tuple[int, bool]]]:
    """100 concurrent PATCHes toggling one skill, all with If-Match "1"."""
    await create_skill(client, "contested")

    async def patch() -> httpx.Response:
        return await client.patch(
            f"{base}/contested", json={"enabled": False}, headers={"If-Match": '"1"'}
        )

    responses = await asyncio.gather(*(patch() for _ in range(100)))
    return list(responses), await revision_states(db, "contested")


def check_one_winner(responses: list[httpx.Response], states: list[tuple[int, bool]]) -> None:
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [412] * 99, statuses
    assert all(r.headers["etag"] == '"2"' for r in responses)
    assert states == [(1, True), (2, False)], "exactly one revision written"


async def toggle_loop(
    client: httpx.AsyncClient, db: Database, base: str, clients: int = 50, toggles: int = 10
) -> tuple[list[tuple[int, bool]], int]:
    """`clients` read-modify-write loops, `toggles` successes each: PATCH `enabled` to the
    opposite of the state last seen (a GET, or this client's own last 200), with that
    state's ETag as If-Match. A 412 means another client got in first: back off (random,
    growing with the client's consecutive 412s, as a real client would), GET, try again.
    Returns the revisions and how many 412s there were."""
    await create_skill(client, "flip")
    conflicts = 0

    async def one_client(seed: int) -> None:
        nonlocal conflicts
        jitter = random.Random(seed)
        done = streak = 0
        last: httpx.Response | None = None  # the state this client last saw
        while done < toggles:
            if streak:
                await asyncio.sleep(jitter.uniform(0, 0.01 * 2 ** min(streak, 8)))
            if last is None:
                last = await client.get(f"{API}/flip")
                assert last.status_code == 200, last.text
            response = await client.patch(
                f"{base}/flip",
                json={"enabled": not last.json()["enabled"]},
                headers={"If-Match": last.headers["etag"]},
            )
            if response.status_code == 412:
                conflicts += 1
                streak += 1
                last = None
                continue
            assert response.status_code == 200, response.text
            done += 1
            streak = 0
            last = response

    await asyncio.gather(*(one_client(seed) for seed in range(clients)))
    return await revision_states(db, "flip"), conflicts


def check_every_toggle_applied(states: list[tuple[int, bool]], toggles: int = 500) -> None:
    assert [v for v, _ in states] == list(range(1, toggles + 2)), "a revision per toggle"
    lost = [v for (_, before), (v, after) in itertools.pairwise(states) if before == after]
    assert not lost, f"{len(lost)} toggles were lost (e.g. version {lost[0]} did not flip)"


# ---- the proofs -------------------------------------------------------------------------


async def test_100_patches_with_one_if_match_let_exactly_one_through(
    client: httpx.AsyncClient, db: Database
) -> None:
    responses, states = await one_etag_for_all(client, db, API)
    check_one_winner(responses, states)
    for response in responses:
        if response.status_code == 412:
            assert response.json()["details"] == {"current_version": 2}
    final = (await client.get(f"{API}/contested")).json()
    assert final["version"] == 2 and final["enabled"] is False


async def test_20_patches_to_20_skills_without_if_match_are_all_applied(
    client: httpx.AsyncClient, db: Database
) -> None:
    names = [f"s-{i:02d}" for i in range(20)]
    for name in names:
        await create_skill(client, name)

    async def patch(name: str) -> httpx.Response:
        return await client.patch(
            f"{API}/{name}", json={"enabled": False, "description": f"for {name}"}
        )

    responses = await asyncio.gather(*(patch(name) for name in names))
    assert [r.status_code for r in responses] == [200] * 20, [r.text for r in responses]
    for name in names:
        skill = (await client.get(f"{API}/{name}")).json()
        assert (skill["version"], skill["enabled"]) == (2, False)
        assert skill["description"] == f"for {name}"
        assert await revision_states(db, name) == [(1, True), (2, False)]


async def test_50_clients_x_10_toggles_with_retry_write_exactly_500_revisions(
    client: httpx.AsyncClient, db: Database
) -> None:
    states, conflicts = await toggle_loop(client, db, API)
    check_every_toggle_applied(states)
    final = (await client.get(f"{API}/flip")).json()
    assert final["version"] == 501 and final["enabled"] is True
    assert conflicts > 0, "the clients did contend"


async def test_concurrent_patches_without_if_match_each_make_one_version(
    client: httpx.AsyncClient, db: Database
) -> None:
    """No If-Match: every change still applies, on top of the others, as its own version."""
    await create_skill(client, "busy")

    async def patch(i: int) -> httpx.Response:
        return await client.patch(f"{API}/busy", json={"description": f"d{i}"})

    responses = await asyncio.gather(*(patch(i) for i in range(50)))
    assert [r.status_code for r in responses] == [200] * 50
    assert sorted(r.json()["version"] for r in responses) == list(range(2, 52))
    assert [v for v, _ in await revision_states(db, "busy")] == list(range(1, 52))


async def test_the_lost_update_tests_fail_against_a_naive_read_then_write(db: Database) -> None:
    """The same scenarios and checks, against `naive_patch`: they fail, as they must."""
    app = make_app(db)
    app.include_router(naive_router)
    async with serve_app(app) as client:
        responses, states = await one_etag_for_all(client, db, NAIVE)
        with pytest.raises(AssertionError):
            check_one_winner(responses, states)
        winners = sum(r.status_code == 200 for r in responses)
        assert winners > 1, "several writers each changed a version the others had changed"
        assert len(states) == 1 + winners

        # Fewer clients and toggles than the real test: enough to lose updates every time.
        toggled, _ = await toggle_loop(client, db, NAIVE, clients=20, toggles=5)
        with pytest.raises(AssertionError, match="toggles were lost"):
            check_every_toggle_applied(toggled, toggles=100)

"""``GET /_caducee/v1/directory/accounts``: who Matrix accounts are in the register, by the
link onboarding made (what the bot files a case export's members under), never by a name."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.directory.importer import import_directory
from bridge.directory.store import link_matrix_id
from bridge.http.directory_routes import ACCOUNTS_PATH, parse_accounts_params
from bridge.http.errors import ApiError
from tests.bridge_http_support import bridge_config, running_bridge
from tests.directory_support import BACKENDS, demo_extract, directory_database
from tests.test_bridge_http import BOT, openapi_validator


@pytest.mark.parametrize(
    ("values", "errcode", "message"),
    [
        ([], "M_MISSING_PARAM", "'matrix_id' is required"),
        (["anne:clinic.test"], "M_INVALID_PARAM", "@name:server"),
        (["@anne"], "M_INVALID_PARAM", "@name:server"),
        (["@:clinic.test"], "M_INVALID_PARAM", "@name:server"),
        ([f"@u{i}:clinic.test" for i in range(51)], "M_INVALID_PARAM", "at most 50"),
    ],
)
def test_bad_account_lookups_are_named(values: list[str], errcode: str, message: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_accounts_params(values)
    assert (info.value.status, info.value.errcode) == (400, errcode)
    assert message in info.value.message


@pytest.mark.parametrize("backend", BACKENDS)
async def test_accounts_answer_visible_links_only(backend: str, tmp_path: Path) -> None:
    async with directory_database(backend, tmp_path) as db:
        await import_directory(db, demo_extract(tmp_path, lines=300))
        async with db.sessions.begin() as session:
            await link_matrix_id(session, "10009999995", "@anne:clinic.test", visible=True)
            await link_matrix_id(session, "10001111110", "@paul:clinic.test", visible=False)
        url = db.engine.url.render_as_string(hide_password=False)
        async with running_bridge(bridge_config(tmp_path, database_url=url)) as client:
            asked = ["@anne:clinic.test", "@paul:clinic.test", "@nobody:clinic.test"]
            response = await client.get(
                ACCOUNTS_PATH, params=[("matrix_id", m) for m in asked], headers=BOT
            )
            assert response.status == 200, await response.text()
            body = await response.json()
            refused = await client.get(ACCOUNTS_PATH, params={"matrix_id": "anne"}, headers=BOT)
            assert refused.status == 400
            anonymous = await client.get(ACCOUNTS_PATH, params={"matrix_id": asked[0]})
            assert anonymous.status == 401
    (anne,) = body["results"]  # hidden and unknown accounts are left out
    openapi_validator("Practitioner").validate(anne)
    assert (anne["rpps"], anne["matrix_id"]) == ("10009999995", "@anne:clinic.test")

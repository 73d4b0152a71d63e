"""Names kept unique whatever their letter case (usernames, test codes,
server labels) are compared with Unicode case folding: SQL's lower() folds
only ASCII on SQLite, so "Ärzte" and "ÄRZTE" both passed the check and the
second hit the unique index (a 500 on the page, a traceback in the CLI)."""

from __future__ import annotations

import pytest

from ghimaging.auth.service import UserError, create_user, find_user
from ghimaging.catalog import service as catalog
from ghimaging.catalog.service import CatalogError, modality_by_code, save_test, seed
from ghimaging.models import Role


def test_a_username_differing_only_by_non_ascii_case_is_refused_and_found(app):
    user = create_user("Ärzte", "s3cret-Passw0rd", [Role.PHYSICIAN])
    with pytest.raises(UserError):
        create_user("äRZTE", "s3cret-Passw0rd", [Role.PHYSICIAN])
    assert find_user("ÄRZTE") is user and find_user("ärzte ") is user and find_user("arzte") is None


def test_a_test_code_differing_only_by_non_ascii_case_is_refused(app):
    seed()
    test = save_test(None, code="CT-ÄÖ", name="One", modality=modality_by_code("CT"), ae_title="CT1")
    with pytest.raises(CatalogError):
        save_test(None, code="ct-äö", name="Two", modality=modality_by_code("CT"), ae_title="CT1")
    assert catalog.test_by_code("ct-äö") is test


def test_the_api_answers_405_with_the_allowed_methods(api):
    r = api("admin").client.delete("/api/v1/patients", headers=api("admin").headers)
    assert r.status_code == 405 and "GET" in r.headers.get("Allow", "") and r.is_json

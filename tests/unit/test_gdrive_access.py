"""Who may see a Drive file, from its permissions (ingest/connectors/gdrive_access.py), and
the ids `dml sources add gdrive` takes."""

from __future__ import annotations

import pytest

from ingest.connectors.gdrive import GDriveSource, _Cursor
from ingest.connectors.gdrive_access import NOBODY, access_of, permissions_key
from knowledge.errors import DMLError
from knowledge.sources import AccessRule, PeopleByEmail

PEOPLE = PeopleByEmail.of([("ada@example.com", "UADA00001"), ("grace@example.com", "UGRACE001")])
EXPERTS = ("UEXPERT1", "SLEADS01")
PUBLIC = AccessRule()


def rule(permissions, *, people=PEOPLE, experts=EXPERTS):
    return access_of(permissions, public=PUBLIC, experts=experts, people=people)


@pytest.mark.parametrize("shared", [{"type": "anyone", "role": "reader"},
                                    {"type": "domain", "role": "commenter", "domain": "example.com"}])
def test_link_and_domain_sharing_are_everyone_in_the_workspace(shared):
    assert rule([{"type": "user", "emailAddress": "ada@example.com"}, shared]) == (PUBLIC, False)
    limited = AccessRule.of(["C0123"])
    assert access_of([shared], public=limited, experts=EXPERTS, people=None) == (limited, False)


def test_users_are_mapped_by_email_and_the_rest_left_out():
    found = rule([{"type": "user", "emailAddress": "ADA@example.com", "role": "owner"},
                  {"type": "user", "emailAddress": "stranger@elsewhere.org"},
                  {"type": "user", "emailAddress": "grace@example.com", "deleted": True},
                  {"type": "group", "emailAddress": "ml-leads@example.com"}])
    assert found == (AccessRule(users=("UADA00001",)), False)


@pytest.mark.parametrize("permissions", [None, [], [{"type": "group", "emailAddress": "ml@example.com"}],
                                         [{"type": "user", "emailAddress": "stranger@elsewhere.org"}],
                                         [{"type": "user"}], ["not a permission"]])
def test_what_maps_to_no_one_goes_to_the_designated_machine_learners(permissions):
    assert rule(permissions) == (AccessRule(users=("UEXPERT1",), groups=("SLEADS01",)), True)
    assert rule(permissions, experts=())[0] == NOBODY
    assert rule(permissions, people=None)[1] is True


def test_no_people_directory_maps_no_one():
    assert rule([{"type": "user", "emailAddress": "ada@example.com"}], people=None)[1] is True


def test_the_permissions_key_changes_with_who_is_named_only():
    a = [{"type": "user", "emailAddress": "ada@example.com", "id": "1"}, {"type": "anyone", "id": "x"}]
    assert permissions_key(a) == permissions_key(list(reversed(a)))
    assert permissions_key(a) != permissions_key(a[:1]) and permissions_key(None) is None


def test_folder_ids_and_addresses():
    assert GDriveSource.configure("", {"folder": "1AbC_def-GHIjkl"}) == ("gdrive-1abc_def-ghi", {"folder": "1AbC_def-GHIjkl"})
    assert GDriveSource.configure("https://drive.google.com/drive/u/0/folders/1AbCdefGHI?usp=sharing", {})[1] == \
        {"folder": "1AbCdefGHI"}
    assert GDriveSource.configure("", {"shared_drive": "0AbCdEfGhIjK9PVA"})[1] == {"shared_drive": "0AbCdEfGhIjK9PVA"}
    for options in ({}, {"folder": "1AbCdefGHI", "shared_drive": "0AbCdEfGhIjK9PVA"}, {"folder": "x' or '1"}):
        with pytest.raises(DMLError):
            GDriveSource.configure("", options)


@pytest.mark.parametrize("text", [None, "", "not json", "[]", '{"folders": {}}', '{"token": "5", "folders": 3}'])
def test_an_unreadable_cursor_means_a_full_sync(text):
    assert _Cursor.read(text) is None

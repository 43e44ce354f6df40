"""Slack people by e-mail: the lookup every source's permission mapping uses."""

from knowledge.sources import PeopleByEmail


def test_addresses_are_matched_whatever_their_case_and_spaces():
    people = PeopleByEmail.of([("Ann@Example.com", "U0ANN"), (" bo@example.com ", "U0BO")])
    assert people.by_email(["ann@EXAMPLE.com", "BO@example.com"]) == {"ann@example.com": "U0ANN",
                                                                      "bo@example.com": "U0BO"}


def test_unknown_empty_and_odd_addresses_are_left_out():
    people = PeopleByEmail.of([("ann@example.com", "U0ANN"), ("", "U0NONE"), ("cy@example.com", "")])
    assert len(people) == 1
    assert people.by_email(["nobody@example.com", "", None, 42]) == {}  # type: ignore[list-item]

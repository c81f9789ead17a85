"""Contact profiles: resolving identifiers to people over time (pure rules), and profiles built from
real webhooks (names kept as history, numbers that change hands kept as history)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from wa_archive.contacts.identity import Link, Observation, resolve

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


# Pure resolution --------------------------------------------------------------------------------


def test_a_new_person_gets_a_new_contact_with_every_identifier_first_seen():
    r = resolve(Observation(at=at(0), phone="447700900123", wa_id="447700900123", bsuid="GB.1"), {}, {})
    assert r.contact_id is None
    assert [(link.kind, link.value, link.reason) for link in r.links] == [
        ("bsuid", "GB.1", "first_seen"), ("phone", "447700900123", "first_seen"),
        ("wa_id", "447700900123", "first_seen")]


def test_a_known_number_resolves_to_its_holder_and_adds_nothing_new():
    hist = {("phone", "447700900123"): [Link(7, at(0), 1)]}
    r = resolve(Observation(at=at(1), phone="447700900123"), hist, {})
    assert (r.contact_id, r.links) == (7, [])


def test_a_number_that_changes_hands_starts_a_new_contact_and_keeps_the_old_link():
    hist = {("phone", "447700900123"): [Link(7, at(0), 1)], ("bsuid", "GB.old"): [Link(7, at(0), 2)]}
    persons = {7: {("bsuid", "GB.old")}}
    r = resolve(Observation(at=at(5), phone="447700900123", bsuid="GB.new"), hist, persons)
    assert r.contact_id is None  # someone new, not merged into contact 7
    assert [(link.kind, link.reason) for link in r.links] == [("bsuid", "first_seen"), ("phone", "changed_hands")]


def test_a_late_history_message_never_moves_a_number_back():
    # 447700900123 went from contact 7 (GB.old) to contact 8 (GB.new) at hour 5.
    hist = {("phone", "447700900123"): [Link(7, at(0), 1), Link(8, at(5), 3)],
            ("bsuid", "GB.old"): [Link(7, at(0), 2)], ("bsuid", "GB.new"): [Link(8, at(5), 4)]}
    persons = {7: {("bsuid", "GB.old")}, 8: {("bsuid", "GB.new")}}
    late = resolve(Observation(at=at(2), phone="447700900123", bsuid="GB.old"), hist, persons)
    assert (late.contact_id, late.links) == (7, [])
    # With no person identifier, a late message belongs to whoever held the number at its time.
    anonymous = resolve(Observation(at=at(2), phone="447700900123"), hist, persons)
    assert (anonymous.contact_id, anonymous.links) == (7, [])
    # The same person writing after the change is the new holder, and nothing moves.
    now = resolve(Observation(at=at(6), phone="447700900123"), hist, persons)
    assert (now.contact_id, now.links) == (8, [])


def test_the_person_identifier_wins_over_the_number_and_takes_the_number_along():
    # GB.1 belongs to contact 3; the number they now write from was contact 9's.
    hist = {("bsuid", "GB.1"): [Link(3, at(0), 1)], ("phone", "447700900999"): [Link(9, at(1), 2)]}
    r = resolve(Observation(at=at(4), phone="447700900999", bsuid="GB.1"), hist, {3: {("bsuid", "GB.1")}})
    assert r.contact_id == 3
    assert [(link.kind, link.value, link.reason) for link in r.links] == [
        ("phone", "447700900999", "changed_hands")]


def test_a_person_identifier_never_moves_to_another_contact():
    hist = {("bsuid", "GB.1"): [Link(3, at(0), 1)], ("wasender_lid", "123@lid"): [Link(4, at(0), 2)]}
    r = resolve(Observation(at=at(1), bsuid="GB.1", wasender_lid="123@lid"), hist, {})
    assert (r.contact_id, r.links) == (3, [])


def test_a_consent_entry_naming_a_number_first_links_it_as_recorded():
    r = resolve(Observation(at=at(0), phone="447700900123"), {}, {}, recorded=True)
    assert [(link.kind, link.reason) for link in r.links] == [("phone", "recorded")]


def test_a_wasender_group_jid_is_not_an_identifier():
    from wa_archive.contacts.profiles import message_observation

    row = {"id": "w1", "source": "wasender", "ts": at(0), "contact_phone": "447700900123",
           "contact_wa_id": "120363000000000000@g.us", "contact_user_id": "555@lid", "contact_username": None,
           "contact_name": "Priya"}
    obs = message_observation(row)  # type: ignore[arg-type]
    assert obs.identifiers() == [("wasender_lid", "555@lid"), ("phone", "447700900123")]
    direct = message_observation({**row, "contact_wa_id": "447700900123@s.whatsapp.net",
                                  "contact_user_id": "447700900123@s.whatsapp.net"})  # type: ignore[arg-type]
    assert direct.identifiers() == [("phone", "447700900123"), ("wasender_jid", "447700900123@s.whatsapp.net")]


"""Contact profiles: resolving identifiers to people over time (pure rules), and profiles built from
real webhooks (names kept as history, numbers that change hands kept as history)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from wa_archive.contacts import views
from wa_archive.contacts.identity import Link, Observation, resolve
from wa_archive.sources.meta.samples import dumps, envelope, message, wamid

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



# Profiles from real webhooks ---------------------------------------------------------------------


async def _inbound(stack, *, phone: str, name: str, ts: int, user_id: str | None = None) -> str:
    mid = wamid()
    contact = {"profile": {"name": name}, "wa_id": phone, **({"user_id": user_id} if user_id else {})}
    status, _ = await stack.post(dumps(envelope([message("text", {"body": "hello"}, mid=mid, phone=phone, ts=ts)],
                                                phone=phone, contacts=[contact])))
    assert status == 200
    await stack.wait_for_message(mid)
    return mid


async def test_a_profile_name_change_is_kept_as_history_with_its_messages(stack):
    phone = "4477009" + str(uuid.uuid4().int % 10**5).zfill(5)
    first = await _inbound(stack, phone=phone, name="Priya Raman", ts=1780000000)
    second = await _inbound(stack, phone=phone, name="Priya R.", ts=1780003600)
    third = await _inbound(stack, phone=phone, name="Priya R.", ts=1780007200)
    doc = await views.contact_document(stack.pool, "+" + phone)
    assert doc is not None and doc["phone"] == phone
    assert [(n["name"], n["message_ids"], n["message_count"]) for n in doc["names"]] == [
        ("Priya Raman", [first], 1), ("Priya R.", [second, third], 2)]
    renamed = doc["names"][1]
    assert (datetime.fromisoformat(renamed["first_seen"]), datetime.fromisoformat(renamed["last_seen"])) == (
        datetime.fromtimestamp(1780003600, timezone.utc), datetime.fromtimestamp(1780007200, timezone.utc))
    assert [m["id"] for m in doc["messages"]] == [first, second, third]
    assert {(i["kind"], i["value"], i["reason"], i["message_id"], i["current"]) for i in doc["identifiers"]} == {
        ("phone", phone, "first_seen", first, True), ("wa_id", phone, "first_seen", first, True)}
    # One person, one contact: every message's sighting names it.
    assert await stack.pool.fetchval("SELECT count(DISTINCT contact_id) FROM contact_sightings"
                                     " WHERE message_id = ANY($1::text[])", [first, second, third]) == 1
    # since/until restrict the names and messages (until is exclusive).
    window = await views.contact_document(stack.pool, phone, since=datetime.fromtimestamp(1780003600, timezone.utc),
                                          until=datetime.fromtimestamp(1780007200, timezone.utc))
    assert window is not None and [n["name"] for n in window["names"]] == ["Priya R."]
    assert [m["id"] for m in window["messages"]] == [second]


async def test_a_number_that_changes_hands_is_history_not_a_merge(stack):
    phone = "4477008" + str(uuid.uuid4().int % 10**5).zfill(5)
    old = await _inbound(stack, phone=phone, name="Alex Old", ts=1780000000, user_id="GB.old" + phone)
    new = await _inbound(stack, phone=phone, name="Sam New", ts=1780090000, user_id="GB.new" + phone)
    # A late history message from the old holder does not move the number back.
    late = await _inbound(stack, phone=phone, name="Alex Old", ts=1780050000, user_id="GB.old" + phone)
    seen = {r["message_id"]: r["contact_id"] for r in await stack.pool.fetch(
        "SELECT message_id, contact_id FROM contact_sightings WHERE message_id = ANY($1::text[])", [old, new, late])}
    assert seen[old] == seen[late] != seen[new]
    doc = await views.contact_document(stack.pool, phone)
    assert doc is not None and doc["contact_id"] == seen[new]
    assert [(h["contact_id"], h["until"] is None) for h in doc["holders"]] == [(seen[old], False), (seen[new], True)]
    assert doc["holders"][1]["from"] == doc["holders"][0]["until"]
    assert [n["name"] for n in doc["names"]] == ["Sam New"]
    phone_link = next(i for i in doc["identifiers"] if i["kind"] == "phone")
    assert (phone_link["reason"], phone_link["message_id"], phone_link["current"]) == ("changed_hands", new, True)
    assert await views.contact_document(stack.pool, "4400000000000") is None

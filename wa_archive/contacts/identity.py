"""Who a message's other party is: the identifiers an observation carries, and which contact they
resolve to given each identifier's history of owners. Pure: the database part (profiles.py) reads
the histories, calls `resolve` and writes what it says.

Person identifiers (a Meta business-scoped user id, a WhatsApp LID) belong to one person for good.
Number identifiers (a phone number, a wa_id, a WhatsApp JID) and usernames can pass to someone else,
so a contact is found through them only while nothing contradicts it, and a number that moves gets a
new link instead of merging two people.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

# Ordered by how strongly each names a person: the first one with an owner decides.
PERSON_KINDS = ("bsuid", "wasender_lid")
NUMBER_KINDS = ("phone", "wa_id", "wasender_jid", "username")
KINDS = PERSON_KINDS + NUMBER_KINDS

Identifier = tuple[str, str]  # (kind, value)


@dataclass(frozen=True)
class Observation:
    """One sighting of a person: the identifiers a message (or a consent entry) named, at its time."""

    at: datetime
    phone: str | None = None
    wa_id: str | None = None
    bsuid: str | None = None
    username: str | None = None
    wasender_jid: str | None = None
    wasender_lid: str | None = None
    name: str | None = None
    message_id: str | None = None

    def identifiers(self) -> list[Identifier]:
        """(kind, value) of every identifier present, in KINDS order (persons first)."""
        return [(kind, value) for kind in KINDS if (value := getattr(self, kind))]


@dataclass(frozen=True)
class Link:
    """One row of an identifier's history: from `linked_at` it belonged to `contact_id`."""

    contact_id: int
    linked_at: datetime
    id: int


@dataclass(frozen=True)
class NewLink:
    kind: str
    value: str
    reason: str  # 'first_seen', 'changed_hands' or 'recorded'


@dataclass(frozen=True)
class Resolution:
    """The contact the observation belongs to (None: a new one) and the links to add for it."""

    contact_id: int | None
    links: list[NewLink] = field(default_factory=list)


def current_link(history: list[Link]) -> Link | None:
    """The identifier's current owner: its latest link (by linked_at, then id)."""
    return max(history, key=lambda link: (link.linked_at, link.id), default=None)


def holder_at(history: list[Link], at: datetime) -> Link | None:
    """Who held the identifier at `at`: the latest link at or before it; before its first link,
    the first holder (the evidence that linked it may be later than what it is evidence of)."""
    earlier = [link for link in history if link.linked_at <= at]
    if earlier:
        return max(earlier, key=lambda link: (link.linked_at, link.id))
    return min(history, key=lambda link: (link.linked_at, link.id), default=None)


def resolve(obs: Observation, histories: dict[Identifier, list[Link]],
            persons: dict[int, set[Identifier]], *, recorded: bool = False) -> Resolution:
    """Which contact `obs` belongs to and which identifiers move to it.

    `histories` holds each identifier's links (missing or empty: never seen); `persons` the person
    identifiers each contact already has. `recorded`: the observation is a consent entry, not a
    message, so an identifier it is the first to name is linked with reason 'recorded'.
    """
    ids = obs.identifiers()
    own = {kind: value for kind, value in ids if kind in PERSON_KINDS}
    contact_id: int | None = None
    for kind, value in ids:
        if kind in PERSON_KINDS and (link := current_link(histories.get((kind, value), []))):
            contact_id = link.contact_id  # a person identifier never moves: its owner is the person
            break
    else:
        for kind, value in ids:
            if kind not in NUMBER_KINDS or not (held := holder_at(histories.get((kind, value), []), obs.at)):
                continue
            # The number's holder is this person unless it is known by another person identifier
            # of the same kind: then the number changed hands and this is someone new.
            theirs = persons.get(held.contact_id, set())
            if not any((k, v) not in theirs and any(tk == k for tk, _ in theirs) for k, v in own.items()):
                contact_id = held.contact_id
            break
    links: list[NewLink] = []
    for kind, value in ids:
        current = current_link(histories.get((kind, value), []))
        if current is None:
            links.append(NewLink(kind, value, "recorded" if recorded else "first_seen"))
        elif current.contact_id != contact_id and kind in NUMBER_KINDS and obs.at >= current.linked_at:
            # A late history message (older than the current link) never moves a number back.
            links.append(NewLink(kind, value, "changed_hands"))
    return Resolution(contact_id, links)

"""The stop/start keyword matcher: only a whole message that is a keyword counts, in any configured language."""

from __future__ import annotations

import pytest

from wa_archive.contacts.keywords import DEFAULT_KEYWORDS, keyword_matcher, normalise, parse_keywords


@pytest.mark.parametrize("text, state, language", [
    ("STOP", "opted_out", "en"),
    ("  stop  ", "opted_out", "en"),
    ("Stop!", "opted_out", "en"),
    ("\"STOP.\"", "opted_out", "en"),
    ("stop  all", "opted_out", "en"),
    ("ＳＴＯＰ", "opted_out", "en"),  # full-width letters, folded by NFKC
    ("STOP 🛑", "opted_out", "en"),
    ("Unsubscribe", "opted_out", "en"),
    ("start", "opted_in", "en"),
    ("¡Baja!", "opted_out", "es"),
    ("alta", "opted_in", "es"),
    ("parar", "opted_out", "es"),  # also Portuguese: the first language listed names it
    ("sair", "opted_out", "pt"),
    ("Voltar", "opted_in", "pt"),
    ("arrêt", "opted_out", "fr"),
    ("ARRET", "opted_out", "fr"),
    ("Stopp", "opted_out", "de"),
    ("anmelden", "opted_in", "de"),
    ("basta", "opted_out", "it"),
])
def test_a_whole_message_that_is_a_keyword_matches(text, state, language):
    match = keyword_matcher().match(text)
    assert match is not None and (match.state, match.language) == (state, language)


@pytest.mark.parametrize("text", [
    "Please don't stop", "don't stop", "stop sending me offers please", "STOP IT NOW", "when does the shop stop?",
    "stopping", "start-up", "", None, "s t o p", "STOP" * 20,
])
def test_a_keyword_inside_a_sentence_never_matches(text):
    assert keyword_matcher().match(text) is None


def test_the_match_names_the_configured_word():
    assert keyword_matcher().match("arrêt!").keyword == "ARRÊT"


def test_normalise_strips_only_the_edges():
    assert normalise("  ¿¡STOP   ALL!?  ") == "stop all"
    assert normalise("opt-out") == "opt-out"


def test_a_configured_table_replaces_the_defaults():
    matcher = keyword_matcher(parse_keywords('{"nl": {"stop": ["STOPPEN"], "start": ["AANMELDEN"]}}'))
    assert matcher.match("stoppen").language == "nl"
    assert matcher.match("aanmelden").state == "opted_in"
    assert matcher.match("STOP") is None


@pytest.mark.parametrize("raw, reason", [
    ("not json", "not JSON"),
    ("[]", "JSON object"),
    ("{}", "JSON object"),
    ('{"en": ["STOP"]}', '"stop" and/or "start"'),
    ('{"en": {"halt": ["STOP"]}}', '"stop" and/or "start"'),
    ('{"en": {"stop": "STOP"}}', "list of strings"),
    ('{"en": {"stop": [1]}}', "list of strings"),
    ('{"en": {"stop": ["!!"]}}', "no letters"),
    ('{"en": {"stop": ["GO"]}, "xx": {"start": ["go"]}}', "both a stop and a start word"),
])
def test_bad_keyword_tables_are_refused_with_a_reason(raw, reason):
    with pytest.raises(ValueError, match=reason):
        parse_keywords(raw)


def test_the_defaults_are_consistent():
    keyword_matcher(DEFAULT_KEYWORDS)
    assert set(DEFAULT_KEYWORDS) == {"en", "es", "pt", "fr", "de", "it"}

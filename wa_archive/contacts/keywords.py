"""Stop and start keywords: an inbound text that is nothing but such a word is consent evidence.

Only the whole message counts. "STOP" or "¡Baja!" is a request; "please don't stop" is a sentence
that happens to contain the word, and reading it as an opt-out would put words in a person's mouth.
Words are compared after the same normalisation as the text (NFKC, case-folded, surrounding
punctuation stripped, inner spaces collapsed), so a configured "Arrêt" matches "ARRÊT!".
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal

ConsentState = Literal["opted_in", "opted_out"]
SETTING = "WA_ARCHIVE_CONSENT_KEYWORDS"

# The usual carrier and WhatsApp Business words per language. Words shared by two languages
# (PARAR, CANCELAR) are attributed to the first listed.
DEFAULT_KEYWORDS: dict[str, dict[str, list[str]]] = {
    "en": {"stop": ["STOP", "STOP ALL", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPT OUT", "OPTOUT"],
           "start": ["START", "UNSTOP", "SUBSCRIBE", "OPT IN", "OPTIN"]},
    "es": {"stop": ["BAJA", "PARAR", "ALTO", "CANCELAR", "DETENER"],
           "start": ["ALTA", "REANUDAR", "SUSCRIBIR"]},
    "pt": {"stop": ["PARAR", "SAIR", "CANCELAR", "DESCADASTRAR"],
           "start": ["VOLTAR", "RETOMAR", "CADASTRAR"]},
    "fr": {"stop": ["ARRET", "ARRÊT", "DESABONNER", "DÉSABONNER", "DESINSCRIRE", "DÉSINSCRIRE"],
           "start": ["REPRENDRE", "ABONNER", "INSCRIRE"]},
    "de": {"stop": ["STOPP", "ABMELDEN", "ABBESTELLEN"],
           "start": ["ANMELDEN", "STARTEN"]},
    "it": {"stop": ["BASTA", "ANNULLA", "DISISCRIVIMI", "CANCELLAMI"],
           "start": ["ISCRIVIMI", "RIPRENDI"]},
}
_STATES: dict[str, ConsentState] = {"stop": "opted_out", "start": "opted_in"}
# Longest text worth normalising: no keyword is longer, and a long message is never one.
_MAX_TEXT = 64


@dataclass(frozen=True)
class KeywordMatch:
    state: ConsentState
    keyword: str  # the configured word, as configured
    language: str


@dataclass(frozen=True)
class KeywordMatcher:
    """Normalised word -> what it means. Build it with `keyword_matcher`."""

    table: dict[str, KeywordMatch]

    def match(self, text: str | None) -> KeywordMatch | None:
        """The keyword the whole text is, or None (a keyword inside a sentence never matches)."""
        if not text or len(text) > _MAX_TEXT:
            return None
        return self.table.get(normalise(text))


def normalise(text: str) -> str:
    """NFKC, case-folded, inner whitespace collapsed, punctuation and symbols around the words stripped."""
    folded = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    start, end = 0, len(folded)
    while start < end and _is_edge(folded[start]):
        start += 1
    while end > start and _is_edge(folded[end - 1]):
        end -= 1
    return folded[start:end]


def _is_edge(char: str) -> bool:
    # Punctuation (P*), symbols such as emoji (S*), spaces and invisible format characters (Cf).
    return unicodedata.category(char)[0] in "PSZ" or unicodedata.category(char) == "Cf"


def keyword_matcher(config: dict[str, dict[str, list[str]]] | None = None) -> KeywordMatcher:
    """The matcher of a {"language": {"stop": [...], "start": [...]}} table (the defaults when None).

    ValueError when a word is empty once normalised, or means stop in one place and start in another.
    """
    table: dict[str, KeywordMatch] = {}
    for language, lists in (DEFAULT_KEYWORDS if config is None else config).items():
        for kind, words in lists.items():
            for word in words:
                key = normalise(word)
                if not key:
                    raise ValueError(f"{language}.{kind}: {word!r} has no letters once punctuation is stripped")
                seen = table.get(key)
                if seen is not None and seen.state != _STATES[kind]:
                    raise ValueError(f"{word!r} is both a stop and a start word ({seen.language} and {language})")
                table.setdefault(key, KeywordMatch(state=_STATES[kind], keyword=word, language=language))
    return KeywordMatcher(table)


def parse_keywords(raw: str) -> dict[str, dict[str, list[str]]]:
    """The JSON value of WA_ARCHIVE_CONSENT_KEYWORDS, checked; ValueError naming what is wrong."""
    try:
        data: Any = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg}") from None
    if not isinstance(data, dict) or not data:
        raise ValueError('must be a JSON object such as {"en": {"stop": ["STOP"], "start": ["START"]}}')
    config: dict[str, dict[str, list[str]]] = {}
    for language, lists in data.items():
        if not language.strip():
            raise ValueError("a language name is empty")
        if not isinstance(lists, dict) or not lists or set(lists) - set(_STATES):
            raise ValueError(f'{language}: must be an object with "stop" and/or "start" lists')
        for kind, words in lists.items():
            if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
                raise ValueError(f"{language}.{kind}: must be a list of strings")
        config[language] = {kind: list(words) for kind, words in lists.items()}
    keyword_matcher(config)  # the conflicts and empty words, named now rather than at the first message
    return config

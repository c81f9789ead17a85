"""What the consent feeds read deliveries with: the keyword table and Meta's opt-out error codes.

Apart from the feeds themselves so that configuration can build it without importing the database code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wa_archive.contacts.keywords import KeywordMatcher, keyword_matcher

# Meta's 131050: "this recipient has chosen to stop receiving marketing messages" from the business.
DEFAULT_OPTOUT_ERROR_CODES = frozenset({"131050"})


@dataclass(frozen=True)
class ConsentFeedOptions:
    """WA_ARCHIVE_CONSENT_KEYWORDS and WA_ARCHIVE_CONSENT_OPTOUT_ERROR_CODES, read."""

    keywords: KeywordMatcher = field(default_factory=keyword_matcher)
    optout_error_codes: frozenset[str] = DEFAULT_OPTOUT_ERROR_CODES

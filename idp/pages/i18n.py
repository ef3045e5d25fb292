"""Languages of the waiting pages: Babel message catalogs, chosen per request.

Catalogs live in ``idp/translations/<lang>/LC_MESSAGES/messages.po`` with their compiled ``.mo``
beside them. A missing or older ``.mo`` is compiled from the ``.po`` in memory at start, so a fresh
checkout works before anyone runs ``pybabel compile``.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from pathlib import Path

from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

log = logging.getLogger("idp.pages")

TRANSLATIONS_DIR = Path(__file__).resolve().parent.parent / "translations"
DOMAIN = "messages"
DEFAULT_LANGUAGE = "en"
# Languages offered by the switch, in the order shown, with their own names.
LANGUAGES: dict[str, str] = {"en": "English", "ja": "日本語"}


def _load(language: str, folder: Path) -> NullTranslations:
    base = folder / language / "LC_MESSAGES"
    po, mo = base / f"{DOMAIN}.po", base / f"{DOMAIN}.mo"
    try:
        if mo.exists() and (not po.exists() or mo.stat().st_mtime >= po.stat().st_mtime):
            with open(mo, "rb") as handle:
                return Translations(handle, domain=DOMAIN)
        if po.exists():
            with open(po, "rb") as handle:
                catalog = read_po(handle, locale=language, domain=DOMAIN)
            buffer = io.BytesIO()
            write_mo(buffer, catalog)
            buffer.seek(0)
            return Translations(buffer, domain=DOMAIN)
    except (OSError, ValueError) as exc:
        log.warning("cannot load the %s message catalog: %s", language, exc)
    return NullTranslations()


class Catalogs:
    """One ``Translations`` per supported language, loaded once per process."""

    def __init__(self, languages: Iterable[str] = LANGUAGES, folder: Path = TRANSLATIONS_DIR) -> None:
        self.languages = tuple(languages)
        self._translations = {lang: _load(lang, folder) for lang in self.languages}

    def get(self, language: str) -> NullTranslations:
        return self._translations.get(language) or self._translations[DEFAULT_LANGUAGE]

    def supports(self, language: object) -> bool:
        return isinstance(language, str) and language in self._translations

    def choose(self, asked: str | None, cookie: str | None, best_match: str | None) -> str:
        """An explicit choice (?lang=), then the remembered one (cookie), then Accept-Language."""
        for candidate in (asked, cookie, best_match):
            if self.supports(candidate):
                return candidate  # type: ignore[return-value]
        return DEFAULT_LANGUAGE


def locale_of(language: str) -> Locale:
    return Locale.parse(language)

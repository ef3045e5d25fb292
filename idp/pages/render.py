"""Render the waiting pages: Jinja templates from ``waiting_pages/`` (or an operator's folder), in a language.

``IDP_TEMPLATE_DIR`` names a folder searched first: a file there with the same name as a default
template (``wait.html``, ``base.html``, ``error.html``, ...) replaces it. Templates are autoescaped and
translated with the Babel catalogs of :mod:`idp.pages.i18n`.
"""

from __future__ import annotations

import hashlib
import math
import os
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from babel.dates import format_time
from babel.numbers import format_decimal
from babel.support import NullTranslations
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape

from idp.pages.estimate import Estimate
from idp.pages.i18n import LANGUAGES, Catalogs, locale_of


def waiting_pages_dir() -> Path:
    """The ``waiting_pages`` folder (templates and static assets), beside the ``idp`` package."""
    beside = Path(__file__).resolve().parents[2] / "waiting_pages"
    if beside.is_dir():
        return beside
    import importlib.util

    spec = importlib.util.find_spec("waiting_pages")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return beside


_translations: ContextVar[NullTranslations] = ContextVar("idp_page_translations")


def _gettext(message: str) -> str:
    return _translations.get(NullTranslations()).gettext(message)


def _ngettext(singular: str, plural: str, n: int) -> str:
    return _translations.get(NullTranslations()).ngettext(singular, plural, n)


class Translator:
    """gettext for Python code, with ``%(name)s`` formatting like the templates' ``_()``."""

    def __init__(self, translations: NullTranslations, language: str) -> None:
        self.translations = translations
        self.language = language

    def __call__(self, message: str, **values: Any) -> str:
        text = self.translations.gettext(message)
        return text % values if values else text

    def number(self, value: int | None) -> str:
        return "" if value is None else format_decimal(value, locale=locale_of(self.language))

    def estimate(self, estimate: Estimate | None) -> str:
        """The estimated wait in words."""
        return estimate_phrases(self, estimate)


def estimate_kind(estimate: Estimate | None) -> tuple[str, int, int]:
    """Which phrase fits an estimate, and its numbers: (kind, low, high)."""
    if estimate is None:
        return "none", 0, 0
    if estimate.high_seconds < 60:
        return "under_minute", 0, 1
    if estimate.high_seconds <= 90 * 60:
        low, high = estimate.low_seconds // 60, math.ceil(estimate.high_seconds / 60)
        return ("minutes_up_to" if low == 0 else "minutes_range"), low, high
    low, high = estimate.low_seconds // 3600, math.ceil(estimate.high_seconds / 3600)
    return ("hours_up_to" if low == 0 else "hours_range"), low, high


def estimate_templates(t: Translator) -> dict[str, str]:
    """Each estimate phrase with ``{low}``/``{high}`` placeholders, for the page script."""
    return {
        "none": t("Not known yet: nobody has been let in recently."),
        "under_minute": t("Less than a minute"),
        "minutes_up_to": t("Up to %(high)s minutes", high="{high}"),
        "minutes_range": t("%(low)s to %(high)s minutes", low="{low}", high="{high}"),
        "hours_up_to": t("Up to %(high)s hours", high="{high}"),
        "hours_range": t("%(low)s to %(high)s hours", low="{low}", high="{high}"),
    }


def estimate_phrases(t: Translator, estimate: Estimate | None) -> str:
    kind, low, high = estimate_kind(estimate)
    return estimate_templates(t)[kind].replace("{low}", t.number(low)).replace("{high}", t.number(high))


class PageRenderer:
    """A Jinja environment for the waiting pages, independent of Flask's own."""

    def __init__(self, template_dir: str | None, catalogs: Catalogs) -> None:
        root = waiting_pages_dir()
        loaders = []
        if template_dir:
            loaders.append(FileSystemLoader(os.path.abspath(template_dir)))
        loaders.append(FileSystemLoader(str(root / "templates")))
        self.static_dir = root / "static"
        self.catalogs = catalogs
        self.env = Environment(
            loader=ChoiceLoader(loaders),
            autoescape=select_autoescape(["html", "htm", "xml"], default_for_string=True),
            extensions=["jinja2.ext.i18n"],
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.install_gettext_callables(_gettext, _ngettext, newstyle=True)  # type: ignore[attr-defined]
        self._versions: dict[str, str] = {}

    def translator(self, language: str) -> Translator:
        return Translator(self.catalogs.get(language), language)

    def static_version(self, filename: str) -> str:
        """A short content hash so a changed asset gets a new URL (long-cached otherwise)."""
        version = self._versions.get(filename)
        if version is None:
            try:
                version = hashlib.sha256((self.static_dir / filename).read_bytes()).hexdigest()[:12]
            except OSError:
                version = "0"
            self._versions[filename] = version
        return version

    def render(self, name: str, language: str, **context: Any) -> str:
        t = self.translator(language)
        token = _translations.set(t.translations)
        try:
            template = self.env.get_template(name)
            return template.render(
                lang=language,
                languages=LANGUAGES,
                t=t,
                number=t.number,
                format_time=lambda ts: format_time(
                    datetime.fromtimestamp(ts, UTC),
                    format="medium",
                    tzinfo=UTC,
                    locale=locale_of(language),
                ),
                **context,
            )
        finally:
            _translations.reset(token)

"""Branding colours stay readable; every page message has a Japanese translation that the service loads."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from idp.pages.estimate import Estimate
from idp.pages.i18n import TRANSLATIONS_DIR, Catalogs
from idp.pages.render import Translator, estimate_kind, estimate_phrases
from idp.pages.theme import contrast, darken_until, theme_css, theme_variables, valid_colour

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("primary", ["#ffff00", "#ffffff", "#7c3aed", "#000000", "#1d4ed8", "#22c55e"])
def test_the_primary_colour_always_carries_white_text(primary: str) -> None:
    colours = theme_variables({"primary_color": primary})
    assert contrast(colours["--wr-primary"], colours["--wr-on-primary"]) >= 4.5
    if contrast(primary, "#ffffff") >= 4.5:
        assert colours["--wr-primary"] == primary  # readable choices are kept as they are


@pytest.mark.parametrize("background", ["#000000", "#ffffff", "#10243f", "#f5f3ff", "#808080"])
def test_text_on_the_page_background_is_readable(background: str) -> None:
    colours = theme_variables({"background_color": background})
    assert contrast(colours["--wr-background"], colours["--wr-on-background"]) >= 4.5


@pytest.mark.parametrize(
    "hostile", ["red", "#fff", "#12345g", "#123456;}body{display:none", "expression(alert(1))", 123, None]
)
def test_anything_but_a_hex_colour_falls_back_to_the_default(hostile: object) -> None:
    css = theme_css({"primary_color": hostile, "background_color": hostile})
    assert "expression" not in css and "display" not in css and "red" not in css
    assert valid_colour(hostile, "#010203") == "#010203"


def test_darkening_reaches_the_ratio() -> None:
    assert contrast(darken_until("#ffee00", "#ffffff"), "#ffffff") >= 4.5


def _catalog(language: str) -> list[tuple[str, str]]:
    with open(TRANSLATIONS_DIR / language / "LC_MESSAGES" / "messages.po", "rb") as handle:
        return [(m.id, m.string) for m in read_po(handle) if m.id]


def test_every_message_of_the_template_catalog_is_translated_to_japanese() -> None:
    with open(TRANSLATIONS_DIR / "messages.pot", "rb") as handle:
        wanted = {m.id for m in read_po(handle) if m.id}
    japanese = dict(_catalog("ja"))
    assert wanted and wanted <= set(japanese)
    assert all(japanese[msgid] for msgid in wanted)
    # Placeholders survive translation.
    for msgid in wanted:
        for name in ("%(low)s", "%(high)s", "%(count)s", "%(minutes)s", "%(seconds)s", "%(code)s"):
            assert (name in msgid) == (name in japanese[msgid]), msgid


def test_the_compiled_catalogs_match_the_sources(tmp_path: Path) -> None:
    loaded = Catalogs()
    for msgid, msgstr in _catalog("ja"):
        if isinstance(msgid, tuple):
            assert loaded.get("ja").ngettext(msgid[0], msgid[1], 5) == msgstr[0]
        else:
            assert loaded.get("ja").gettext(msgid) == msgstr
    # A checkout without compiled files still works: the .po is compiled in memory.
    folder = tmp_path / "ja" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    (folder / "messages.po").write_bytes((TRANSLATIONS_DIR / "ja" / "LC_MESSAGES" / "messages.po").read_bytes())
    fresh = Catalogs(["en", "ja"], tmp_path)
    assert fresh.get("ja").gettext("You are in the queue") == "列に並んでいます"


def test_language_choice_order() -> None:
    c = Catalogs()
    assert c.choose("ja", "en", "en") == "ja"  # the switch wins
    assert c.choose(None, "ja", "en") == "ja"  # then the remembered choice
    assert c.choose("xx", None, "ja") == "ja"  # then Accept-Language
    assert c.choose(None, None, None) == "en"


@pytest.mark.parametrize(
    ("low", "high", "kind", "english", "japanese"),
    [
        (0, 30, "under_minute", "Less than a minute", "1分未満"),
        (20, 200, "minutes_up_to", "Up to 4 minutes", "最大4分"),
        (1380, 1860, "minutes_range", "23 to 31 minutes", "23〜31分"),
        (4 * 3600, 7 * 3600 + 1, "hours_range", "4 to 8 hours", "4〜8時間"),
    ],
)
def test_estimate_phrases(low: int, high: int, kind: str, english: str, japanese: str) -> None:
    estimate = Estimate(low, high, 1.0)
    assert estimate_kind(estimate)[0] == kind
    c = Catalogs()
    assert estimate_phrases(Translator(c.get("en"), "en"), estimate) == english
    assert estimate_phrases(Translator(c.get("ja"), "ja"), estimate) == japanese
    assert "Not known yet" in estimate_phrases(Translator(c.get("en"), "en"), None)

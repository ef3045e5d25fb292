"""Per-event colours, made safe: validated hex colours, adjusted until text on them is readable.

Branding is set by operators through the admin API (``primary_color``, ``background_color``). The page
keeps WCAG 2.1 AA whatever they choose: the primary colour is darkened until white text on it (and it
on the white card) reaches 4.5:1, and text on the page background is black or white, whichever reads
better.
"""

from __future__ import annotations

import re

HEX_RE = re.compile(r"\A#[0-9a-fA-F]{6}\Z")
DEFAULT_PRIMARY = "#1d4ed8"
DEFAULT_BACKGROUND = "#eef2f7"
WHITE = "#ffffff"
INK = "#111827"
BLACK = "#000000"


def valid_colour(value: object, default: str) -> str:
    return value.lower() if isinstance(value, str) and HEX_RE.match(value) else default


def _channels(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def luminance(colour: str) -> float:
    def linear(c: int) -> float:
        s = c / 255.0
        return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in _channels(colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def darken_until(colour: str, against: str, ratio: float = 4.5) -> str:
    """Mix ``colour`` towards black until it reaches ``ratio`` against ``against``."""
    r, g, b = _channels(colour)
    for step in range(0, 101, 5):
        f = 1.0 - step / 100.0
        candidate = f"#{int(r * f):02x}{int(g * f):02x}{int(b * f):02x}"
        if contrast(candidate, against) >= ratio:
            return candidate
    return "#000000"


def theme_variables(branding: dict[str, object]) -> dict[str, str]:
    """CSS custom properties for an event's branding; every value is a validated colour."""
    primary = darken_until(valid_colour(branding.get("primary_color"), DEFAULT_PRIMARY), WHITE)
    background = valid_colour(branding.get("background_color"), DEFAULT_BACKGROUND)
    on_background = INK if contrast(INK, background) >= contrast(WHITE, background) else WHITE
    if contrast(on_background, background) < 4.5:
        # Mid tones: only pure black or white reads well enough (one of them always reaches 4.5:1).
        on_background = BLACK if contrast(BLACK, background) >= contrast(WHITE, background) else WHITE
    return {
        "--wr-primary": primary,
        "--wr-on-primary": WHITE,
        "--wr-background": background,
        "--wr-on-background": on_background,
    }


def theme_css(branding: dict[str, object]) -> str:
    body = "".join(f"{name}:{value};" for name, value in theme_variables(branding).items())
    return ":root{" + body + "}\n"

"""File-level quality filters: the StarCoder rules that DeepSeek-Coder applied.

Each filter is a plain function ``(SourceFile) -> bool`` that returns True when the
file must be dropped; its ``__name__`` is the key its removals are counted under. A
file is counted under the first filter that drops it, in ``FILTERS`` order (cheap,
language-specific rules first), so the counts add up to the files removed.

Thresholds are the reference's: average line length > 100, max line length > 1000,
alphabetic characters < 25%, XML (not XSLT) announcing ``<?xml version=`` in its first
100 characters, HTML with < 20% or < 100 characters of visible text, JSON/YAML outside
50..5000 characters.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from coder_align.corpus.walk import SourceFile

MAX_AVG_LINE_LENGTH = 100
MAX_LINE_LENGTH = 1000
MIN_ALPHA_FRACTION = 0.25
MIN_HTML_VISIBLE_FRACTION = 0.20
MIN_HTML_VISIBLE_CHARS = 100
JSON_YAML_CHARS = (50, 5000)
_NOT_ALPHA = re.compile(r"[\W\d_]+")  # what survives removal: letters (\w minus digits and "_"), in C speed


def empty(f: SourceFile) -> bool:
    return not f.text.strip()


def xml(f: SourceFile) -> bool:
    # XSLT has its own language tag, so it never reaches this rule.
    return f.language == "xml" and "<?xml version=" in f.text[:100]


class _VisibleText(HTMLParser):
    _HIDDEN = {"script", "style", "head", "title", "noscript", "template"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hidden_depth = 0
        self.chars = 0

    def handle_starttag(self, tag, attrs):
        if tag in self._HIDDEN:
            self.hidden_depth += 1

    def handle_endtag(self, tag):
        if tag in self._HIDDEN and self.hidden_depth:
            self.hidden_depth -= 1

    def handle_data(self, data):
        if not self.hidden_depth:
            self.chars += len(data.strip())


def html(f: SourceFile) -> bool:
    if f.language != "html":
        return False
    parser = _VisibleText()
    parser.feed(f.text)
    parser.close()
    visible = parser.chars
    return visible < MIN_HTML_VISIBLE_CHARS or visible < MIN_HTML_VISIBLE_FRACTION * len(f.text)


def json_yaml_size(f: SourceFile) -> bool:
    lo, hi = JSON_YAML_CHARS
    return f.language in ("json", "yaml") and not lo <= len(f.text) <= hi


def max_line_length(f: SourceFile) -> bool:
    return max(map(len, f.text.splitlines())) > MAX_LINE_LENGTH


def avg_line_length(f: SourceFile) -> bool:
    lines = f.text.splitlines()
    return sum(map(len, lines)) / len(lines) > MAX_AVG_LINE_LENGTH


def alpha_fraction(f: SourceFile) -> bool:
    letters = len(_NOT_ALPHA.sub("", f.text))
    return letters < MIN_ALPHA_FRACTION * len(f.text)


# Order matters only for which counter a file lands in; `empty` first guards the
# divisions and max() of the line rules.
FILTERS = (empty, xml, html, json_yaml_size, max_line_length, avg_line_length, alpha_fraction)


def rejecting_filter(f: SourceFile) -> str | None:
    """The name of the first filter that drops ``f``, or None to keep it."""
    for rule in FILTERS:
        if rule(f):
            return rule.__name__
    return None

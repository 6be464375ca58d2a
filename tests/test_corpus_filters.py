"""StarCoder quality filters: each rule drops what it should and keeps the rest."""

import pytest

from coder_align.corpus.filters import rejecting_filter
from coder_align.corpus.walk import SourceFile

GOOD_PY = "def add(a, b):\n    return a + b\n"
VISIBLE = "This paragraph is visible text for readers of the page.\n" * 4


@pytest.mark.parametrize("path, text, reason", [
    ("ok.py", GOOD_PY, None),
    ("empty.py", "  \n\n", "empty"),
    ("long.py", "x = '" + "a" * 1001 + "'\n", "max_line_length"),
    ("edge.py", "x = '" + "a" * 994 + "'\n" + "y = 1\n" * 20, None),  # 1000 chars exactly is allowed
    ("avg.py", ("y = '" + "b" * 120 + "'\n") * 5, "avg_line_length"),
    ("data.py", "x = [" + ", ".join(["1.0"] * 10) + "]\n", "alpha_fraction"),
    ("pom.xml", '<?xml version="1.0"?>\n<project><name>demo project</name></project>\n', "xml"),
    ("plain.xml", "<project><name>demo project</name></project>\n", None),
    ("style.xsl", '<?xml version="1.0"?>\n<xsl:stylesheet version="1.0"></xsl:stylesheet>\n', None),
    ("page.html", f"<html>\n<body>\n<p>{VISIBLE}</p>\n</body>\n</html>\n", None),
    ("script.html", "<html><script>" + "var x = function() { return 1; };\n" * 20 + "</script><p>Hi there</p></html>", "html"),
    ("short.html", "<html><body><p>Hello, visible world</p></body></html>", "html"),
    ("tiny.json", '{"a": 1}', "json_yaml_size"),
    ("conf.json", '{"name": "demo", "version": "1.0.0", "description": "demo package"}', None),
    ("huge.yaml", "key_with_words: some value here\n" * 200, "json_yaml_size"),
    ("conf.yaml", "name: demo\nversion: 1.0.0\ndescription: a demo package\n", None),
])
def test_filter(path, text, reason):
    from coder_align.corpus.languages import language_of
    assert rejecting_filter(SourceFile(path, language_of(path), text)) == reason

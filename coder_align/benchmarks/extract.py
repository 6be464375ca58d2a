"""The code in a model's answer: fenced blocks, picked by language tag.

One fence pattern for the project: rewards score what `extract_code` returns and
evaluation runs it, so both read an answer the same way.

    >>> extract_code("Here:\\n```python\\nprint(1)\\n```")
    'print(1)\\n'
    >>> code_blocks("```py\\na\\n```\\ntext\\n```\\nb\\n```")
    [('py', 'a\\n'), ('', 'b\\n')]
"""

from __future__ import annotations

import re

from coder_align.sandbox import languages

# A fence opens at the start of a line (after indentation), may carry a tag, and closes
# with ``` at the start of a later line; "text ```python" mid-line is not a fence.
FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)^[ \t]*```", re.M | re.S)
FENCE_LINE = re.compile(r"^[ \t]*```", re.M)
_UNTERMINATED = re.compile(r"^[ \t]*```[ \t]*[\w+#.-]*[^\n]*\n(.*)\Z", re.M | re.S)
_TAGS = {"python": {"python", "py", "python3"}, "cpp": {"cpp", "c++", "cc", "cxx"}, "c": {"c"},
         "java": {"java"}, "javascript": {"javascript", "js", "node"}, "go": {"go", "golang"},
         "rust": {"rust", "rs"}, "bash": {"bash", "sh", "shell"}, "typescript": {"typescript", "ts"},
         "php": {"php"}, "csharp": {"csharp", "cs", "c#"}}


def code_blocks(text: str) -> list[tuple[str, str]]:
    """Every closed fenced block as (tag, code), in order."""
    return FENCE.findall(text)


def extract_code(text: str, language: str | None = None) -> str:
    """The code in a completion: the last fenced block tagged `language` (or untagged), else
    the last fenced block of any tag, else the raw text (a model that answered bare code).

    >>> extract_code("```js\\nx()\\n```\\n```python\\ny()\\n```", "python")
    'y()\\n'
    >>> extract_code("def f(): pass")
    'def f(): pass'
    """
    blocks = code_blocks(text)
    if not blocks:
        unterminated = _UNTERMINATED.search(text)  # cut at max tokens inside the block
        return unterminated.group(1) if unterminated else text
    if language:
        wanted = _TAGS.get(languages.normalise(language), {language.lower()})
        tagged = [code for tag, code in blocks if tag.lower() in wanted]
        if tagged:
            return tagged[-1]
        untagged = [code for tag, code in blocks if not tag]
        if untagged:
            return untagged[-1]
    return blocks[-1][1]


def fence_language(text: str) -> str | None:
    """The sandbox language named by the info string of the block `extract_code` takes without
    a language (the last fenced block), or None (no fence, no tag, or a tag we do not run).

    >>> fence_language("```c++\\nint main() {}\\n```")
    'cpp'
    >>> fence_language("no fence") is None
    True
    """
    blocks = code_blocks(text)
    if not blocks:
        return None
    tag = blocks[-1][0].lower()
    return next((lang for lang, tags in _TAGS.items() if tag in tags), None)

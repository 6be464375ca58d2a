"""Java imports and C# usings -> files of the same repository (tree-sitter).

Java and C# code uses types of its own package/namespace without importing them, and
a C# ``using`` names a namespace, not a file. So both resolve through symbols: each
file declares types in a package/namespace; a file depends on the files declaring the
types it mentions, looked up in the packages it can see (its own, its parents' in C#,
wildcard imports / usings), plus every single-type import (``import a.b.C;``,
``using static A.B.C;``) whether used or not. Identifiers are collected from the
syntax tree, so names in comments and strings do not create edges.
"""

from __future__ import annotations

from collections import defaultdict

from coder_align.corpus.deps._ts import captures, parse, text_of

_JAVA_QUERY = """
(package_declaration [(scoped_identifier) (identifier)] @package)
(import_declaration) @import
(program [(class_declaration name: (identifier) @type)
          (interface_declaration name: (identifier) @type)
          (enum_declaration name: (identifier) @type)
          (record_declaration name: (identifier) @type)
          (annotation_type_declaration name: (identifier) @type)])
[(type_identifier) (identifier)] @ref
"""

_CS_QUERY = """
(namespace_declaration name: (_) @namespace)
(file_scoped_namespace_declaration name: (_) @namespace)
(using_directive) @using
[(class_declaration name: (identifier) @type)
 (struct_declaration name: (identifier) @type)
 (interface_declaration name: (identifier) @type)
 (enum_declaration name: (identifier) @type)
 (record_declaration name: (identifier) @type)
 (delegate_declaration name: (identifier) @type)]
(identifier) @ref
"""


def _java_import(node) -> tuple[str, bool]:
    """('a.b.C', is_wildcard) from an import_declaration node."""
    name = next((text_of(c) for c in node.named_children if c.type in ("scoped_identifier", "identifier")), "")
    return name, any(c.type == "asterisk" for c in node.children)


def _cs_using(node) -> tuple[str, bool]:
    """(name, is_type) from a using_directive: `using static A.B;` and aliases name types or namespaces."""
    names = [c for c in node.named_children if c.type in ("qualified_name", "identifier")]
    is_static = any(c.type == "static" for c in node.children)
    return (text_of(names[-1]) if names else ""), is_static or len(names) > 1


def _resolve(files, index, info) -> dict[str, set[str]]:
    deps: dict[str, set[str]] = {}
    for path in files:
        visible, explicit, refs = info[path]
        found: set[str] = set()
        for name in explicit:  # a.b.C, a.b.C.Inner, a.b.C.staticMember: try shorter prefixes
            parts = name.split(".")
            for cut in range(len(parts) - 1, 0, -1):
                hits = index.get((".".join(parts[:cut]), parts[cut]))
                if hits:
                    found.update(hits)
                    break
        for ns in visible:
            for ref in refs:
                found.update(index.get((ns, ref), ()))
        found.discard(path)
        deps[path] = found
    return deps


def java_dependencies(files: dict[str, str]) -> dict[str, set[str]]:
    index: dict[tuple[str, str], set[str]] = defaultdict(set)
    info = {}
    for path, text in files.items():
        caps = captures("java", parse("java", text), _JAVA_QUERY)
        package = text_of(caps["package"][0]) if caps.get("package") else ""
        for node in caps.get("type", ()):
            index[(package, text_of(node))].add(path)
        visible, explicit = {package}, set()
        for node in caps.get("import", ()):
            name, wildcard = _java_import(node)
            (visible if wildcard else explicit).add(name)
        # a wildcard may also name a type (`import static a.B.*`): resolve it as explicit too
        explicit |= {v for v in visible if v != package}
        info[path] = (visible, explicit, {text_of(n) for n in caps.get("ref", ())})
    return _resolve(files, index, info)


def csharp_dependencies(files: dict[str, str]) -> dict[str, set[str]]:
    index: dict[tuple[str, str], set[str]] = defaultdict(set)
    info = {}
    for path, text in files.items():
        caps = captures("csharp", parse("csharp", text), _CS_QUERY)
        namespaces = {text_of(n) for n in caps.get("namespace", ())} or {""}
        for node in caps.get("type", ()):
            for ns in namespaces:
                index[(ns, text_of(node))].add(path)
        visible, explicit = {""}, set()
        for ns in namespaces:  # code in A.B sees the types of A.B and A
            parts = ns.split(".")
            visible |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        for node in caps.get("using", ()):
            name, is_type = _cs_using(node)
            (explicit if is_type else visible).add(name)
        info[path] = (visible, explicit, {text_of(n) for n in caps.get("ref", ())})
    return _resolve(files, index, info)

"""What crosses between the sandbox and the host: framing and the literal codec.

Used on both sides: inside the sandbox (the worker, the candidate and test processes, run
with `python -I -S`, standard library only, this file imported by path from the directory
`pool.IN_SANDBOX` is copied to) and on the host as `coder_align.sandbox.codec`, to decode
what the sandbox sends back. Values cross as tagged JSON of plain literals, so an object
whose `__eq__` always returns True cannot cross at all, and nothing the candidate produces
is unpickled or evaluated. Not here: what the processes do with the values (`harness.py`).
"""

from __future__ import annotations

import base64
import json
import math
import os
import struct

MAX_FRAME = 64 << 20
MAX_ITEMS = 1_000_000  # per encoded value: stops a candidate from returning a huge structure cheaply
MAX_DEPTH = 200
# Members of one set (or keys of one dict) with the same hash: building it costs the
# square of their number, and int/float/tuple hashes can be chosen (n % (2**61 - 1));
# honest values rarely share a hash (-1 and -2 do)
MAX_SAME_HASH = 64


class Unserialisable(TypeError):
    """A value that is not a plain literal (numbers, strings, bytes, containers of them)."""


# ---- framing: 4-byte big-endian length + UTF-8 JSON ---------------------------------------


def _no_default(value):
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# Made once: json.dumps builds an encoder per call, which in a freshly forked process means
# writing to pages that are still shared with the worker (each one a page copy). No cycle
# check (markers=None): what is written here is built from `encode`, which makes trees.
_C_ENCODER = json.encoder.c_make_encoder and json.encoder.c_make_encoder(
    None, _no_default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, False)


# Likewise the C scanner, called directly: `json.loads` on bytes runs encoding detection,
# a regex and three Python frames first, each touching objects of its own.
_C_SCAN = json.scanner.c_make_scanner and json.scanner.c_make_scanner(json.JSONDecoder())


def decode_json(data: bytes):
    """`json.loads` for a frame's body (UTF-8 JSON, one value, no surrounding space)."""
    if _C_SCAN is None:
        return json.loads(data)
    text = data.decode("utf-8")
    try:
        value, end = _C_SCAN(text, 0)
    except StopIteration as e:
        raise json.JSONDecodeError("Expecting value", text, e.value) from None
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return value


def encode_json(obj) -> str:
    if _C_ENCODER is None:
        return json.dumps(obj, allow_nan=False, separators=(",", ":"))
    return "".join(_C_ENCODER(obj, 0))


def encode_frame(obj) -> bytes:
    """One frame: 4-byte big-endian length, then `obj` as compact ASCII JSON."""
    data = encode_json(obj).encode()
    return struct.pack(">I", len(data)) + data


def write_frame(fd: int, obj) -> None:
    view = memoryview(encode_frame(obj))
    while view:
        view = view[os.write(fd, view):]


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, limit: int = MAX_FRAME):
    """The next frame's object, or None at end of stream. Raises ValueError on garbage."""
    head = _read_exact(fd, 4)
    if head is None:
        return None
    (n,) = struct.unpack(">I", head)
    if n > limit:
        raise ValueError(f"frame of {n} bytes exceeds the {limit}-byte limit")
    data = _read_exact(fd, n)
    if data is None:
        return None
    return json.loads(data)


def read_frame_bytes(data: bytes):
    """Parse one complete frame held in memory (the worker forwards the test verdict so)."""
    (n,) = struct.unpack(">I", data[:4])
    if len(data) != 4 + n:
        raise ValueError("truncated or trailing data in frame")
    return json.loads(data[4:])


# ---- literal codec -----------------------------------------------------------------------
# JSON objects are always tags, so a dict never masquerades as a tag: {"$d": [[k, v], ...]}.
# Subclasses of builtin containers (Counter, namedtuple, OrderedDict) cross as their base
# type, read through the base type's own methods so overridden ones never run on the host.

_ITER_MODULES = ("builtins", "itertools", "collections")


class Opaque:
    """Stands in for a value that is not a literal (a regex match, an instance): it keeps
    only the truthiness the candidate reported, and it equals nothing but itself.

    That truthiness is the candidate's word (`__bool__` ran in its process, and could be
    rigged), so in strict mode (the default: `check(strict=True)`) a truth test on it raises,
    and a bare `assert is_prime(7)` passes only for a builtin value such as True, or for a
    type whose truth value is fixed by the type (`FIXED_TRUTH`: a regex match is always
    true). The type name is the candidate's word too, but claiming it buys no more than
    `return True` would. With strict off, `assert f(x)` and `assert not f(x)` use the
    reported truthiness."""

    __slots__ = ("type_name", "truthy")
    strict = False  # set once per test process, from the job's tests payload
    FIXED_TRUTH = {"Match": True}  # re.Match: MBPP tests `assert text_match(s)`

    def __init__(self, type_name: str, truthy: bool):
        self.type_name, self.truthy = str(type_name)[:100], bool(truthy)

    def __bool__(self):
        if not Opaque.strict:
            return self.truthy
        if self.type_name in Opaque.FIXED_TRUTH:
            return Opaque.FIXED_TRUTH[self.type_name]
        raise TypeError(f"strict mode: a {self.type_name} object from the candidate reached a "
                        "truth test; only builtin values (bool, int, str, ...) can")

    def __repr__(self):
        return f"<{self.type_name} object>"


def encode(value, _depth: int = 0, _budget: list | None = None, opaque: bool = False):
    """Plain literal -> tagged JSON. With `opaque` (the candidate's replies), anything else
    becomes an `Opaque` carrying its truthiness instead of raising `Unserialisable`."""
    budget = [MAX_ITEMS] if _budget is None else _budget
    budget[0] -= 1
    if budget[0] < 0:
        raise Unserialisable(f"value has more than {MAX_ITEMS} items")
    if _depth > MAX_DEPTH:
        raise Unserialisable(f"value nested deeper than {MAX_DEPTH}")

    def sub(v):
        return encode(v, _depth + 1, budget, opaque)

    if value is None or value is True or value is False:
        return value
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        f = float.__float__(value)
        return f if math.isfinite(f) else {"$f": repr(f)}
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, complex):
        c = complex.__complex__(value)
        return {"$c": [sub(c.real), sub(c.imag)]}
    if isinstance(value, (bytes, bytearray)):
        tag = "$b" if isinstance(value, bytes) else "$ba"
        return {tag: base64.b64encode(bytes(value)).decode()}
    if isinstance(value, list):
        return [sub(v) for v in list.__iter__(value)]
    if isinstance(value, tuple):
        return {"$t": [sub(v) for v in tuple.__iter__(value)]}
    if isinstance(value, frozenset):
        return {"$fs": [sub(v) for v in frozenset.__iter__(value)]}
    if isinstance(value, set):
        return {"$s": [sub(v) for v in set.__iter__(value)]}
    if isinstance(value, dict):
        return {"$d": [[sub(k), sub(v)] for k, v in dict.items(value)]}
    if isinstance(value, range):
        if _range_len(value.start, value.stop, value.step) > budget[0]:
            raise Unserialisable(f"value has more than {MAX_ITEMS} items")  # as a list of it would
        return {"$r": [value.start, value.stop, value.step]}
    if type(value).__module__ in _ITER_MODULES and hasattr(type(value), "__next__"):
        # generators, map, zip...: materialised (bounded by the item budget) and rebuilt as
        # an iterator, so `list(f(x)) == [...]` works as it would in-process
        items = []
        for v in value:
            items.append(sub(v))
        return {"$it": items}
    if type(value) is Opaque:
        return {"$o": [value.type_name, value.truthy]}
    if opaque:
        return {"$o": [type(value).__name__, bool(value)]}
    raise Unserialisable(f"{type(value).__name__} is not a plain literal")


def _range_len(start: int, stop: int, step: int) -> int:
    # len(range) raises OverflowError past sys.maxsize
    return max(0, (stop - start + step - (1 if step > 0 else -1)) // step)


def check_hashes(items) -> None:
    """Raise ValueError if building a set or dict of `items` would cost more than
    MAX_SAME_HASH squared probes per hash: the host never does work whose size the
    candidate picks."""
    if len(items) <= MAX_SAME_HASH:
        return
    counts: dict[int, int] = {}  # keyed by hash values: ints hash to themselves, no collisions here
    for item in items:
        h = hash(item)
        counts[h] = n = counts.get(h, 0) + 1
        if n > MAX_SAME_HASH:
            raise ValueError(f"more than {MAX_SAME_HASH} members share one hash")


def _tagged(obj: dict):
    if len(obj) != 1:
        raise ValueError("malformed tagged value")
    (tag, v), = obj.items()
    if tag == "$t":
        return tuple(v)
    if tag in ("$s", "$fs"):
        check_hashes(v)
        return set(v) if tag == "$s" else frozenset(v)
    if tag == "$d":
        if len(v) > MAX_SAME_HASH:
            check_hashes([k for k, _ in v])
        return {k: val for k, val in v}
    if tag == "$f":
        if v not in ("nan", "inf", "-inf"):
            raise ValueError(f"bad float tag {v!r}")
        return float(v)
    if tag == "$c":
        return complex(float(v[0]), float(v[1]))
    if tag in ("$b", "$ba"):
        raw = base64.b64decode(v.encode("ascii"), validate=True)
        return raw if tag == "$b" else bytearray(raw)
    if tag == "$r":
        start, stop, step = (int(x) for x in v)
        if step and _range_len(start, stop, step) > MAX_ITEMS:  # sum() or min() would run for ever
            raise ValueError(f"range of more than {MAX_ITEMS} items")
        return range(start, stop, step)
    if tag == "$it":
        return iter(v)
    if tag == "$o":
        return Opaque(v[0], v[1] is True)
    raise ValueError(f"unknown tag {tag!r}")


def decode(data):
    """Rebuild a value from `encode`'s output; only builtin literal types can come out."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if isinstance(data, dict):
        (tag, v), = data.items() if len(data) == 1 else ((None, None),)
        if tag in ("$t", "$s", "$fs", "$it"):
            return _tagged({tag: [decode(x) for x in v]})
        if tag == "$d":
            return _tagged({tag: [(decode(k), decode(x)) for k, x in v]})
        return _tagged(data)
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    raise ValueError(f"unexpected JSON value {type(data).__name__}")

"""Code that runs inside the sandbox's job processes: the candidate side and the test side.

Standard library only: the sandbox's interpreter runs this file with `-I -S` and sees
neither the project nor its dependencies (it and `codec.py` are imported by path from the
directory `pool.IN_SANDBOX` is copied to). The host imports it as
`coder_align.sandbox.harness` for its exit codes and `passable_exception`.

One check job is two sandboxed processes forked from the worker:
- the candidate process runs the model's code and answers calls by name
  (`{"call": name, "args": ...}` -> `{"ok": value}` or `{"exc": [type, message]}`);
- the test process runs the test code, in which every name the candidate defined is a
  proxy that calls across the pipe. Values cross as tagged JSON of plain literals
  (`codec.py`), so an object whose `__eq__` always returns True cannot cross at all, and
  nothing the candidate produces is unpickled or evaluated. The test process is
  non-dumpable and not the candidate's descendant, so the candidate cannot read its
  memory or descriptors.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import struct
import sys
import traceback

if __package__:  # on the host, as coder_align.sandbox.harness
    from coder_align.sandbox import codec
else:  # in the sandbox: a top-level module beside codec.py (pool.IN_SANDBOX)
    import codec


# ---- candidate side ----------------------------------------------------------------------

# Exit codes the candidate harness uses to classify its own failure. The candidate can fake
# them, but only to give itself a worse verdict.
EXIT_COMPILE = 97
EXIT_MEMORY = 98


# Imported once in the worker, so that a candidate importing them (HumanEval prompts start
# with `from typing import List`) finds them loaded instead of loading them itself.
PRELOADED = ("typing",)

WARM_UP = '''
from typing import List
def f(xs: List[int], k: int = 1) -> List[int]:
    "A docstring."
    return sorted({x * k for x in xs if x > 0}, reverse=True)[:10]
'''


# A direct call is read into this, made in the worker: a fresh buffer per call would cost
# the candidate page faults on memory it shares with the worker (the worker never writes it,
# so every candidate is forked with it empty).
CALL_BUFFER = bytearray(1 << 12)


def warm_up() -> None:
    """Preload common modules and run the compiler, the codec, JSON and traceback printing
    once, in the worker: what they initialise on first use is then shared with every job
    process instead of built in each (a forked process pays a page copy for all it writes)."""
    for name in PRELOADED:
        __import__(name)
    namespace = {"__name__": "warm_up", "__builtins__": builtins}
    # the tracebacks a failing candidate prints: built cold, they cost it twice a normal job
    sink = io.StringIO()
    for source, limit in (("def f(:", 0), ("def f(x):\n    return 1 / x\nf(0)", None)):
        try:
            exec(compile(source, "main.py", "exec"), dict(namespace))
        except BaseException:
            traceback.print_exc(limit=limit, file=sink)
    exec(compile(WARM_UP, "warm_up.py", "exec"), namespace)
    value = namespace["f"]([3, 1, 2], k=2)
    round_trip = codec.decode(codec.encode([value, (1.5, "s", b"b", {1: None})]))
    json.loads(codec.encode_json({"ok": codec.encode(round_trip)}))
    codec.decode_json(  # a direct call, as `_answer_calls` reads it
        codec.encode_json(["f", codec.encode([1, "s"]), codec.encode({})]).encode())


def prepare_std_streams() -> None:
    """The candidate's sys.std* on fds 0-2 (the worker makes them once; each candidate
    inherits them with its own fds 0-2 behind them)."""
    sys.stdin = open(0, "r", encoding="utf-8", errors="replace", closefd=False)
    sys.stdout = open(1, "w", encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)


def _exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    os._exit(code)


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    print(exc.code, file=sys.stderr)
    return 1


def run_candidate(job: dict, req_fd: int | None, resp_fd: int | None) -> None:
    """Run the candidate (never returns). `job["mode"]`: compile, run (as __main__) or check."""
    sys.argv = ["main.py"]
    mode = job["mode"]
    try:
        code = compile(job["source"], "main.py", "exec")
    except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError):
        traceback.print_exc(limit=0)
        _exit(EXIT_COMPILE)
    if mode == "compile":
        _exit(0)
    namespace = {"__name__": "__main__" if mode == "run" else "candidate", "__builtins__": builtins}
    try:
        exec(code, namespace)
    except SystemExit as e:
        # in check mode an exit at import time leaves the tests without a candidate: they fail
        _exit(_exit_code(e))
    except MemoryError:
        _exit(EXIT_MEMORY)
    except BaseException:
        traceback.print_exc()
        _exit(1)
    if mode == "check" and job.get("calls") is not None:
        _answer_calls(namespace, req_fd, resp_fd)
    elif mode == "check":
        _serve(namespace, req_fd, resp_fd)
    _exit(0)


def _describe(value):
    if callable(value):
        return {"kind": "callable"}
    if type(value).__name__ == "module":
        return {"kind": "module", "name": value.__name__}
    try:
        return {"kind": "value", "value": codec.encode(value)}
    except Exception:
        return {"kind": "opaque"}


def _serve(namespace: dict, req_fd: int, resp_fd: int) -> None:
    names = {k: _describe(v) for k, v in list(namespace.items()) if not k.startswith("__")}
    codec.write_frame(resp_fd, {"names": names})
    while True:
        request = codec.read_frame(req_fd)
        if request is None:
            return
        try:
            fn = namespace[request["call"]]
            result = fn(*codec.decode(request["args"]), **codec.decode(request["kwargs"]))
            reply = {"ok": codec.encode(result, opaque=True)}
        except SystemExit:
            _exit(1)  # exiting from inside a tested function is a failure, never a pass
        except BaseException as e:
            reply = {"exc": [type(e).__name__, str(e)[:2000]]}
        codec.write_frame(resp_fd, reply)


def _answer_calls(namespace: dict, req_fd: int, resp_fd: int) -> None:
    """Direct calls (no test process): answer each call the worker hands over, one at a
    time, as `_serve` answers the test process. The candidate never holds a call
    before it is asked it (`relay.Relay`, in the worker): a program cannot look ahead at
    the arguments of later tests."""
    while True:
        got = os.readv(req_fd, [CALL_BUFFER])  # the worker writes one whole frame at a time
        if got < 4:
            return
        (n,) = struct.unpack_from(">I", CALL_BUFFER)
        frame = CALL_BUFFER[4:got]
        while len(frame) < n:
            more = os.read(req_fd, n - len(frame))
            if not more:
                return
            frame += more
        name, args, kwargs = codec.decode_json(frame)
        try:
            if name in namespace:
                fn = namespace[name]
            elif hasattr(builtins, name):  # as in the test process, where builtins stand in
                fn = getattr(builtins, name)
            else:
                raise NameError(f"name {name!r} is not defined")
            reply = {"ok": codec.encode(fn(*codec.decode(args), **codec.decode(kwargs)), opaque=True)}
        except SystemExit:
            _exit(1)  # exiting from inside a tested function is a failure, never a pass
        except BaseException as e:
            reply = {"exc": [type(e).__name__, str(e)[:2000]]}
        codec.write_frame(resp_fd, reply)


# ---- test side ---------------------------------------------------------------------------

class CandidateGone(BaseException):
    """The candidate process died or broke the protocol. A BaseException so that a
    test's `except Exception:` cannot swallow it into a pass."""


_PASSABLE_EXCEPTIONS = {
    name: getattr(builtins, name)
    for name in dir(builtins)
    if isinstance(getattr(builtins, name), type)
    and issubclass(getattr(builtins, name), Exception)
}


def passable_exception(exc_name, message) -> BaseException:
    """The exception a proxy raises for the candidate's `{"exc": [name, message]}`: the
    builtin of that name, anything else a RuntimeError naming it (the host uses it too,
    to word a direct call's failure as a test would have)."""
    exc_type = _PASSABLE_EXCEPTIONS.get(exc_name, RuntimeError)
    return exc_type(str(message) if exc_type is not RuntimeError else f"{exc_name}: {message}")


class _Link:
    def __init__(self, req_fd: int, resp_fd: int):
        self.req_fd, self.resp_fd = req_fd, resp_fd

    def call(self, name: str, args: tuple, kwargs: dict):
        try:
            payload = {"call": name, "args": codec.encode(list(args)), "kwargs": codec.encode(kwargs)}
        except codec.Unserialisable as e:
            raise TypeError(f"argument to {name}() cannot cross the sandbox boundary: {e}") from None
        try:
            codec.write_frame(self.req_fd, payload)
            reply = codec.read_frame(self.resp_fd)
        except (OSError, ValueError) as e:
            raise CandidateGone(f"candidate process unreachable: {e}") from None
        if reply is None:
            raise CandidateGone("candidate process exited during the tests")
        if "ok" in reply:
            try:
                return codec.decode(reply["ok"])
            except Exception as e:
                raise CandidateGone(f"malformed value from candidate: {e}") from None
        exc_name, message = (list(reply.get("exc", [])) + ["", ""])[:2]
        raise passable_exception(exc_name, message)


def _proxy(link: _Link, name: str):
    def proxy(*args, **kwargs):
        return link.call(name, args, kwargs)

    proxy.__name__ = proxy.__qualname__ = name
    return proxy


def run_tests(tests_fd: int, verdict_fd: int, req_fd: int, resp_fd: int) -> None:
    """Read this job's tests from the host, run them against proxies, report (never returns).

    Results per test: {"value": encoded} for value tests (the host compares it with the
    expected literal, which never enters the sandbox), {"ok": true} for statement tests,
    or {"error": "..."}.
    """
    payload = codec.read_frame(tests_fd)
    codec.Opaque.strict = payload.get("strict") is not False
    results = []
    link = _Link(req_fd, resp_fd)
    try:
        hello = codec.read_frame(resp_fd)
        names = hello["names"] if isinstance(hello, dict) and isinstance(hello.get("names"), dict) else None
    except Exception:
        names = None
    if names is None:
        codec.write_frame(verdict_fd, {"id": payload["id"], "results": None})
        os._exit(0)
    namespace = {"__name__": "__test__", "__builtins__": builtins}
    # A candidate's `abs` or `len` must not replace the builtin the test relies on, unless
    # that name is the function under test (the host lists those in "entry_points").
    shadowable = set(payload.get("entry_points", []))
    for name, info in names.items():
        if hasattr(builtins, name) and name not in shadowable:
            continue
        kind = info.get("kind") if isinstance(info, dict) else None
        try:
            if kind == "callable":
                namespace[name] = _proxy(link, name)
            elif kind == "value":
                namespace[name] = codec.decode(info["value"])
            elif kind == "module" and info["name"] in sys.stdlib_module_names:
                namespace[name] = __import__(info["name"])
        except Exception:
            pass  # an unusable name simply stays undefined for the tests
    try:
        exec(compile(payload["setup"], "setup.py", "exec"), namespace)
    except BaseException as e:
        codec.write_frame(verdict_fd, {"id": payload["id"], "setup_error": f"{type(e).__name__}: {e}"[:2000]})
        os._exit(0)
    for test in payload["tests"]:
        try:
            if test["kind"] == "value":
                value = eval(compile(test["code"], "test.py", "eval"), namespace)
                results.append({"value": codec.encode(value)})
            else:
                exec(compile(test["code"], "test.py", "exec"), namespace)
                results.append({"ok": True})
        except BaseException as e:
            results.append({"error": f"{type(e).__name__}: {e}"[:2000]})
    codec.write_frame(verdict_fd, {"id": payload["id"], "results": results})
    os._exit(0)

"""Real clients against `coder-align sandbox serve`: SandboxFusion's own PyPI client, and a
/run_code request shaped exactly as verl's sandbox_fusion reward sends it."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")
sandbox_fusion = pytest.importorskip("sandbox_fusion")

import requests  # noqa: E402

from _server_util import sandbox_server  # noqa: E402
from coder_align.sandbox import find_bwrap, toolchain_available  # noqa: E402

pytestmark = [pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap not installed"),
              pytest.mark.timeout(120)]
needs_cpp = pytest.mark.skipif(not toolchain_available("cpp"), reason="g++ not installed")

CPP_SUM = "#include <iostream>\nint main() { long a, b; std::cin >> a >> b; std::cout << a + b << std::endl; }\n"


@pytest.fixture(scope="module")
def server():
    with sandbox_server("--workers", "2") as s:
        yield s
    assert s.survivors == []


def sf_run(server, **kw):
    from sandbox_fusion import RunCodeRequest, run_code

    return run_code(RunCodeRequest(**kw), endpoint=server.url, max_attempts=1, client_timeout=60)


@pytest.mark.parametrize("kw, summary, stdout", [
    (dict(code="print('hello')", language="python"), "Success", "hello\n"),
    (dict(code="print(int(input()) * 2)", language="python", stdin="21\n"), "Success", "42\n"),
    (dict(code="import sys; sys.exit(3)", language="python"), "RunFailed", ""),
    (dict(code="while True: pass", language="python", run_timeout=1), "RunTimeout", None),
    pytest.param(dict(code=CPP_SUM, language="cpp", stdin="40 2\n"), "Success", "42\n", marks=needs_cpp),
    pytest.param(dict(code="int main() { return 0 }", language="cpp"), "CompileFailed", None, marks=needs_cpp),
    pytest.param(dict(code="int main() { while (1); }", language="cpp", run_timeout=1), "RunTimeout", None,
                 marks=needs_cpp),
])
def test_sandbox_fusion_client(server, kw, summary, stdout):
    from sandbox_fusion import RunStatus, SummaryMapping, summary_run_code_result

    result = sf_run(server, **kw)
    mapping = SummaryMapping(CompileFailed="CompileFailed", CompileTimeout="CompileTimeout",
                             RunFailed="RunFailed", RunTimeout="RunTimeout")
    assert summary_run_code_result(result, mapping) == summary
    assert result.status == (RunStatus.Success if summary == "Success" else RunStatus.Failed)
    if stdout is not None:
        assert result.run_result.stdout == stdout
    if summary == "CompileFailed":
        assert result.run_result is None and result.compile_result.return_code != 0
        assert "error" in result.compile_result.stderr


def test_sandbox_fusion_client_sees_a_missing_server_as_an_error():
    from sandbox_fusion import RunCodeRequest, run_code

    from _server_util import free_port

    with pytest.raises(Exception):
        run_code(RunCodeRequest(code="print(1)", language="python"), endpoint=f"http://127.0.0.1:{free_port()}",
                 max_attempts=1)


def verl_request(url: str, code: str, stdin, timeout: int = 5, memory_limit_mb: int = 1024, language="python"):
    """The request verl's `call_sandbox_api` makes (verl/utils/reward_score/sandbox_fusion/utils.py
    at volcengine/verl b178a3c): a JSON string body, these keys, these two headers, POSTed to
    the configured URL itself (which ends in /run_code), compile and run timeouts equal."""
    payload = json.dumps({"compile_timeout": timeout, "run_timeout": timeout, "code": code, "stdin": stdin,
                          "memory_limit_MB": memory_limit_mb, "language": language, "files": {}, "fetch_files": []})
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    return requests.post(url, headers=headers, data=payload, timeout=timeout * 2 + 10)


def verl_verdict(response: dict, expected: str):
    """How verl reads the answer (its `_process_single_case`): True/False, or -1 sandbox error,
    -2 runtime error, -3 timeout, -4 compile error."""
    status, compiled, ran = response["status"], response.get("compile_result"), response.get("run_result")
    if status == "SandboxError":
        return -1
    if status == "Failed":
        if compiled and (compiled["status"] in ("Error", "TimeLimitExceeded") or compiled["return_code"] != 0):
            return -4
        if ran and ran["status"] == "TimeLimitExceeded":
            return -3
        if ran and (ran["status"] == "Error" or ran["return_code"] != 0):
            return -2
        return -1
    if status == "Success" and ran and ran["status"] == "Finished":
        return str(ran["stdout"] or "").rstrip("\n") == str(expected).rstrip("\n")
    return -1


@pytest.mark.parametrize("code, stdin, expected, language, verdict", [
    ("a, b = map(int, input().split())\nprint(a + b)", "3 4", "7", "python", True),
    ("a, b = map(int, input().split())\nprint(a - b)", "3 4", "7", "python", False),
    ("print('no input needed')", None, "no input needed", "python", True),
    ("raise SystemExit(2)", "", "", "python", -2),
    ("import time\ntime.sleep(30)", "", "", "python", -3),
    pytest.param(CPP_SUM, "3 4\n", "7", "cpp", True, marks=needs_cpp),
    pytest.param("int main( {", "", "", "cpp", -4, marks=needs_cpp),
])
def test_verl_shaped_request(server, code, stdin, expected, language, verdict):
    r = verl_request(server.url + "/run_code", code, stdin, timeout=2, language=language)
    assert r.status_code == 200, r.text
    assert verl_verdict(r.json(), expected) == verdict

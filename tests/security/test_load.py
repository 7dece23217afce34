"""Load: 20 runs in parallel threads stay independent and leave nothing behind."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

from fleet_rlm import engine
from fleet_rlm.engine import run_rlm
from fleet_rlm.sandbox.local import LocalTransport
from fleet_rlm.testing import ScriptedLM
from tests.security import children_of, processes_of, wait_until

RUNS = 20


class RecordingTransport(LocalTransport):
    """A LocalTransport that remembers every workdir and uid it used."""

    seen: list[tuple[str, int | None]] = []
    lock = threading.Lock()

    def start(self):
        stream = super().start()
        with self.lock:
            self.seen.append((self.workdir, self.uid))
        return stream


def one_run(i: int):
    numbers = list(range(i * 1000, i * 1000 + 50 + i))
    steps = [
        "total = sum(numbers); print(total)",
        "r = llm_query(f'double {total}'); print(r)",
        "SUBMIT(answer=f'{label}:{total}:{r}')",
    ]
    lm = ScriptedLM(steps, respond=lambda p: str(2 * int(p.split()[-1])))
    result = run_rlm("numbers, label -> answer", {"numbers": numbers, "label": f"run{i}"}, lm=lm)
    return numbers, result


def test_twenty_parallel_runs_are_correct_independent_and_leave_nothing(monkeypatch):
    monkeypatch.setattr(engine, "LocalTransport", RecordingTransport)
    RecordingTransport.seen = []
    children = children_of(os.getpid())
    threads = threading.active_count()

    with ThreadPoolExecutor(RUNS) as pool:
        futures = [pool.submit(one_run, i) for i in range(RUNS)]
        outcomes = [f.result(timeout=240) for f in futures]

    for i, (numbers, result) in enumerate(outcomes):
        total = sum(numbers)
        assert result.outputs == {"answer": f"run{i}:{total}:{2 * total}"}
        assert [s["output"] for s in result.steps[:2]] == [f"{total}\n", f"{2 * total}\n"]
        assert result.summary["lm_calls"] == 3 and result.summary["sub_lm_calls"] == 1
        assert result.summary["restarts"] == 0 and result.summary["error"] is None

    seen = RecordingTransport.seen
    assert len(seen) == RUNS
    workdirs = {w for w, _ in seen}
    uids = {u for _, u in seen if u is not None}
    assert len(workdirs) == RUNS
    if os.geteuid() == 0:
        assert len(uids) == RUNS  # one throw-away uid per sandbox
    assert [w for w in workdirs if os.path.exists(w)] == []
    assert all(os.path.basename(w).startswith("fleet-rlm-sandbox-") for w in workdirs)
    assert wait_until(lambda: processes_of(uids)) == []
    assert wait_until(lambda: children_of(os.getpid()) - children) == set()
    assert not wait_until(lambda: threading.active_count() > threads + 2)

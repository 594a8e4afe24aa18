"""What `mmstudio serve` and `mmstudio worker` do to their own process: no collections during start-up,
then start-up's objects frozen out of every later collection, and the collector on again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap


def test_settle_heap_freezes_start_up_and_turns_the_collector_back_on() -> None:
    # In a process of its own: freezing this test process's heap would outlive the test.
    script = textwrap.dedent(
        """
        import gc, json
        from mmstudio.process import pause_collector, settle_heap
        pause_collector()
        paused = not gc.isenabled()
        made = [[i] for i in range(5000)]  # start-up's objects
        frozen = settle_heap()
        collected_before = gc.get_stats()[2]["collections"]
        gc.collect()
        full = gc.get_stats()[2]["collections"] - collected_before
        print(json.dumps({"paused": paused, "on": gc.isenabled(), "frozen": frozen,
                          "tracked": len(gc.get_objects()), "full": full}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=os.environ
    )
    result = json.loads(out.stdout)
    assert result["paused"] and result["on"] and result["full"] == 1
    assert result["frozen"] > 5000  # the lists made while paused, and everything imported before
    assert result["tracked"] < result["frozen"] / 2  # a full collection walks only what came after

"""What a long-running mmstudio process (`serve`, `worker`) does to itself once it has started.

Start-up leaves a large heap that lives as long as the process: the imported modules, the model
catalog, SQLAlchemy's and pydantic's compiled structures (about 220,000 objects tracked by the garbage
collector). Python's full collection walks all of them each time it runs; on the 2-core machine the
benchmarks use that is a 100-120 ms pause of the event loop every few hundred jobs, during which no
request, stream or job is served. So the two commands pause the collector while they start
(`pause_collector`) and, once the studio is open, move everything alive into the collector's permanent
generation (`gc.freeze`) and turn it back on (`settle_heap`): later full collections walk only what the
running process allocates (10-20 ms here). `bench/jobs.py` measures the difference. A library user of
`Studio` and the test suite are not affected: only `mmstudio serve` and `mmstudio worker` call these.
"""

from __future__ import annotations

import gc


def pause_collector() -> None:
    """No collections during start-up (they would walk the growing heap again and again: 80-140 ms each
    here, about 300 ms in all); `settle_heap` turns the collector back on."""
    gc.disable()


def settle_heap() -> int:
    """Freeze what start-up made out of later collections and turn the collector (back) on. Start-up
    makes almost no cyclic garbage (a full collection right here finds none), so none is collected
    first: that would be another full walk of the whole heap. The number of objects frozen."""
    gc.freeze()
    gc.enable()
    return gc.get_freeze_count()

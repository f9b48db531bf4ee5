"""A ``distributed.LocalCluster`` of worker processes, run apart from the test process.

Prints the scheduler's address, then answers one command per line on stdin:
``prefixes`` prints the task prefixes the scheduler has run (JSON); end of
input closes the cluster. Kept out of pytest's process so that Dask's threads
do not outlive the tests that use it.

    python dask_cluster.py WORKERS
"""

from __future__ import annotations

import json
import sys

from distributed import LocalCluster


def main() -> None:
    with LocalCluster(
        n_workers=int(sys.argv[1]),
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as cluster:
        print(cluster.scheduler_address, flush=True)
        for line in sys.stdin:
            if line.strip() == "prefixes":
                print(json.dumps(sorted(cluster.scheduler.task_prefixes)), flush=True)


if __name__ == "__main__":
    main()

"""A process configured from the environment, for the process context tests.

Prints ``ready <pid>``; on ``fork`` from stdin it forks a child that prints
``child <pid>`` and lives until the file named by the first argument exists;
``quit`` ends it.
"""

from __future__ import annotations

import os
import sys
import time

from otel_profiling import configure

agent = configure()
print("ready", os.getpid(), flush=True)
for line in sys.stdin:
    command = line.strip()
    if command == "fork":
        child = os.fork()
        if child == 0:
            print("child", os.getpid(), flush=True)
            while not os.path.exists(sys.argv[1]):
                time.sleep(0.05)
            if agent is not None:
                agent.shutdown(5_000)
            os._exit(0)
    elif command == "quit":
        break
print("done", flush=True)

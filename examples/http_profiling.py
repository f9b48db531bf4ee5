"""Ask a running service for its CPU profile over HTTP, as with Go's net/http/pprof.

    python examples/http_profiling.py      # writes under ./profiles and ./cpu.cpuprofile

The service registers an HttpTrigger on loopback with a token; a client thread
asks for a 2-second CPU profile while the workload runs. The profile comes
back in the response (saved as ./cpu.cpuprofile) and is also exported under
./profiles. A `with agent.profile(...)` block then profiles one more piece
of work from code.
"""

from __future__ import annotations

import logging
import secrets
import sys
import threading
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import handle_request, run_workload  # noqa: E402

from otel_profiling import ProfilingAgent  # noqa: E402
from otel_profiling.exporters import FsspecProfileExporter  # noqa: E402
from otel_profiling.processors import BatchProfileProcessor  # noqa: E402
from otel_profiling.profilers import CpuProfiler  # noqa: E402
from otel_profiling.triggers import HttpTrigger  # noqa: E402


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    token = secrets.token_urlsafe(16)
    http = HttpTrigger(port=0, token=token)  # loopback; port 0: any free port
    cpu = CpuProfiler()
    agent = ProfilingAgent()
    agent.register(http, cpu)
    agent.add_profile_processor(
        BatchProfileProcessor(FsspecProfileExporter("file://" + str(Path("profiles").resolve())))
    )
    agent.start()

    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            run_workload(requests=2, size=16)

    worker = threading.Thread(target=serve, name="service")
    worker.start()
    request = urllib.request.Request(
        f"{http.url}/cpu?seconds=2", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        Path("cpu.cpuprofile").write_bytes(response.read())
        print("received", response.headers["Content-Disposition"], "-> cpu.cpuprofile")
    stop.set()
    worker.join()

    with agent.profile(cpu, name="one-request") as handle:
        handle_request(20)
    print("profiled from code:", handle.profile)
    agent.shutdown()
    print("exported under ./profiles")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``merge`` and ``diff`` on a Dask cluster: ``--scheduler ADDRESS`` or ``--workers N``.

A worker lists the objects; the workers read them straight from the store
(credentials from their own environment, or ``--storage-option``) and add
them up in chunks; the chunks' partial sums are added in a tree, ``FAN_IN``
at a time with earlier inputs on the left. ``aggregate`` makes that exactly
the local merge's result. Only the final sum comes back to this process, and
a worker holds at most a few partial sums at a time.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import sys
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

from otel_profiling._env import env_str
from otel_profiling.cli.aggregate import Aggregate, Packed, merge_objects
from otel_profiling.cli.common import CliError
from otel_profiling.cli.sources import Filters, Selection, select
from otel_profiling.environment_variables import DASK_SCHEDULER_ADDRESS
from otel_profiling.redact import redact_options
from otel_profiling.version import DISTRIBUTION, install_command

FAN_IN = 4
"""Partial sums added by one task: the tree of additions is log4(chunks) deep."""

MAX_CHUNK = 32
"""Objects read by one task at most, so that the work spreads and retries are small."""

CHUNKS_PER_THREAD = 4
CONNECT_TIMEOUT = "30s"
INSTALL_HINT = install_command("dask")


class StorageOptions(Dict[str, Any]):
    """fsspec options sent to the workers; their ``repr`` (in Dask's logs) hides secrets."""

    def __repr__(self) -> str:
        return repr(redact_options(self))

    __str__ = __repr__


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "Dask", f"list, read and merge on a Dask cluster (needs {INSTALL_HINT})"
    )
    group.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="a running Dask scheduler, e.g. tcp://scheduler:8786 "
        f"(default: ${DASK_SCHEDULER_ADDRESS})",
    )
    group.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="start a local Dask cluster of N worker processes for this command",
    )


def _address(args: argparse.Namespace) -> Optional[str]:
    if args.scheduler:
        return str(args.scheduler)
    if args.workers is None:
        return env_str(DASK_SCHEDULER_ADDRESS)  # blank: unset, as every variable
    return None


@contextlib.contextmanager
def cluster_client(args: argparse.Namespace) -> Iterator[Any]:
    """A Dask ``Client`` for the command, or ``None`` to work in this process."""
    address = _address(args)
    if address is None and args.workers is None:
        yield None
        return
    if args.scheduler and args.workers is not None:
        raise CliError(
            "--workers starts a local cluster and --scheduler uses an existing one: give one"
        )
    if args.workers is not None and args.workers < 1:
        raise CliError(f"--workers {args.workers}: give at least one worker")
    if address is None:
        option = "--workers"
    elif args.scheduler:
        option = "--scheduler"
    else:
        option = f"${DASK_SCHEDULER_ADDRESS} (from the environment)"
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise CliError(f"{option} needs Dask: {INSTALL_HINT}") from None
    quiet = logging.getLogger().getEffectiveLevel() > logging.DEBUG
    if quiet:  # Dask logs each step at INFO; its failures reach the user as errors here
        logging.getLogger("distributed").setLevel(logging.ERROR)
    with contextlib.ExitStack() as stack:
        if address is None:
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=args.workers,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address="127.0.0.1:0",  # any free loopback port, never 8787's clash
                    silence_logs=logging.ERROR if quiet else False,
                )
            )
            client = stack.enter_context(Client(cluster))
        else:
            try:
                client = stack.enter_context(Client(address, timeout=CONNECT_TIMEOUT))
            except ValueError as exc:  # e.g. no port: "missing port number in address"
                raise CliError(
                    f"{option}: {address!r} is not a Dask scheduler address ({exc}): "
                    "give one such as tcp://scheduler:8786"
                ) from None
            except (OSError, TimeoutError) as exc:
                raise CliError(
                    f"cannot reach the Dask scheduler at {address} ({exc}): check the address "
                    f"(--scheduler or ${DASK_SCHEDULER_ADDRESS}) and that the scheduler runs"
                ) from None
        yield client


def select_task(
    sources: Sequence[str], filters: Filters, options: Dict[str, Any]
) -> Union[Selection, CliError]:
    """A task: ``select`` on a worker.

    A refusal (no match, several kinds) is returned, not raised: a raising task is
    logged by Dask with its traceback, on the command's stderr with ``--workers``.
    """
    try:
        return select(sources, filters, options)
    except CliError as exc:
        return exc


def merge_chunk(urls: Sequence[str], options: Dict[str, Any]) -> Union[Packed, CliError]:
    """A task: read and add some objects on a worker; a refusal is returned, as above."""
    try:
        return merge_objects(urls, options).pack()
    except CliError as exc:  # inputs that do not add up
        return exc


def add_partials(*partials: Union[Packed, CliError]) -> Union[Packed, CliError]:
    """A task: add partial sums, earlier inputs first; the first refusal is passed on."""
    sums = [p for p in partials if isinstance(p, Packed)]
    if len(sums) < len(partials):
        return next(p for p in partials if isinstance(p, CliError))
    try:
        aggregate = Aggregate.unpack(sums[0])
        for packed in sums[1:]:
            aggregate.add_packed(packed)
    except CliError as exc:
        return exc
    return aggregate.pack()


def _raise_refusal(results: List[Any]) -> List[Any]:
    """The tasks' results, or the first refusal a task returned, raised here."""
    for result in results:
        if isinstance(result, CliError):
            raise result
    return results


def chunk_size(objects: int, threads: int) -> int:
    return max(1, min(MAX_CHUNK, math.ceil(objects / max(1, threads * CHUNKS_PER_THREAD))))


def _reduction(client: Any, urls: Sequence[str], options: StorageOptions) -> Any:
    """The future of the sum of ``urls``: chunk tasks, then a tree of additions."""
    threads = sum(client.nthreads().values())
    size = chunk_size(len(urls), threads)
    level = [
        client.submit(merge_chunk, list(urls[i : i + size]), options, pure=False)
        for i in range(0, len(urls), size)
    ]
    depth = 0
    while len(level) > 1:
        depth += 1  # additions first, deeper ones first: few partial sums wait in memory
        level = [
            client.submit(add_partials, *level[i : i + FAN_IN], pure=False, priority=depth)
            for i in range(0, len(level), FAN_IN)
        ]
    return level[0]


def _gather(client: Any, futures: List[Any], progress: bool) -> List[Any]:
    """Wait for ``futures`` with Dask's progress bar (on stderr), then fetch the results."""
    if progress:
        from distributed import progress as progress_bar

        with contextlib.redirect_stdout(sys.stderr):  # Dask draws on stdout
            progress_bar(futures, notebook=False, multi=False)
    try:
        return list(client.gather(futures))
    except CliError:
        raise
    except Exception as exc:  # noqa: BLE001 - a lost worker, a cancelled task...
        raise CliError(
            f"the Dask cluster failed ({type(exc).__name__}: {exc}): check the workers' logs "
            f"and memory; the workers need {DISTRIBUTION} installed"
        ) from None


def select_on_cluster(
    client: Any, sides: Sequence[Sequence[str]], filters: Sequence[Filters], options: Dict[str, Any]
) -> List[Selection]:
    """Each side's sources resolved by a worker (which has the store's credentials)."""
    wrapped = StorageOptions(options)
    futures = [
        client.submit(select_task, list(sources), side_filters, wrapped, pure=False)
        for sources, side_filters in zip(sides, filters, strict=True)
    ]
    return _raise_refusal(_gather(client, futures, progress=False))


def merge_on_cluster(
    client: Any, sides: Sequence[Sequence[str]], options: Dict[str, Any], progress: bool
) -> List[Aggregate]:
    """Each side's objects merged on the cluster, all sides at once."""
    wrapped = StorageOptions(options)
    finals = [_reduction(client, urls, wrapped) for urls in sides]
    sums = _raise_refusal(_gather(client, finals, progress))
    return [Aggregate.unpack(packed) for packed in sums]

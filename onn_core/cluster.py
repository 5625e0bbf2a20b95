"""Dask clusters the studio sends work to: connect, check every node before submitting, and say
what failed in a designer's terms.

A cluster that cannot run the studio's tasks does not fail quietly: before anything is
submitted, :func:`checked_client` asks the scheduler and every worker to import the modules the
work needs and compares the versions of Python, Dask and the studio with this process's, and
refuses with the node, the missing module and the fix (without this check a scheduler that
cannot import ``estimators`` drops the task graph and the client waits forever). The probe is
sent by value (:mod:`onn_core.cluster_probe`), so it runs on a node without the studio.
"""

from __future__ import annotations

import re
import socket
import traceback
from collections.abc import Iterable
from typing import Any

import cloudpickle

from . import __version__, cluster_probe
from .errors import ClusterError

CONNECT_TIMEOUT_S = 10.0
# What a node must import: the packages, and the modules whose functions the studio sends (their
# import pulls torch and numpy in, which a node may lack).
PROBED_MODULES = ("onn_core", "estimators", "onn_core.jobs.remote", "estimators.sweep", "torch", "numpy")
# Packages that must match this process's exactly: Dask's wire format, and the numerics.
MATCHED_PACKAGES = ("python", "dask", "distributed", "cloudpickle", "msgpack", "numpy")
ADDRESS = re.compile(r"(?:tcp|tls)://(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})")
STUDIO_MODULES = ("onn_core", "estimators")

cloudpickle.register_pickle_by_value(cluster_probe)  # once: the probe must run where the studio is missing
INSTALL_HINT = (
    "install the studio on every node (scheduler and workers) from this checkout: `pip install PATH/TO/CHECKOUT` "
    "(the package is onn-studio), in the same Python environment the node's `dask scheduler` / `dask worker` "
    "runs in, then restart them; or start them with the checkout on PYTHONPATH"
)


def connect(address: str, *, timeout: float = CONNECT_TIMEOUT_S):
    """A client of the scheduler at ``address`` (``tcp://HOST:PORT``), or a ClusterError within ``timeout`` s."""
    from dask.distributed import Client

    address = address.strip() if isinstance(address, str) else ""
    match = ADDRESS.fullmatch(address)
    if match is None:
        raise ClusterError(f"the scheduler address {address or '(empty)'!r} is not of the form tcp://HOST:PORT "
                           "(e.g. tcp://10.0.0.5:8786, the address `dask scheduler` prints).")  # fmt: skip
    unreachable = (f"cannot reach the Dask scheduler at {address} within {timeout:g} s ({{}}). Fix: start it on that "
                   "host (`dask scheduler`), check the address and port (it prints them), and that this machine can "
                   "reach it.")  # fmt: skip
    # A plain connection first: Dask's client would retry a refused one until the timeout, then
    # take as long again to close itself.
    try:
        socket.create_connection((match["host"].strip("[]"), int(match["port"])), timeout=timeout).close()
    except OSError as exc:
        raise ClusterError(unreachable.format(exc.strerror or exc)) from None
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(unreachable.format(f"{type(exc).__name__}: {exc}")) from None
    except (Exception, MemoryError) as exc:  # something answered, but not in Dask's protocol
        raise ClusterError(f"something answers at {address}, but not as a Dask scheduler ({type(exc).__name__}: "
                           f"{str(exc)[:200]}). Fix: check the port: `dask scheduler` prints its address.") from None


def check_cluster(client, modules: Iterable[str] = PROBED_MODULES, *, min_workers: int = 1) -> dict[str, Any]:
    """Refuse (ClusterError) a cluster that cannot run the studio's tasks; else describe it.

    Checks: the scheduler and every worker import ``modules`` (the studio at this version, torch at
    this torch's); at least ``min_workers`` workers; :data:`MATCHED_PACKAGES` match this process's.
    Returns ``{"scheduler": address, "workers": [addresses], "threads": total}``.
    """
    modules = list(modules)
    try:
        # The scheduler first: one that cannot import the studio cannot read the task graph.
        found = {"the scheduler": client.run_on_scheduler(cluster_probe.importable, modules)}
        _refuse_missing(client, found)
        workers = client.sync(client.scheduler.identity, n_workers=-1)["workers"]  # afresh, not the cache
        if len(workers) < min_workers:
            raise ClusterError(
                f"the Dask cluster at {client.scheduler.address} has {len(workers)} worker(s); at least "
                f"{min_workers} is needed. Fix: start workers on the cluster's nodes (`dask worker "
                f"{client.scheduler.address}`)."
            )
        found.update({f"worker {address}": answer for address, answer in client.run(cluster_probe.importable,
                                                                                       modules).items()})  # fmt: skip
    except ClusterError:
        raise
    except Exception as exc:  # a node that cannot even run the probe: say which call failed
        raise ClusterError(f"could not check the Dask cluster at {client.scheduler.address}: "
                           f"{type(exc).__name__}: {exc}") from None  # fmt: skip
    _refuse_missing(client, found)
    _refuse_other_versions(client)
    return {"scheduler": client.scheduler.address, "workers": sorted(workers),
            "threads": sum(info.get("nthreads", 0) for info in workers.values())}  # fmt: skip


def local_packages() -> dict[str, str | None]:
    """This process's versions of the packages Dask reports (python, dask, distributed, …)."""
    from distributed.versions import get_versions

    return get_versions()["packages"]


def _refuse_other_versions(client) -> None:
    """ClusterError naming each node whose :data:`MATCHED_PACKAGES` differ from this process's
    (distributed's own check only warns)."""
    here = local_packages()
    try:
        reported = client.get_versions()
    except Exception as exc:
        raise ClusterError(f"could not read the Dask cluster's versions: {type(exc).__name__}: {exc}") from None
    nodes = {"the scheduler": reported.get("scheduler") or {}}
    nodes.update({f"worker {address}": info or {} for address, info in (reported.get("workers") or {}).items()})
    differences = []
    for node, info in nodes.items():
        packages = info.get("packages", {})
        differing = [f"{name} {packages.get(name)} (here {here.get(name)})" for name in MATCHED_PACKAGES
                     if packages.get(name) != here.get(name)]  # fmt: skip
        if differing:
            differences.append(f"{node} has {', '.join(differing)}")
    if differences:
        raise ClusterError(f"the Dask cluster's packages differ from this studio's: {'; '.join(differences)}. Fix: "
                           "install the same pinned environment (pip install -r requirements.txt, then the studio) "
                           "on every node.")  # fmt: skip


def live_workers(client) -> set[str] | None:
    """Addresses of the workers the scheduler knows now, asked afresh; None if it did not answer."""
    try:
        return set(client.sync(client.scheduler.identity, n_workers=-1)["workers"])
    except Exception:
        return None


def _refuse_missing(client, found: dict[str, dict[str, str]]) -> None:
    """ClusterError naming every node of ``found`` (node → module → version or error) that cannot
    import a module, or runs another version of the studio."""
    problems = []
    for node, answers in found.items():
        missing = {module: answer.removeprefix("error: ") for module, answer in answers.items()
                   if answer.startswith("error:")}  # fmt: skip
        if missing:
            problems.append(f"{node} cannot import {', '.join(missing)} ({next(iter(missing.values()))})")
        expected = {name: __version__ for name in STUDIO_MODULES} | {"torch": _torch_version()}
        stale = [f"{module} {answer} (here {expected[module]})" for module, answer in answers.items()
                 if module in expected and module not in missing and answer != expected[module]]  # fmt: skip
        if stale:
            problems.append(f"{node} runs {', '.join(stale)}")
    if problems:
        raise ClusterError(f"the Dask cluster at {client.scheduler.address} cannot run the studio's work: "
                           f"{'; '.join(problems)}. Fix: {INSTALL_HINT}.")  # fmt: skip


def _torch_version() -> str:
    import torch

    return torch.__version__


def checked_client(address: str, modules: Iterable[str] = PROBED_MODULES, *, timeout: float = CONNECT_TIMEOUT_S,
                   min_workers: int = 1):  # fmt: skip
    """:func:`connect` then :func:`check_cluster`; the client is closed if the check fails."""
    client = connect(address, timeout=timeout)
    try:
        check_cluster(client, modules, min_workers=min_workers)
    except BaseException:
        client.close()
        raise
    return client


def remote_failure(exc: BaseException, what: str) -> ClusterError:
    """A task's error on a Dask worker as a ClusterError: what failed, the exception, and where
    in the studio's code it was raised (the last frames of the remote traceback)."""
    # joblib keeps the worker's traceback as the cause; Dask re-raises with the remote frames
    remote = exc.__cause__ if exc.__cause__ is not None and exc.__cause__.__traceback__ else exc
    frames = traceback.extract_tb(remote.__traceback__)[-3:]
    where = "; ".join(f"{frame.filename.rsplit('/', 2)[-1]}:{frame.lineno} in {frame.name}" for frame in frames)
    return ClusterError(f"{what} failed on the Dask cluster: {type(exc).__name__}: {exc}"
                        + (f" (at {where})" if where else ""))  # fmt: skip

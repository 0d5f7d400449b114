"""Ray, the optional cluster engine: imported lazily, connected once, left as found.

``segshield[ray]`` installs Ray. :func:`import_ray` imports it or raises an
``ImportError`` naming that extra; :func:`ray_session` connects to a cluster (or starts a
local one) unless this process is already connected, and shuts down only what it
started, so a caller (a test, a notebook) keeps its own connection.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["RAY_EXTRA", "import_ray", "ray_session"]

log = logging.getLogger(__name__)

#: The pip extra that installs Ray.
RAY_EXTRA = "segshield[ray]"


def import_ray() -> Any:
    """The ``ray`` module.

    Raises:
        ImportError: Ray is not installed (the message names ``pip install 'segshield[ray]'``).

    Example:
        >>> import_ray().__name__  # doctest: +SKIP
        'ray'
    """
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            "the Ray executor needs Ray, which is not installed; pip install "
            f"'{RAY_EXTRA}' (or use --executor local)"
        ) from exc
    return ray


@contextmanager
def ray_session(address: str | None = None, **init_kwargs: Any) -> Iterator[Any]:
    """Connect to Ray for the ``with`` block; yields the ``ray`` module.

    Args:
        address: ``"auto"`` (the cluster started on this machine with ``ray start``),
            ``"HOST:PORT"`` of a head node, or ``None`` to start a local cluster of this
            machine. Ignored when this process is already connected.
        **init_kwargs: passed to ``ray.init`` (e.g. ``num_cpus`` for a local cluster).

    Raises:
        ImportError: Ray is not installed.
        ConnectionError: no cluster at ``address`` (Ray's message).
    """
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        kw = {"include_dashboard": False, "log_to_driver": False, **init_kwargs}
        if address is not None:  # settings of a cluster's start, not of a connection
            for key in ("num_cpus", "num_gpus", "include_dashboard"):
                kw.pop(key, None)
        ray.init(address=address, **kw)
        log.info("connected to Ray: %s", ray.cluster_resources())
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()

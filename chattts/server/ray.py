"""The speech server on Ray Serve: replicas of the same FastAPI app (docs/server.md, "Ray Serve").

Each replica is a Ray actor that opens one model and runs the app of ``chattts serve`` (same
routes, formats, streaming, SSE, errors and API key) behind Serve's HTTP proxy, through Serve's
FastAPI ingress. Batching stays the server's own: each replica's worker thread batches the
requests that replica holds (``max_ongoing_requests`` of them at most; more wait in the proxy,
and past ``max_queued_requests`` get 503). Serve's ``@serve.batch`` is not used: it hands a
batch method lists of calls and their results back as lists, with nothing for one item's
stream to end early, be cancelled by its client or fail alone, which the worker does.

>>> from chattts.server.ray import ReplicaOptions, build_app  # doctest: +SKIP
>>> from ray import serve  # doctest: +SKIP
>>> serve.run(build_app(ReplicaOptions.from_model("./ChatTTS-model"), replicas=2))  # doctest: +SKIP

``chattts serve --ray`` (:func:`main`) does this from the shell; ``examples/ray/serve.yaml``
deploys :func:`app_builder` with ``serve run`` / ``serve deploy``. Needs
``pip install 'chattts[ray]'``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from ray.serve import Application

from ..cli.args import ServerOptions
from ..errors import MissingDependencyError, ReplicaUnhealthy, UsageError
from ..options import EngineOptions, LoadOptions

logger = logging.getLogger("chattts.server")

INSTALL_HINT = "pip install 'chattts[ray]'"
#: The Serve application and deployment names.
APP_NAME = "chattts"
DEPLOYMENT_NAME = "ChatTTS"
#: Environment variables a replica gets from the process that deploys it.
FORWARDED_ENV = ("CHATTTS_ALLOWED_HOSTS", "CHATTTS_DATA_DIR")
#: Where the config-file builder finds the API key when its args have none.
API_KEY_ENV = "CHATTTS_API_KEY"


def _require_ray() -> tuple[Any, Any]:
    try:
        import ray
        from ray import serve
    except ImportError as e:
        raise MissingDependencyError(f"the Ray Serve app needs ray[serve]: {INSTALL_HINT}") from e
    return ray, serve


@dataclass(frozen=True)
class ReplicaOptions:
    """What every replica needs to open its model and build its app (sent to each replica).

    Attributes:
        load: how the replica opens its model (a model folder must exist on every node).
        server: the server's options (:class:`~chattts.cli.args.ServerOptions`, as
            ``chattts serve`` takes them); its ``voices``: a dict (travels with the options)
            or a path on every node; None: the voice library of each replica's node.
        allowed_hosts: extra names accepted in the Host header without an API key.
        threads: torch threads of each replica (None: Ray's ``OMP_NUM_THREADS``, the
            replica's CPUs).
    """

    load: LoadOptions = field(default_factory=LoadOptions)
    server: ServerOptions = field(default_factory=ServerOptions)
    allowed_hosts: tuple[str, ...] = ()
    threads: Optional[int] = None

    @classmethod
    def from_model(
        cls,
        model_dir: str,
        **kwargs: Any,  # Any: ServerOptions' fields and the replica's, typed there
    ) -> ReplicaOptions:
        """Options for a model folder (``source="custom"``, not verified by default);
        ``kwargs``: ``verify``, ``device``, ``allowed_hosts``, ``threads`` and the fields of
        :class:`~chattts.cli.args.ServerOptions`."""
        verify = kwargs.pop("verify", False)
        device = kwargs.pop("device", "cpu")
        load = LoadOptions("custom", model_dir, verify=verify, device=device)
        own = {k: kwargs.pop(k) for k in ("allowed_hosts", "threads") if k in kwargs}
        return cls(load=load, server=ServerOptions(**kwargs), **own)


class SpeechReplica:
    """One replica: a loaded model, its worker thread and the server's app.

    Serve wraps it with ``serve.ingress``; the app comes from ``__serve_build_asgi_app__`` and
    its lifespan (run by Serve) starts the worker and, when the replica stops, drains it.
    """

    def __init__(self, options: ReplicaOptions) -> None:
        from ray import serve

        from . import create_app

        if options.threads:  # the replica is a documented entry point: it owns its process
            import torch

            torch.set_num_threads(options.threads)
        context = serve.get_replica_context()
        self.name = f"{context.deployment}#{context.replica_tag}"
        self._chattts_app = create_app(
            options=options.load,
            settings=options.server,
            allowed_hosts=options.allowed_hosts,
            replica=self.name,
        )
        logger.info("replica %s ready", self.name)

    def __serve_build_asgi_app__(self) -> Any:
        return self._chattts_app

    def check_health(self) -> None:
        """Called by Serve every ``health_check_period_s``; raising marks the replica
        unhealthy and Serve replaces it.

        Raises:
            ReplicaUnhealthy: the model is no longer loaded, or the worker thread or a job
                runner is gone.
        """
        service = self._chattts_app.state.service
        if not service.chat.has_loaded():
            raise ReplicaUnhealthy(f"replica {self.name}: the model is not loaded")
        if not service.worker.alive:
            raise ReplicaUnhealthy(f"replica {self.name}: the inference worker is not running")
        jobs = self._chattts_app.state.jobs
        if jobs is not None and not jobs.alive:
            raise ReplicaUnhealthy(f"replica {self.name}: the job runners are not running")


def deployment_options(
    options: ReplicaOptions,
    *,
    replicas: int = 1,
    autoscale: Optional[tuple[int, int]] = None,
    replica_cpus: float = 1.0,
    max_ongoing_requests: Optional[int] = None,
    max_queued_requests: int = -1,
    health_check_period_s: float = 10.0,
) -> dict[str, Any]:
    """The keywords of ``serve.deployment`` for these options.

    ``autoscale=(MIN, MAX)`` replaces ``replicas``: Serve keeps MIN to MAX replicas, aiming at
    ``max_batch`` requests under way on each. ``max_ongoing_requests`` (default: twice
    ``max_batch``) is the back-pressure: a replica never holds more; the rest wait in the
    proxy, up to ``max_queued_requests`` (-1: no bound), then get 503.
    """
    if replicas < 1:
        raise UsageError("replicas must be at least 1")
    ongoing = max_ongoing_requests or 2 * options.server.max_batch
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    actor: dict[str, Any] = {"num_cpus": replica_cpus}
    if env:
        actor["runtime_env"] = {"env_vars": env}
    out: dict[str, Any] = {
        "name": DEPLOYMENT_NAME,
        "ray_actor_options": actor,
        "max_ongoing_requests": ongoing,
        "max_queued_requests": max_queued_requests,
        "health_check_period_s": health_check_period_s,
        "graceful_shutdown_timeout_s": 60.0,
    }
    if autoscale is not None:
        low, high = autoscale
        if not 0 <= low <= high or high < 1:
            raise UsageError(f"autoscale {low}:{high}: need 0 <= MIN <= MAX and MAX >= 1")
        out["autoscaling_config"] = {
            "min_replicas": low,
            "max_replicas": high,
            "initial_replicas": max(low, 1),
            "target_ongoing_requests": options.server.max_batch,
        }
    else:
        out["num_replicas"] = replicas
    return out


def build_app(
    options: ReplicaOptions,
    *,
    replicas: int = 1,
    autoscale: Optional[tuple[int, int]] = None,
    replica_cpus: float = 1.0,
    max_ongoing_requests: Optional[int] = None,
    max_queued_requests: int = -1,
    health_check_period_s: float = 10.0,
) -> Application:
    """The Serve application (``serve.run(...)`` it); the scaling keywords as in
    :func:`deployment_options`.

    Raises:
        MissingDependencyError: Ray Serve is not installed.
    """
    _, serve = _require_ray()
    ingress = serve.ingress()(SpeechReplica)
    scaling = deployment_options(
        options,
        replicas=replicas,
        autoscale=autoscale,
        replica_cpus=replica_cpus,
        max_ongoing_requests=max_ongoing_requests,
        max_queued_requests=max_queued_requests,
        health_check_period_s=health_check_period_s,
    )
    return serve.deployment(ingress, **scaling).bind(options)


def app_builder(args: dict[str, Any]) -> Application:
    """The application of a Serve config file (``import_path:
    chattts.server.ray:app_builder``), from its ``args``: ``model_dir``, ``source``,
    ``verify``, ``device``, ``dtype``, ``quantize``, ``voices``, ``api_key``, ``max_batch``,
    ``batch_wait_ms``, ``max_queue``, ``max_new_token``, ``allowed_hosts`` (a list),
    ``threads``, and ``replicas``, ``autoscale`` (``"MIN:MAX"``), ``replica_cpus``,
    ``max_ongoing_requests``, ``max_queued_requests``. The config's ``deployments:`` section
    may override the scaling. ``api_key`` defaults to ``$CHATTTS_API_KEY``."""
    args = dict(args)
    if args.get("api_key") is None and os.environ.get(API_KEY_ENV):
        args["api_key"] = os.environ[API_KEY_ENV]
    model_dir = args.pop("model_dir", None)
    source = args.pop("source", None) or ("custom" if model_dir else "huggingface")
    engine = EngineOptions(dtype=args.pop("dtype", "float32"), quantize=args.pop("quantize", None))
    load = LoadOptions(
        source,
        model_dir,
        verify=bool(args.pop("verify", True)),
        device=args.pop("device", None),
        engine=engine,
    )
    scale = {}
    for key in ("replicas", "replica_cpus", "max_ongoing_requests", "max_queued_requests"):
        if args.get(key) is not None:
            scale[key] = args.pop(key)
        args.pop(key, None)
    if args.get("autoscale"):
        from ..cli.ray_args import autoscale_range

        scale["autoscale"] = autoscale_range(str(args.pop("autoscale")))
    args.pop("autoscale", None)
    own = {"allowed_hosts": tuple(args.pop("allowed_hosts", None) or ())}
    if "threads" in args:
        own["threads"] = args.pop("threads")
    try:
        options = ReplicaOptions(load=load, server=ServerOptions(**args), **own)
    except TypeError as e:
        raise UsageError(f"app_builder: unknown argument ({e})") from e
    return build_app(options, **scale)


def options_from_args(args: argparse.Namespace) -> tuple[ReplicaOptions, dict[str, Any]]:
    """The replica options and the deployment keywords of ``chattts serve --ray``."""
    from ..cli.args import load_options, server_options

    settings = server_options(args)
    options = ReplicaOptions(
        load=load_options(args), server=settings, allowed_hosts=(settings.host,)
    )
    scale = {
        "replicas": getattr(args, "replicas", None) or 1,
        "autoscale": getattr(args, "autoscale", None),
        "replica_cpus": getattr(args, "replica_cpus", 1.0),
        "max_ongoing_requests": getattr(args, "max_ongoing_requests", None),
    }
    return options, scale


def main(args: argparse.Namespace) -> int:
    """``chattts serve --ray``: start (or join) Ray, deploy the app, serve until Ctrl-C or
    SIGTERM, then drain the replicas and stop."""
    from ..cli.args import server_options

    ray, serve = _require_ray()
    options, scale = options_from_args(args)
    settings = server_options(args)
    host, port = settings.host, settings.port
    app = build_app(options, **scale)
    address = getattr(args, "ray_address", None)
    ray.init(address=address or None, include_dashboard=False, logging_level=logging.WARNING)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
        how = f"{scale['autoscale'][0]}-{scale['autoscale'][1]}" if scale["autoscale"] else None
        logger.info(
            "serving on http://%s:%d with %s replicas (Ray %s)",
            host,
            port,
            how or scale["replicas"],
            address or "local",
        )
        while not stop.wait(1.0):
            pass
        logger.info("stopping: draining the replicas")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        # replicas stop once their requests are answered (graceful_shutdown_timeout_s), with
        # the proxy still up to carry the answers; the cluster's other applications stay
        serve.delete(APP_NAME)
        if not address:
            serve.shutdown()
        ray.shutdown()
    return 0


__all__ = [
    "APP_NAME",
    "DEPLOYMENT_NAME",
    "INSTALL_HINT",
    "ReplicaOptions",
    "SpeechReplica",
    "app_builder",
    "build_app",
    "deployment_options",
    "main",
    "options_from_args",
]

"""Structured logging: JSON lines in a cluster, key=value lines in a terminal."""

from __future__ import annotations

import logging
import os
import sys

import structlog


def configure(json_output: bool | None = None, level: int = logging.INFO) -> None:
    """Routes structlog and the standard library (Kopf logs through it) to stderr."""
    if json_output is None:
        json_output = os.environ.get("ZDR_LOG_FORMAT", "") == "json" or not sys.stderr.isatty()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processor=renderer))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Kopf's per-object loggers are chatty at INFO; its warnings and errors still show.
    logging.getLogger("kopf").setLevel(logging.WARNING)


def get(name: str = "zdr") -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger

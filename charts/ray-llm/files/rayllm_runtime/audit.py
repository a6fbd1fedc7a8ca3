"""JSON audit lines on the ``rayllm.audit`` logger (one per /v1 request)."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Dict, Optional

AUDIT_LOGGER_NAME = "rayllm.audit"


def get_audit_logger() -> logging.Logger:
    logger = logging.getLogger(AUDIT_LOGGER_NAME)
    if not getattr(logger, "_rayllm_configured", False):
        # Own handler with the bare JSON line: log shippers parse it as-is.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
        logger.propagate = False
        # The marker lives on the Logger itself (not in this module), so a re-imported
        # module still sees it and never adds a second handler.
        setattr(logger, "_rayllm_configured", True)  # noqa: B010
    return logger


class AuditLog:
    def __init__(self, enabled: bool = True, include_prompts: bool = False):
        self.enabled = enabled
        self.include_prompts = include_prompts
        self.logger = get_audit_logger()

    def record(
        self,
        *,
        request_id: str,
        key_id: Optional[str],
        endpoint: str,
        model: Optional[str],
        status: int,
        latency_s: float,
        prompt_tokens: Optional[int] = None,
        completion_tokens: Optional[int] = None,
        prompt: Optional[str] = None,
        error_type: Optional[str] = None,
    ) -> Optional[Dict[str, Any]]:
        if not self.enabled:
            return None
        entry: Dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z",
            "request_id": request_id,
            "key_id": key_id,
            "endpoint": endpoint,
            "model": model,
            "status": status,
            "latency_ms": round(latency_s * 1000.0, 1),
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
        }
        if error_type:
            entry["error_type"] = error_type
        if self.include_prompts and prompt is not None:
            entry["prompt"] = prompt
        self.logger.info(json.dumps(entry, ensure_ascii=False))
        return entry

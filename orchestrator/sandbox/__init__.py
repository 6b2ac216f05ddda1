"""The built-in sandbox provider: one HTTP server speaking the Cordage and CodeWords wire
protocols, with workflows ``echo``, ``sleep``, ``flaky``, ``fail`` and ``files``, settable
rate limits, latency and faults, and an admin API under ``/_sandbox`` that counts what
clients did (duplicate starts, 429s sent, requests that came before a given retry_after).
"""

from orchestrator.sandbox.app import create_app
from orchestrator.sandbox.server import SandboxServer, serve
from orchestrator.sandbox.settings import RateLimits, SandboxSettings

__all__ = ["RateLimits", "SandboxServer", "SandboxSettings", "create_app", "serve"]

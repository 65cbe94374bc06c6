"""WeCom's latency for the benchmarks' fake WeCom: a fixed delay plus jitter before each answer.

The fake WeCom on loopback answers in about a millisecond; real WeCom answers in tens of milliseconds. A
benchmark given ``--wecom-latency 50ms±20ms`` wraps its fake in ``with_latency`` so that every API call waits
50 ms, give or take up to 20 ms (uniformly), before the fake answers. Only the API under ``/cgi-bin/`` waits:
the sandbox's own pages and controls (the benchmark reading its logs) answer at once. The product sandbox
itself never waits: this wrapper lives in bench/ only.
"""

from __future__ import annotations

import argparse
import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

_PART = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*$")


@dataclass(frozen=True)
class Latency:
    fixed: float = 0.0  # seconds
    jitter: float = 0.0  # seconds, either side of ``fixed``

    def __str__(self) -> str:
        if not self.fixed and not self.jitter:
            return "0 ms"
        text = f"{self.fixed * 1000:g} ms"
        return text + (f" ± {self.jitter * 1000:g}" if self.jitter else "")

    def draw(self, rng: random.Random) -> float:
        return max(0.0, self.fixed + (rng.uniform(-self.jitter, self.jitter) if self.jitter else 0.0))


def _seconds(text: str) -> float:
    found = _PART.match(text)
    if found is None:
        raise ValueError(text)
    value = float(found.group(1))
    return value / 1000 if (found.group(2) or "ms") == "ms" else value


def parse_latency(text: str) -> Latency:
    """``50ms±20ms``, ``50ms+-20ms``, ``50±20``, ``0.05s``, ``0``: milliseconds unless ``s`` is written."""
    parts = re.split(r"±|\+-|\+/-", text)
    if len(parts) > 2:
        raise argparse.ArgumentTypeError(f"latency {text!r}: write it as 50ms±20ms")
    try:
        fixed = _seconds(parts[0])
        jitter = _seconds(parts[1]) if len(parts) == 2 else 0.0
    except ValueError:
        raise argparse.ArgumentTypeError(f"latency {text!r}: write it as 50ms±20ms (or 50ms, 0.05s, 0)") from None
    if jitter > fixed:
        raise argparse.ArgumentTypeError(f"latency {text!r}: the jitter is larger than the delay")
    return Latency(fixed, jitter)


def latencies(values: list[str] | None, default: tuple[str, ...] = ("0", "50ms±20ms")) -> list[Latency]:
    """The latencies a benchmark runs at, in order (each --wecom-latency given, else the default pair)."""
    return [parse_latency(v) for v in (values or default)]


def add_latency_option(parser: argparse.ArgumentParser, default: tuple[str, ...] = ("0", "50ms±20ms")) -> None:
    parser.add_argument(
        "--wecom-latency",
        action="append",
        metavar="DELAY[±JITTER]",
        help=f"the fake WeCom waits this long before each API answer, e.g. 50ms±20ms; repeat it to run at several "
        f"(default: {' and '.join(default)})",
    )


def with_latency(app: Callable[..., Iterable[bytes]], latency: Latency, seed: int = 24) -> Callable[..., Any]:
    """The WSGI ``app`` answering each WeCom API call after ``latency`` (a sleep: each request of a threaded
    or gevent server waits on its own, as calls to WeCom do)."""
    if not latency.fixed and not latency.jitter:
        return app
    rng = random.Random(seed)

    def delayed(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").startswith("/cgi-bin/"):
            time.sleep(latency.draw(rng))
        return app(environ, start_response)

    return delayed

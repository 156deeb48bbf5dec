"""``python -m bench.prober URL [--rate R] [--seconds S] [--modes new,keepalive] [--websockets N] --json``

Probes ``URL`` (http://IP[:PORT][/PATH], IP in 127.0.0.1, 10.88.0.0/16 or 10.96.0.0/16) at R
requests/s per HTTP mode for S seconds plus N WebSocket clients on /ws, and prints one summary
line (JSON with ``--json``): per mode ``sent``, ``failed``, ``errors`` by kind, ``lag_ms``
p50/p99/max and the requests actually sent in each 1 s window; ``valid``. ``--out FILE`` appends
every record as a JSON line. ``python -m bench.prober summary FILE...`` summarizes such files.
Exit codes: 0 done (even when the run is invalid: ``valid`` says so), 2 refused target or bad
usage, 3 the prober itself failed (a record without an outcome, a client not accounted for).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from bench.prober.http import MODES, Mode
from bench.prober.records import read_jsonl, summarize
from bench.prober.run import run_cli
from bench.prober.target import MAX_DURATION, Target, UnsafeTarget


def _modes(text: str) -> list[Mode]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown mode(s) {', '.join(bad)}: choose from {', '.join(MODES)}")
    return [cast(Mode, m) for m in modes]


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench.prober", description=(__doc__ or "").split("\n\n")[1])
    ap.add_argument("url", help="http://IP[:PORT][/PATH]; IP in 127.0.0.1, 10.88.0.0/16 or 10.96.0.0/16")
    ap.add_argument("--rate", type=float, default=200.0, help="requests per second, per HTTP mode")
    ap.add_argument(
        "--seconds", type=float, default=30.0, help=f"run length (upper bound, at most {MAX_DURATION:.0f})"
    )
    ap.add_argument(
        "--modes", type=_modes, default=list(MODES), help="comma-separated: new,keepalive (empty: none)"
    )
    ap.add_argument("--websockets", type=int, default=0, help="WebSocket clients on /ws")
    ap.add_argument("--pool", type=int, default=16, help="kept-alive connections")
    ap.add_argument("--expect", default=None, help="comma-separated X-Version values that count as success")
    ap.add_argument("--out", type=Path, default=None, help="append every record to this JSON lines file")
    ap.add_argument("--epoch", type=float, default=None, help="time.monotonic() value of t=0 (shared axis)")
    ap.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["summary"]:
        print(summarize(read_jsonl(Path(p) for p in argv[1:])).line())
        return 0
    args = parser().parse_args(argv)
    try:
        target = Target.parse(args.url)
    except (UnsafeTarget, ValueError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    if not args.modes and not args.websockets:
        print("nothing to probe: give --modes and/or --websockets", file=sys.stderr)
        return 2
    expect = frozenset(v.strip() for v in args.expect.split(",") if v.strip()) if args.expect else None
    try:
        return run_cli(
            target.host,
            out=args.out,
            as_json=args.json,
            port=target.port,
            path=target.path,
            modes=args.modes,
            rate=args.rate,
            seconds=args.seconds,
            websockets=args.websockets,
            epoch=args.epoch,
            pool=args.pool,
            expect=expect,
        )
    except ValueError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Run a walk-forward backtest on the Ray cluster: a recorded one by id, or a stored strategy.

Locally:      python scripts/backtest.py 12
              python scripts/backtest.py --strategy trend-eurusd --folds 4 --start 2024-01-01
On a cluster: ray job submit --working-dir . -- python scripts/backtest.py 12

Prints progress lines and the backtest's final status; exits non-zero when it failed.
Ray is joined (``RAY_ADDRESS``, set by ``ray job submit``) or started only when
folds need computing; stored forecasts are reused.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("id", nargs="?", type=int, help="a recorded backtest's id")
    parser.add_argument("--strategy", help="record and run a backtest of this stored strategy")
    parser.add_argument("--start", type=datetime.fromisoformat, help="first decision bar (UTC)")
    parser.add_argument("--end", type=datetime.fromisoformat, help="last decision bar (UTC)")
    parser.add_argument("--folds", type=int, default=4, help="walk-forward folds per symbol")
    parser.add_argument("--costs", type=json.loads, default=None, help="costs as a JSON object")
    parser.add_argument("--max-steps", type=int, default=None, help="override NHITS max steps")
    parser.add_argument("--json", default=None, help="write the final record here")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    if (args.id is None) == (args.strategy is None):
        print("error: give a backtest id or --strategy NAME (one of them)", file=sys.stderr)
        return 2

    from kitrade.config import load_settings
    from kitrade.data.store import open_store
    from kitrade.errors import KitradeError
    from kitrade.services.backtests import create_backtest, get_backtest, run_backtest

    def show(fraction: float, message: str) -> None:
        print(f"[{fraction * 100:5.1f} %] {message}", flush=True)

    try:
        settings = load_settings()
        db = open_store(settings)
        try:
            backtest_id = args.id
            if backtest_id is None:
                overrides = {"max_steps": args.max_steps} if args.max_steps else None
                backtest_id = create_backtest(
                    db,
                    strategy=args.strategy,
                    start=args.start,
                    end=args.end,
                    n_folds=args.folds,
                    costs=args.costs,
                    model_overrides=overrides,
                ).id
                print(f"backtest {backtest_id} recorded", flush=True)
            try:
                record = run_backtest(settings, db, backtest_id, progress=show)
            except KitradeError:
                record = get_backtest(db, backtest_id=backtest_id)
        finally:
            db.close()
    except KitradeError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    print(f"backtest {record.id}: {record.status}" + (f" ({record.error})" if record.error else ""))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(record.model_dump(mode="json"), fh, indent=2)
    return 0 if record.status == "done" else 6


if __name__ == "__main__":
    sys.exit(main())

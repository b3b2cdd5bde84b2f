"""Ray Tune sweep (ASHA) over the NHITS search space for one symbol; optionally train the best.

Locally:      python scripts/tune_sweep.py EURUSD --samples 8 --train-best
On a cluster: ray job submit --working-dir . -- python scripts/tune_sweep.py EURUSD --train-best
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("symbol")
    parser.add_argument("--samples", type=int, default=8, help="trials")
    parser.add_argument("--max-steps", type=int, default=None, help="cap NHITS steps per trial")
    parser.add_argument("--max-concurrent", type=int, default=None)
    parser.add_argument(
        "--train-best",
        action="store_true",
        help="train the best configuration through the promotion gate",
    )
    parser.add_argument(
        "--objective",
        choices=("val_loss", "interval_score"),
        default="val_loss",
        help="pick the best trial by validation loss, or by calibrated bands' interval score "
        "relative to the random walk's on the rolling-origin evaluation",
    )
    parser.add_argument("--json", default=None, help="write the sweep result here")
    args = parser.parse_args(argv)

    # imported after argument parsing so `--help` answers without loading ray/psycopg
    from kitrade.cluster import connect
    from kitrade.config import load_settings
    from kitrade.errors import KitradeError
    from kitrade.services import training

    try:
        settings = load_settings()
        training.prepare(settings)
        connect()
        result = training.sweep(
            settings,
            args.symbol,
            samples=args.samples,
            max_steps=args.max_steps,
            max_concurrent=args.max_concurrent,
            objective=args.objective,
        )
        print(
            f"sweep {result.sweep_id}: {result.trials} trials, best val loss {result.best_val_loss}"
            + (
                ""
                if result.best_interval_score is None
                else f", best interval score {result.best_interval_score:.3f} of the random walk's"
            )
        )
        print(f"best config: {json.dumps(result.best_config)}")
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(result.model_dump(mode="json"), fh, indent=2)
        if args.train_best:
            report = training.train_best(settings, result, max_steps=args.max_steps)
            r = report.results[0]
            print(f"trained {r.version}: {'promoted' if r.promoted else 'rejected'} ({r.reason})")
    except KitradeError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Train every active symbol (or the given ones) on the Ray cluster.

Locally:      python scripts/train_all.py [--force] [SYMBOL ...]
On a cluster: ray job submit --working-dir . -- python scripts/train_all.py --force

Prints one line per symbol and exits non-zero when any symbol failed.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("symbols", nargs="*", help="symbols (default: all active)")
    parser.add_argument("--force", action="store_true", help="retrain fresh models too")
    parser.add_argument("--max-steps", type=int, default=None, help="override NHITS max steps")
    parser.add_argument("--json", default=None, help="write the report here")
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
        report = training.train(
            settings,
            args.symbols or None,
            force=args.force,
            max_steps=args.max_steps,
            trigger="job",
        )
    except KitradeError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    for r in report.results:
        rmae = (r.metrics.get("model") or {}).get("rmae")
        verdict = r.metrics.get("verdict") or "-"
        extra = r.error or r.reason or ""
        print(
            f"{r.symbol:<10} {r.status:<8} {r.version or '-':<32} "
            f"rMAE={'-' if rmae is None else f'{rmae:.3f}'} ({verdict})  {extra}"
        )
    print(f"run {report.run_id}: {report.status} in {report.seconds:.1f}s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report.model_dump(mode="json"), fh, indent=2)
    return 0 if report.status == "done" else 6


if __name__ == "__main__":
    sys.exit(main())

"""Hash-partition a query log by client into a folder of Parquet files.

Streams LOG (CSV, JSON lines, a JSON array or Parquet) in chunks and writes
DIR/part-00000.parquet, ... plus DIR/_partitions.json. All rows of a client land in one file,
in their original order; the partition of a client is blake2b-64(utf-8 client id) mod N, stable
across machines and runs. `extraction-monitor analyze DIR ...` then analyzes partition by
partition (docs/scaling.md); give it the same --client-column.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from monitor.cli import CommandError
from monitor.logs import LogError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("log", type=Path, metavar="LOG",
                        help="query log (CSV/JSON lines/JSON array/Parquet)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="folder to write (must be new or empty)")
    parser.add_argument("--partitions", type=int, default=None, metavar="N",
                        help="number of partitions (default: about 125k rows each)")
    from monitor.logs import CLIENT_COLUMN

    parser.add_argument("--client-column", default=CLIENT_COLUMN, metavar="COLUMN",
                        help="column saying who sent each query (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from monitor.partition import partition_log
    from monitor.progress import Progress

    if args.partitions is not None and args.partitions < 1:
        raise CommandError(f"--partitions must be at least 1, got {args.partitions}")
    try:
        with Progress("partitioning", unit="rows") as bar:
            result = partition_log(args.log, args.out, args.partitions,
                                   client_column=args.client_column, on_progress=bar)
    except LogError as exc:
        raise CommandError(str(exc)) from exc
    print(f"partitioned {result.n_rows} rows into {len(result.files)} files "
          f"({result.n_partitions} partitions) in {result.out_dir}")
    return 0

"""The command line's peak memory on a large Parquet file: write one (a list column of float32
logits, labels, a group column), score it with ``fairloss score`` in a child process, and print
the child's peak resident memory beside the size of the predictions it must hold.

    .venv/bin/python scripts/parquet_memory.py            # 1 GB: 2,684,355 rows x 100 classes
    .venv/bin/python scripts/parquet_memory.py --rows 200000 --classes 50
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

GIB = 1 << 30
ROW_GROUP = 131_072


def write(path: Path, rows: int, classes: int) -> None:
    """Row groups of random logits written one at a time, so this process stays small too."""
    rng = np.random.default_rng(0)
    schema = pa.schema(
        [
            ("logits", pa.list_(pa.float32(), classes)),
            ("labels", pa.int64()),
            ("site", pa.string()),
        ]
    )
    with pq.ParquetWriter(path, schema, compression="none") as writer:
        for start in range(0, rows, ROW_GROUP):
            n = min(ROW_GROUP, rows - start)
            logits = rng.standard_normal((n, classes), dtype=np.float32)
            labels = rng.integers(0, classes, n)
            flat = pa.array(logits.reshape(-1))
            column = pa.FixedSizeListArray.from_arrays(flat, classes)
            site = pa.array(np.where(labels % 3 == 0, "a", "b"))
            writer.write_table(pa.table([column, pa.array(labels), site], schema=schema))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=GIB // 400)
    parser.add_argument("--classes", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "dump.parquet"
        write(path, args.rows, args.classes)
        size = path.stat().st_size
        command = [sys.executable, "-m", "fairloss_client.cli", "score", str(path)]
        command += ["--groups", "site", "--no-progress"]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
        if done.returncode:
            sys.exit(f"fairloss score failed: {done.stderr}")
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
        held = args.rows * args.classes * 4
        print(f"file: {size / GIB:.2f} GiB, {args.rows:,} rows x {args.classes} float32 logits")
        print(f"predictions held: {held / GIB:.2f} GiB")
        print(f"peak RSS of `fairloss score` (in process, --groups site): {peak / GIB:.2f} GiB")
        print(f"peak RSS over predictions held: {(peak - held) / GIB:.2f} GiB, in {seconds:.0f} s")


if __name__ == "__main__":
    main()

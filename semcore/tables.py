"""Parquet output: buffered into large row groups, written under a temporary name, renamed at the end;
vectors and images as Arrow columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from semcore.files import atomic
from semcore.shards import png_bytes


def vectors(matrix: np.ndarray) -> pa.FixedSizeListArray:
    """Rows of a float matrix [N, C] as a fixed_size_list<float32>[C] column."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])


def as_uint8(images) -> np.ndarray:
    """A torch tensor of images [R, C, H, W] in [0, 1] → [R, H, W, C] uint8."""
    return (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def to_arrow(table: pd.DataFrame, images: np.ndarray) -> pa.Table:
    """A table with a `phi` column of vectors, and one uint8 image [H, W, C] per row: φ as
    fixed_size_list<float32>, each image as PNG bytes (column `png`)."""
    arrow = pa.Table.from_pandas(table.drop(columns=["phi"]), preserve_index=False)
    arrow = arrow.append_column("phi", vectors(np.stack(table.phi)))
    return arrow.append_column("png", pa.array([png_bytes(image) for image in images], pa.binary()))


class ParquetSink:
    """Appends tables; one row group per `rows_per_group` rows, not per call. Use as a context manager:
    the file appears under its name only when closed without an error."""

    def __init__(self, path: str | Path, schema: pa.Schema, rows_per_group: int = 65_536):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.output = atomic(path)
        self.tmp = self.output.__enter__()
        self.writer = pq.ParquetWriter(self.tmp, schema)
        self.schema, self.rows_per_group, self.buffer, self.buffered = schema, rows_per_group, [], 0

    def write(self, table: pa.Table) -> None:
        self.buffer.append(table)
        self.buffered += len(table)
        if self.buffered >= self.rows_per_group:
            self._flush()

    def write_apart(self, table: pa.Table) -> None:
        """Writes `table` now, in row groups of its own: none holds rows of another call (e.g. φ's σ)."""
        self._flush()
        self.writer.write_table(table.cast(self.schema), row_group_size=self.rows_per_group)

    def _flush(self) -> None:
        if self.buffer:
            self.writer.write_table(pa.concat_tables(self.buffer).cast(self.schema), row_group_size=self.rows_per_group)
            self.buffer, self.buffered = [], 0

    def __enter__(self) -> "ParquetSink":
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        if error_type is None:
            self._flush()
        self.writer.close()
        self.output.__exit__(error_type, error, traceback)

"""Parquet output: every table's Arrow schema (φ and block means: semcore.phi), types that never depend on
what a run holds; the writer that casts a table to its schema; buffered sinks for large tables. Files are
written under a temporary name, renamed at the end; vectors and images are Arrow columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from semcore.files import atomic
from semcore.images import png_bytes

STRING, INT, FLOAT, DOUBLE, BOOL = pa.string(), pa.int64(), pa.float32(), pa.float64(), pa.bool_()

MANIFEST = pa.schema([("key", STRING), ("origin", STRING), ("label", INT), ("label_name", STRING), ("source", STRING),
                      ("split", STRING), ("shard", STRING), ("status", STRING), ("reason", STRING),
                      ("factors", STRING), ("transforms", STRING), ("duplicate_of", STRING)])
BLOCK_PR = pa.schema([("key", STRING), ("block", STRING), ("pr", DOUBLE)])
STABILITY = pa.schema([("key", STRING), ("block", STRING), ("sigma", DOUBLE), ("cosine", FLOAT)])
BLOCK_SEMANTICS = pa.schema([("block", STRING), ("block_index", INT), ("sigma", DOUBLE), ("target", STRING),
                             ("score", STRING), ("value", DOUBLE), ("n_images", INT), ("k", INT), ("folds", INT)])
CHANNELS = pa.schema([("channel", INT), ("pr", DOUBLE), ("mean", DOUBLE), ("active_fraction", DOUBLE), ("dead", BOOL),
                      ("selective", BOOL)])
FACTOR_MUTUAL_INFORMATION = pa.schema([("factor", STRING), ("channel", INT), ("mutual_information", DOUBLE)])
SUBSPACE_GROUPS = pa.schema([("group", INT), ("size", INT), ("dimension", INT), ("pr_dimension", DOUBLE),
                             ("fit_size", INT), ("fit_dimension", INT), ("channels", STRING), ("kind", STRING)])
SUBSPACE_PAIRS = pa.schema([("group_a", INT), ("group_b", INT), ("min_angle", DOUBLE), ("mean_angle", DOUBLE),
                            ("kind", STRING)])
SUBSPACE_HELDOUT = pa.schema([("kind", STRING), ("group", INT), ("key", STRING), ("own_residual", DOUBLE),
                              ("other_residual", DOUBLE)])
ASSIGNMENTS = pa.schema([("key", STRING), ("split", STRING), ("label", INT), ("cluster", INT), ("distance", FLOAT)])
NEIGHBOURS = pa.schema([("query", STRING), ("space", STRING), ("rank", INT), ("neighbour", STRING),
                        ("distance", FLOAT), ("same_label", BOOL)])
EMBEDDING = pa.schema([("key", STRING), ("pca_x", FLOAT), ("pca_y", FLOAT), ("tsne_x", FLOAT), ("tsne_y", FLOAT)])
NEIGHBOUR_GRAPH = pa.schema([("key", STRING), ("rank", INT), ("neighbour", STRING), ("distance", FLOAT)])
PROBE_PREDICTIONS = pa.schema([("target", STRING), ("key", STRING), ("correct", BOOL)])
PROBE_ACCURACY = pa.schema([("features", STRING), ("target", STRING), ("metric", STRING), ("value", DOUBLE)])
SEMANTIC_SCORES = pa.schema([("features", STRING), ("representation", STRING), ("sigma", DOUBLE), ("method", STRING),
                             ("k", INT), ("target", STRING), ("metric", STRING), ("value", DOUBLE)])
EMERGENCE = pa.schema([("step", INT), ("method", STRING), ("sigma", DOUBLE), ("k", INT), ("target", STRING),
                       ("metric", STRING), ("value", DOUBLE)])
GIST_ACCURACY = pa.schema([("head", STRING), ("n", INT), ("classes", INT), ("accuracy", DOUBLE),
                           ("accuracy_low", DOUBLE), ("accuracy_high", DOUBLE), ("chance", DOUBLE),
                           ("above_chance", BOOL)])
GIST_AGREEMENT = pa.schema([("target", INT), ("key", STRING), ("head", STRING), ("measure", STRING),
                            ("value", DOUBLE), ("n", INT), ("n_failed", INT)])
GIST_QUALITY = pa.schema([("set", STRING), ("n", INT), ("n_real", INT), ("subsets", INT), ("kid", DOUBLE),
                          ("kid_std", DOUBLE), ("n_failed", INT)])
FINDINGS = pa.schema([("claim", STRING), ("measure", STRING), ("unit", STRING), ("n", INT), ("value", DOUBLE),
                      ("value_low", DOUBLE), ("value_high", DOUBLE), ("baseline", STRING), ("baseline_value", DOUBLE),
                      ("baseline_low", DOUBLE), ("baseline_high", DOUBLE), ("difference", DOUBLE),
                      ("difference_low", DOUBLE), ("difference_high", DOUBLE), ("verdict", STRING),
                      ("interval", STRING), ("note", STRING)])


def centroids_schema(dimensions: int) -> pa.Schema:
    return pa.schema([("cluster", pa.int32()), ("size", INT), ("centroid", pa.list_(FLOAT, dimensions))])


def samples_schema(channels: int) -> pa.Schema:
    """A batch of samples and all of them: scores, the sampler's schedule, φ [channels], the image."""
    return pa.schema([("method", STRING), ("algorithm", STRING), ("target", INT), ("key", STRING), ("sample_id", INT),
                      ("phi_error", FLOAT), ("pixel_distance", FLOAT), ("diversity", FLOAT), ("score_sigma", DOUBLE),
                      ("nn_key", STRING), ("nn_phi_distance", FLOAT), ("nn_sigma", DOUBLE), ("steps", INT),
                      ("matching_steps", INT), ("reached_sigma_final", BOOL), ("failed", BOOL), ("failure", STRING),
                      ("final_sigma", DOUBLE), ("schedule_sigma", pa.list_(DOUBLE)),
                      ("schedule_phi_error", pa.list_(DOUBLE)), ("top_k", INT), ("phi", pa.list_(FLOAT, channels)),
                      ("png", pa.binary())])


def cluster_samples_schema(channels: int) -> pa.Schema:
    """Samples toward k-means centroids: the clustering (features, k), the cluster and its size, the scores
    against its centroid (as samples_schema's), the cluster whose centroid is nearest the sample's φ; φ and
    the image."""
    return pa.schema([("features", STRING), ("k", INT), ("cluster", INT), ("cluster_size", INT), ("sample_id", INT),
                      ("algorithm", STRING), ("phi_error", FLOAT), ("nearest_cluster", INT), ("diversity", FLOAT),
                      ("score_sigma", DOUBLE), ("nn_key", STRING), ("nn_phi_distance", FLOAT), ("nn_sigma", DOUBLE),
                      ("steps", INT), ("matching_steps", INT), ("reached_sigma_final", BOOL), ("failed", BOOL),
                      ("failure", STRING), ("final_sigma", DOUBLE), ("schedule_sigma", pa.list_(DOUBLE)),
                      ("schedule_phi_error", pa.list_(DOUBLE)), ("top_k", INT), ("phi", pa.list_(FLOAT, channels)),
                      ("png", pa.binary())])


class SchemaMismatch(ValueError):
    """A table whose columns do not fit its schema."""


def fit_schema(table: pd.DataFrame | pa.Table, schema: pa.Schema, name: str) -> pa.Table:
    """`table` as an Arrow table of exactly `schema`: its columns in the schema's order, each cast to the
    schema's type (an all-null column too); a missing or extra column, or a value that does not fit, raises
    SchemaMismatch naming the table (`name`) and the column."""
    columns = list(table.columns) if isinstance(table, pd.DataFrame) else table.column_names
    missing, extra = [c for c in schema.names if c not in columns], [c for c in columns if c not in schema.names]
    if missing or extra:
        raise SchemaMismatch(f"{name}: missing column(s) {missing}, extra column(s) {extra}; its schema has "
                             f"{schema.names}")
    if isinstance(table, pd.DataFrame):
        try:
            table = pa.Table.from_pandas(table[schema.names], preserve_index=False)  # as pandas' to_parquet does
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:  # pyarrow's message names the column
            raise SchemaMismatch(f"{name}: {error}") from None
    fitted = []
    for field in schema:
        column = table.column(field.name)
        try:
            fitted.append(column.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as error:
            raise SchemaMismatch(f"{name}: column {field.name!r} ({column.type}) does not fit {field.type}: "
                                 f"{error}") from None
    return pa.Table.from_arrays(fitted, schema=schema.with_metadata((table.schema.metadata or {}) |
                                                                   (schema.metadata or {})))


def write_table(table: pd.DataFrame | pa.Table, path: str | Path, schema: pa.Schema) -> None:
    """`table` cast to `schema` (fit_schema) to Parquet: under a temporary name, then renamed, so that a
    reader never sees half a file."""
    fitted = fit_schema(table, schema, str(path))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic(path) as tmp:
        pq.write_table(fitted, tmp)


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

"""Every table the workflow writes has one Arrow schema, whatever a run holds: the tiny run's tables (no
input skipped, no top_k, no subspace group) concatenate with another run's (skips, top_k, groups) and with
tables of a run where no column has a value, in pyarrow, polars and DuckDB, without a cast."""
from fnmatch import fnmatch
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from semcore import shards, subspaces, tables
from semcore.phi import block_means_schema, phi_schema
from semcore.sources import folder

# Relative path in a run's results (`*` matches across folders) → its schema, or a function of its vectors' width.
SCHEMAS = {
    "manifest.parquet": tables.MANIFEST,
    "phi/*.parquet": lambda width: phi_schema(width, {}),
    "phi_snapshots/*/*.parquet": lambda width: phi_schema(width, {}),
    "block_means.parquet": block_means_schema({}),
    "stats/block_pr.parquet": tables.BLOCK_PR,
    "stats/stability.parquet": tables.STABILITY,
    "stats/block_semantics.parquet": tables.BLOCK_SEMANTICS,
    "stats/channels.parquet": tables.CHANNELS,
    "stats/factor_mutual_information.parquet": tables.FACTOR_MUTUAL_INFORMATION,
    "stats/subspace_groups.parquet": tables.SUBSPACE_GROUPS,
    "stats/subspace_pairs.parquet": tables.SUBSPACE_PAIRS,
    "stats/subspace_heldout.parquet": tables.SUBSPACE_HELDOUT,
    "clusters/*/k*/assignments.parquet": tables.ASSIGNMENTS,
    "clusters/*/k*/centroids.parquet": tables.centroids_schema,
    "clusters/neighbours.parquet": tables.NEIGHBOURS,
    "clusters/*/probe.parquet": tables.PROBE_ACCURACY,
    "clusters/*/probe_predictions.parquet": tables.PROBE_PREDICTIONS,
    "clusters/semantic_scores.parquet": tables.SEMANTIC_SCORES,
    "emergence/*.parquet": tables.EMERGENCE,
    "findings.parquet": tables.FINDINGS,
    "gist/classifier_accuracy.parquet": tables.GIST_ACCURACY,
    "gist/agreement.parquet": tables.GIST_AGREEMENT,
    "gist/quality.parquet": tables.GIST_QUALITY,
    "samples/samples.parquet": tables.samples_schema,
    "samples/*/batch-*.parquet": tables.samples_schema,
    "samples/clusters.parquet": tables.cluster_samples_schema,
    "explorer/embedding.parquet": tables.EMBEDDING,
    "explorer/neighbours/*.parquet": tables.NEIGHBOUR_GRAPH,
}
VECTORS = ("phi", "centroid")


def schema_of(relative: str, path: Path) -> pa.Schema:
    matches = [schema for pattern, schema in SCHEMAS.items() if fnmatch(relative, pattern)]
    assert len(matches) == 1, f"{relative}: no schema in SCHEMAS (or several)"
    if isinstance(matches[0], pa.Schema):
        return matches[0]
    written = pq.read_schema(path)
    return matches[0](next(written.field(n).type.list_size for n in VECTORS if n in written.names))


def manifest_with_skips(tmp_path: Path) -> Path:
    """A folder source's manifest: a duplicate, an unreadable file, one too small, one with alpha."""
    images = tmp_path / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), np.uint8)).save(images / f"noise{i:02d}.png")
    (images / "copy.png").write_bytes((images / "noise00.png").read_bytes())
    (images / "broken.png").write_bytes(b"not an image")
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), np.uint8)).save(images / "small.png")
    Image.fromarray(rng.integers(0, 256, (20, 20, 4), np.uint8)).save(images / "alpha.png")
    manifest = shards.write_shards(folder(str(images)), tmp_path / "shards", source="folder", size=16, channels=3,
                                   min_size=16, test_fraction=0.25, seed=0, samples_per_shard=8)
    assert manifest.reason.notna().any() and manifest.duplicate_of.notna().any() and manifest.transforms.notna().any()
    tables.write_table(manifest, tmp_path / "manifest.parquet", tables.MANIFEST)
    return tmp_path / "manifest.parquet"


def subspace_tables(tmp_path: Path) -> dict[str, Path]:
    """The union-of-subspaces tables of φ whose images fall in four groups (the tiny run's have none)."""
    rng = np.random.default_rng(0)
    phi = rng.random((80, 8)).astype(np.float32)
    phi[:, :4] = 0
    phi[np.arange(80), np.arange(80) % 4] = 1 + rng.random(80)
    found = subspaces.union_of_subspaces(phi, np.arange(8) < 4, 0.5, 3, 0.9, keys=np.array([f"k{i}" for i in range(80)]))
    paths = {}
    for name, table, schema in zip(("groups", "pairs", "heldout"), found,
                                   (tables.SUBSPACE_GROUPS, tables.SUBSPACE_PAIRS, tables.SUBSPACE_HELDOUT)):
        assert len(table)
        paths[f"stats/subspace_{name}.parquet"] = tmp_path / f"subspace_{name}.parquet"
        tables.write_table(table, paths[f"stats/subspace_{name}.parquet"], schema)
    return paths


def samples_with_top_k(relative: str, path: Path, out: Path) -> Path:
    table = pq.read_table(path)
    assert table.column("top_k").null_count == len(table)  # the tiny run keeps every channel
    table = table.set_column(table.schema.get_field_index("top_k"), "top_k", pa.array([4] * len(table)))
    tables.write_table(table, out, schema_of(relative, path))
    return out


def assert_concatenate(a: Path, b: Path, schema: pa.Schema) -> None:
    arrow = pa.concat_tables([pq.read_table(a), pq.read_table(b)])  # no promotion
    assert arrow.schema.remove_metadata().equals(schema.remove_metadata()), f"{a} + {b}: {arrow.schema}"

    frame = pl.concat([pl.read_parquet(a), pl.read_parquet(b)])  # strict: equal dtypes
    assert frame.schema == pl.from_arrow(schema.empty_table()).schema, f"{a} + {b}: {frame.schema}"

    def types(sql: str) -> list[str]:
        return [str(t) for t in duckdb.sql(sql).types]

    each = [types(f"SELECT * FROM read_parquet('{path}')") for path in (a, b)]
    union = types(f"SELECT * FROM read_parquet('{a}') UNION ALL BY NAME SELECT * FROM read_parquet('{b}')")
    assert each[0] == each[1] == union, f"{a} + {b}: {each} → {union}"
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet(['{a}', '{b}'])").fetchall() == [(len(frame),)]


def test_two_runs_tables_concatenate_without_casts(finished_run, tmp_path):
    results = finished_run / "results" / "tiny"
    run = {path.relative_to(results).as_posix(): path for path in sorted(results.rglob("*.parquet"))}
    assert len(run) > 30
    other = {"manifest.parquet": manifest_with_skips(tmp_path / "folder"), **subspace_tables(tmp_path)}
    for relative in [r for r in run if r.startswith("samples/")]:
        other[relative] = samples_with_top_k(relative, run[relative], tmp_path / relative.replace("/", "-"))

    for relative, path in run.items():
        schema = schema_of(relative, path)
        assert pq.read_schema(path).remove_metadata().equals(schema.remove_metadata()), relative
        empty = tmp_path / "empty" / relative  # a run where this table's columns have no value
        if not relative.startswith("phi") and "block_means" not in relative:  # written by their own sinks
            tables.write_table(pd.DataFrame({name: [None] * 2 for name in schema.names}), empty, schema)
            assert_concatenate(path, empty, schema)
        if relative in other:
            assert_concatenate(path, other[relative], schema)


def test_a_table_that_does_not_fit_its_schema_is_refused_naming_the_column(tmp_path):
    frame = pd.DataFrame({"key": ["a"], "block": ["M"], "pr": [0.5]})
    path = tmp_path / "block_pr.parquet"
    with pytest.raises(tables.SchemaMismatch, match=r"block_pr.parquet: missing column\(s\) \['pr'\], extra "
                                                      r"column\(s\) \['participation'\]"):
        tables.write_table(frame.rename(columns={"pr": "participation"}), path, tables.BLOCK_PR)
    with pytest.raises(tables.SchemaMismatch, match="block_pr.parquet: column 'pr' .* does not fit double"):
        tables.write_table(frame.assign(pr="half"), path, tables.BLOCK_PR)
    assert not path.exists()
    tables.write_table(frame[["pr", "block", "key"]], path, tables.BLOCK_PR)
    assert pq.read_schema(path).names == ["key", "block", "pr"]

"""The names that paths and wildcards are made of, built and parsed here alone.

- Feature sets, the representations the semantic scores compare: "phi-s0.1" (the trained network's φ at
  σ = 0.1), "untrained-s0.1" (φ of the same architecture at its initial weights: what training added) and
  "pixels" (the raw image as a vector).
- Chunks, the shards one φ job reads: consecutive shards of one split, named by the first and the last
  ("train-000000-000007" holds train-000000.tar … train-000007.tar).
- Snapshots, the weights training keeps at a step: "step-000500.pt".
- Report categories, the analyses in their order: "03 Sparsity" (a run's report and a study's).
"""

from __future__ import annotations

FEATURE_KINDS = ("phi", "untrained", "pixels")


def feature_set_names(sigmas: list[float]) -> list[str]:
    return [f"{kind}-s{sigma:g}" for kind in FEATURE_KINDS[:2] for sigma in sigmas] + ["pixels"]


def parse_feature_set(name: str) -> tuple[str, float | None]:
    """"phi-s0.1" → ("phi", 0.1); "pixels" → ("pixels", None)."""
    kind, _, sigma = name.partition("-s")
    if kind not in FEATURE_KINDS or (kind == "pixels") != (sigma == ""):
        raise ValueError(f"unknown feature set {name!r}: expected one of {FEATURE_KINDS}, with -s<σ> for φ")
    return kind, float(sigma) if sigma else None


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}"


def chunks(shard_names: list[str], shards_per_job: int) -> list[str]:
    """The chunks of these shards (names without .tar), shards_per_job consecutive shards of a split each."""
    indices: dict[str, list[int]] = {}
    for name in sorted(shard_names):
        split, index = name.rsplit("-", 1)
        indices.setdefault(split, []).append(int(index))
    return sorted(f"{shard_name(split, found[i])}-{found[min(i + shards_per_job, len(found)) - 1]:06d}"
                  for split, found in indices.items() for i in range(0, len(found), shards_per_job))


def chunk_shards(chunk: str) -> list[str]:
    """The shards (names without .tar) of a chunk."""
    split, first, last = chunk.rsplit("-", 2)
    return [shard_name(split, index) for index in range(int(first), int(last) + 1)]


def snapshot_name(step: int) -> str:
    """The file of the weights train keeps at `step` (model/snapshots/)."""
    return f"step-{step:06d}.pt"


# The report's categories, in the order of the analysis.
REPORT_CATEGORIES = ("Data", "Training", "Sparsity", "Stability", "Selectivity", "Subspaces", "Semantics", "Emergence",
                     "Sampling", "Findings", "Explorer")


def report_category(name: str) -> str:
    """The report lists its categories alphabetically: numbered ("03 Sparsity"), they keep this order."""
    return f"{REPORT_CATEGORIES.index(name) + 1:02d} {name}"

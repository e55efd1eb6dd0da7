"""The findings are read off the tables: each claim's verdict follows its numbers, both ways."""
import numpy as np
import pandas as pd

from semcore import findings


def test_the_middle_block_must_beat_every_other_block():
    block_pr = pd.DataFrame({"block": ["E1", "E1", "M", "M", "D2"], "pr": [0.5, 0.7, 0.2, 0.4, 0.35]})
    row = findings.sparsity(block_pr)
    assert abs(row["value"] - 0.3) < 1e-12 and row["baseline_value"] == 0.35  # M's mean against D2's
    assert row["holds"] and "D2" in row["baseline"]
    assert not findings.sparsity(block_pr.replace({"pr": {0.35: 0.1}}))["holds"]
    stability = pd.DataFrame({"block": ["E1", "M"], "cosine": [0.99, 0.98]})
    assert not findings.stability(stability)["holds"]


def test_the_gist_holds_only_beyond_two_standard_errors():
    def agreement(guided, unconditional, n):
        return pd.DataFrame([dict(target=t, head="background", measure=m, value=v, n=n)
                             for t in range(8) for m, v in (("guided", guided), ("unconditional", unconditional))])
    # 32 samples each: 0.41 against 0.38 is noise; 0.88 against 0.47 is not.
    assert not findings.gist(agreement(0.40625, 0.375, 4))[0]["holds"]
    clear = findings.gist(agreement(0.875, 0.46875, 4))[0]
    assert clear["holds"] and clear["value"] == 0.875 and clear["baseline_value"] == 0.46875


def test_an_empty_subspace_table_does_not_hold_and_says_why():
    row = findings.union_of_subspaces(pd.DataFrame(columns=["kind", "dimension"]))
    assert not row["holds"] and "no group" in row["measure"]


def test_undefined_values_are_left_out_of_the_means_and_counted():
    block_pr = pd.DataFrame({"block": ["E1", "E1", "M", "M", "M"], "pr": [0.5, np.nan, 0.2, np.nan, np.nan]})
    row = findings.sparsity(block_pr)
    assert row["value"] == 0.2 and row["measure"].endswith("(M), 2 of 3 undefined (zero ā) left out") and row["holds"]
    assert row["baseline"] == "lowest other block (E1, 1 of 2 undefined (zero ā) left out)"
    # No other block with a defined value: no baseline, and the claim does not hold.
    row = findings.stability(pd.DataFrame({"block": ["E1", "M"], "cosine": [np.nan, 0.9]}))
    assert row["baseline"] == "most stable other block (none with a defined value)"
    assert np.isnan(row["baseline_value"]) and not row["holds"]

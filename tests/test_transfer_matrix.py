"""benchmarks/transfer_matrix.py's report: entries relative to the mean diagonal, and each row's mean
(what the `eval` score pays a domain), against values computed by hand."""

from __future__ import annotations

from benchmarks.transfer_matrix import report


def test_report_scales_by_the_mean_diagonal_by_hand():
    """Domains a, b evaluated, c a decoy. Diagonal M[a, a] = 2, M[b, b] = 6: scale 4. Row a (2, 2)
    -> 0.50 0.50, mean 0.50; row b (0, 6) -> 0.00 1.50, mean 0.75; row c (-4, 0) -> -1.00 0.00,
    mean -0.50; the standard errors scale the same way (0.4 / 4 = 0.10)."""
    result = {
        "domains": ["a", "b", "c"],
        "evaluated": ["a", "b"],
        "matrix": [[2.0, 2.0], [0.0, 6.0], [-4.0, 0.0]],
        "row_mean_se": [0.4, 0.4, 0.8],
    }
    lines = report(result).splitlines()
    assert lines[0] == "| trained on \\ evaluated | a | b | row mean ± se |"
    assert lines[2] == "| `a` | 0.50 | 0.50 | **0.50** ± 0.10 |"
    assert lines[3] == "| `b` | 0.00 | 1.50 | **0.75** ± 0.10 |"
    assert lines[4] == "| `c` | -1.00 | 0.00 | **-0.50** ± 0.20 |"

"""benchmarks/gap.py, the share of the gap to the known answer a method closes, against values
computed by hand from two made-up comparison summaries."""

from __future__ import annotations

import json

from benchmarks import gap


def run(method: str, seed: int, curve: list[float], run_dir: str = "") -> dict:
    return {
        "method": method,
        "seed": seed,
        "final_val_ppl": {"average": curve[-1]},
        "eval_steps": [40, 80, 120],
        "average_val_ppl": curve,
        "run_dir": run_dir,
    }


def test_gap_closed_steps_ratio_and_decoy_weight_by_hand(tmp_path, capsys):
    """uniform 120 -> 100 (reaches its final 100 at step 120); the method 115 -> 100 -> 94
    (reaches 100 at step 80: ratio 80 / 120 = 0.67); the known answer 90: the method closes
    (100 - 94) / (100 - 90) = 60% of the gap. Its steps.csv has decoy weights 0.2 and 0.4 over
    two steps: 0.300 on the decoys over the run."""
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "steps.csv").write_text(
        "step,weight/noise1,weight/real\n1,0.2,0.8\n2,0.4,0.6\n"
    )
    first = {"runs": {"a": run("uniform", 0, [120, 110, 100]), "b": run("file", 0, [110, 95, 90])}}
    later = {"runs": {"c": run("acodm", 0, [115, 100, 94], str(tmp_path / "m"))}}
    paths = []
    for name, summary in (("first", first), ("later", later)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(summary))
    out = tmp_path / "gap.json"
    argv = [*map(str, paths), "--methods", "acodm", "--decoys", "noise", "--json", str(out)]
    assert gap.main(argv) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row == ["acodm", 0, "94.00", "100.00", "-6.00", "90.00", "60%", "80 (0.67)", "0.300"]
    assert "acodm: -6.00 ± 0.00 against uniform; gap closed per seed 60%" in capsys.readouterr().out


def test_a_method_that_never_reaches_uniforms_final_has_no_steps_ratio(tmp_path):
    summary = {
        "runs": {"a": run("uniform", 1, [120, 110, 100]), "c": run("odm", 1, [125, 112, 101])}
    }
    (tmp_path / "s.json").write_text(json.dumps(summary))
    out = tmp_path / "gap.json"
    assert (
        gap.main([str(tmp_path / "s.json"), "--methods", "odm", "--known", "", "--json", str(out)])
        == 0
    )
    (row,) = json.loads(out.read_text())["rows"]
    assert row == ["odm", 1, "101.00", "100.00", "+1.00", "–", "–"]


def test_a_run_in_two_summaries_is_named_with_the_one_used(tmp_path, capsys):
    """The same (method, seed) in two summaries: the later one's run is used and stderr says so,
    naming both files (an old summary passed last would otherwise win silently)."""
    old = {"runs": {"a": run("uniform", 0, [120, 100]), "b": run("acodm", 0, [115, 110])}}
    new = {"runs": {"c": run("acodm", 0, [115, 95])}}
    paths = [tmp_path / "old.json", tmp_path / "new.json"]
    for path, summary in zip(paths, (old, new)):
        path.write_text(json.dumps(summary))
    out = tmp_path / "gap.json"
    assert (
        gap.main([*map(str, paths), "--methods", "acodm", "--known", "", "--json", str(out)]) == 0
    )
    assert json.loads(out.read_text())["rows"][0][2] == "95.00"
    err = capsys.readouterr().err
    assert f"acodm seed 0: using the run in {paths[1]}, not the one in {paths[0]}" in err
    assert "uniform" not in err

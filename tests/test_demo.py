"""`vloc demo`, the main job: the quick room end to end, its outputs, and a second run
that reuses the rendered scene."""
import json

from vloc.cli import main


def test_quick_demo_localizes_every_query_and_reuses_its_scene(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "100 % of queries within 5 cm / 5°" in printed
    assert {p.name for p in (out / "report").iterdir()} == {"error_cdf.png", "poses.txt", "report.md", "results.json"}
    doc = json.loads((out / "report" / "results.json").read_text())
    assert doc["summary"]["queries"] == 8 and doc["summary"]["failures"] == 0
    assert doc["summary"]["median_translation_error"] < 0.01                # metres
    rendered = (out / "scene" / "query" / "0000.png").stat().st_mtime_ns
    assert main(["demo", "--quick", "--out", str(out), "-q"]) == 0
    assert (out / "scene" / "query" / "0000.png").stat().st_mtime_ns == rendered   # not rendered again
    assert "100 % of queries within 5 cm / 5°" in capsys.readouterr().out

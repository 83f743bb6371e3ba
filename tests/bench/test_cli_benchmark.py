"""`torchdet benchmark` flags: sections chosen, JSON written, bad names reported."""
import json

from torchdet.cli import main

SMALL = ["--builders", "ssdlite320_mobilenet_v3_large", "--repeats", "1", "--threads", "1",
         "--height", "64", "--width", "64"]


def test_sections_go_to_stdout_and_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["benchmark", *SMALL, "--latency", "--batch", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report) >= {"latency", "throughput", "torch", "threads"} and "train" not in report
    assert report["latency"][0]["gflop"] > 0 and report["throughput"][0]["batch"] == 2
    text = capsys.readouterr().out
    assert "GFLOP/s" in text and "speedup" in text


def test_profile_of_an_unknown_builder_is_a_clear_error(capsys):
    assert main(["benchmark", "--profile", "resnet50"]) == 1
    assert "unknown builder 'resnet50'" in capsys.readouterr().err

"""Where torchvision's figures come from: live (a stand-in torchvision here), a file, or none."""
import json
import sys
import types

import pytest

from torchdet.bench import baseline as bl
from torchdet.bench.latency import run_latency
from torchdet.bench.train_step import run_train
from torchdet.cli import main
from torchdet.models.registry import get_model_builder

SMALL = dict(repeats=1, height=64, width=64, flops=False)


@pytest.fixture
def no_torchvision(monkeypatch):
    monkeypatch.setattr(bl, "torchvision_available", lambda: False)


@pytest.fixture
def fake_torchvision(monkeypatch):
    """A 'torchvision' whose detection builders are torchdet's, counting the calls."""
    calls = []

    def builder(**kwargs):
        calls.append(kwargs)
        return get_model_builder("ssdlite320_mobilenet_v3_large")(**kwargs)

    detection = types.ModuleType("torchvision.models.detection")
    detection.ssdlite320_mobilenet_v3_large = builder
    models = types.ModuleType("torchvision.models")
    models.detection = detection
    torchvision = types.ModuleType("torchvision")
    torchvision.models = models
    for name, module in (("torchvision", torchvision), ("torchvision.models", models),
                         ("torchvision.models.detection", detection)):
        monkeypatch.setitem(sys.modules, name, module)
    return calls


def test_the_package_ships_no_figures():
    import torchdet.bench

    package = bl.Path(torchdet.bench.__file__).parent
    assert not list(package.glob("*.json")) and not list(package.glob("*.md"))
    assert bl.REPO_BASELINE.is_file()  # tests run from a checkout


def test_default_is_the_checkout_file_without_torchvision(no_torchvision):
    chosen = bl.resolve_baseline()
    assert chosen.source == str(bl.REPO_BASELINE) and not chosen.live
    assert len(chosen.eval_refs) == 12 and "fasterrcnn_resnet50_fpn" in chosen.train_refs
    assert bl.resolve_baseline("none").eval_refs == {}


def test_file_errors_name_the_path(tmp_path, no_torchvision):
    with pytest.raises(ValueError, match="no such file"):
        bl.resolve_baseline(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"threads": 2}))
    with pytest.raises(ValueError, match="no 'builders' table"):
        bl.resolve_baseline(str(bad))
    with pytest.raises(ValueError, match="live needs torchvision"):
        bl.resolve_baseline("live")


def test_a_named_file_gives_the_ratio(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"builders": {"ssdlite320_mobilenet_v3_large": {"in_conv_refs": 2.0}}}))
    (r,) = run_latency(["ssdlite320_mobilenet_v3_large"], threads=1, echo=lambda _: None,
                       baseline=bl.resolve_baseline(str(path)), **SMALL)
    assert r.torchvision_in_conv_refs == 2.0 and r.ratio == pytest.approx(r.in_conv_refs / 2.0)


def test_live_times_torchvisions_builder_on_the_same_inputs(fake_torchvision):
    chosen = bl.resolve_baseline()
    assert chosen.live and chosen.source == "live"
    (r,) = run_latency(["ssdlite320_mobilenet_v3_large"], threads=1, echo=lambda _: None, baseline=chosen, **SMALL)
    assert fake_torchvision == [{"weights": None, "weights_backbone": None}]
    assert r.torchvision_in_conv_refs > 0 and r.ratio == pytest.approx(r.in_conv_refs / r.torchvision_in_conv_refs)
    (t,) = run_train(["ssdlite320_mobilenet_v3_large"], repeats=1, height=64, width=64, flops=False,
                     echo=lambda _: None, baseline=chosen)
    assert len(fake_torchvision) == 2 and t.torchvision_in_conv_refs > 0


def test_cli_baseline_flag(tmp_path, capsys, no_torchvision):
    out = tmp_path / "bench.json"
    args = ["benchmark", "--builders", "ssdlite320_mobilenet_v3_large", "--repeats", "1", "--threads", "1",
            "--height", "64", "--width", "64", "--no-flops", "--json", str(out)]
    assert main(args + ["--baseline", "none"]) == 0
    report = json.loads(out.read_text())
    assert report["baseline"] == "none" and report["latency"][0]["ratio"] is None
    assert main(args) == 0
    assert json.loads(out.read_text())["baseline"] == str(bl.REPO_BASELINE)
    assert main(args + ["--baseline", str(tmp_path / "nope.json")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_an_installed_package_compares_with_nothing_by_default(tmp_path, monkeypatch, no_torchvision):
    monkeypatch.setattr(bl, "REPO_BASELINE", tmp_path / "site-packages" / "benchmarks" / "torchvision_cpu.json")
    chosen = bl.resolve_baseline()
    assert chosen.source == "none" and chosen.eval_refs == {} and chosen.train_refs == {}

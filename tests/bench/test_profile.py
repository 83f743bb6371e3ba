"""Per-stage profile: stages, phases and top ops found, and the shares hang together."""
from torchdet.bench.profile import format_profile, profile_eval, profile_train


def test_eval_profile_splits_the_forward_into_stages():
    r = profile_eval("fasterrcnn_mobilenet_v3_large_320_fpn", height=64, width=64, top=5)
    forward = r.phase_ms["forward"]
    stages = r.stage_ms["forward"]
    assert {"transform", "backbone", "backbone.body", "backbone.fpn", "rpn", "roi_heads"} <= set(stages)
    top_level = sum(ms for name, ms in stages.items() if "." not in name and not name.startswith("("))
    assert 0 < top_level <= forward * 1.001
    assert stages["backbone.body"] <= stages["backbone"] * 1.001
    assert len(r.top_ops["forward"]) == 5 and all(ms >= 0 for _, _, ms in r.top_ops["forward"])
    text = format_profile(r)
    assert "backbone" in text and "top ops" in text


def test_train_profile_has_three_phases_and_backward_stages():
    r = profile_train("ssdlite320_mobilenet_v3_large", height=64, width=64, top=5)
    assert set(r.phase_ms) == {"forward", "backward", "optimizer"} and all(v > 0 for v in r.phase_ms.values())
    backward = r.stage_ms["backward"]
    assert backward["backbone"] > 0 and backward["head"] > 0
    assert sum(ms for name, ms in backward.items() if "." not in name) <= r.phase_ms["backward"] * 1.001
    assert any("convolution_backward" in op for op, _, _ in r.top_ops["backward"])


def test_a_container_that_never_ran_gets_its_childrens_time():
    from torchdet.bench.profile import _fill_container_stages

    stages = {"backbone": 10.0, "backbone.features.0": 6.0, "backbone.features.1": 3.0, "head.a.b": 1.0,
              "(outside stages)": 2.0}
    _fill_container_stages(stages)
    assert stages["backbone.features"] == 9.0 and stages["backbone"] == 10.0
    assert stages["head.a"] == 1.0 and stages["head"] == 1.0 and "(outside stages)" in stages

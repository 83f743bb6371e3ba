"""TorchScript: the seven two-stage builders script, and the scripted model detects as the eager one.

Scripted, a model returns ``(losses, detections)`` (torchvision's contract); eagerly it returns one
of them. Small models (random weights, 160-240 px) keep this fast; only the MobileNet one runs in
the default selection, the ResNet-50 ones are ``slow``.
"""
import warnings

import pytest
import torch

import torchdet.models as models
from _oracle import _match_detections, assert_detections_match

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

SMALL = dict(weights=None, weights_backbone=None, min_size=160, max_size=240,
             rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=150)
# Random weights give near-uniform class scores (~1/91): a low threshold keeps detections to compare.
SCORE_THRESH = dict(box_score_thresh=0.01)

CHEAP = ["fasterrcnn_mobilenet_v3_large_320_fpn"]
SLOW = [
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "maskrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn_v2",
    "keypointrcnn_resnet50_fpn",
]


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    kwargs = dict(SMALL, **SCORE_THRESH)
    if name.startswith("keypointrcnn"):
        kwargs["box_score_thresh"] = 0.0  # two classes: scores near 0.5, but keep every detection
    return getattr(models, name)(**kwargs).eval()


def _image() -> torch.Tensor:
    return torch.rand(3, 200, 240, generator=torch.Generator().manual_seed(0))


def _script(model: torch.nn.Module) -> torch.jit.ScriptModule:
    return torch.jit.script(model)


def _run(scripted: torch.jit.ScriptModule, *args):
    """One call of the scripted model, without the profiling executor's optimisation passes (slow to run
    for a single call); warnings about the tuple return silenced."""
    with torch.jit.optimized_execution(False), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "RCNN always returns a (Losses, Detections) tuple in scripting"
        return scripted(*args)


@pytest.fixture(scope="module")
def cheap():
    """The MobileNet model and its scripted form (they share parameters)."""
    model = _model(CHEAP[0])
    return model, _script(model)


def _assert_same_detections(eager: dict, scripted: dict) -> None:
    """Scripted detections match the eager ones within the oracle's tolerances (tests/oracle/README.md).

    Not bit for bit: eager mode takes fast paths (fused backbone convolutions, the single-pass
    multi-level RoIAlign, the pruned keypoint peak search) whose sums are ordered differently.
    """
    assert set(scripted) == set(eager)
    assert eager["boxes"].shape[0] > 0, "no detections: the comparison would prove nothing"
    for key, expected in eager.items():
        assert scripted[key].dtype == expected.dtype and scripted[key].shape[1:] == expected.shape[1:], key
    assert_detections_match([scripted], [eager])
    if "keypoints_scores" in eager:
        idx = _match_detections(scripted, eager)  # [N_eager] index into the scripted detections
        matched = idx >= 0
        torch.testing.assert_close(scripted["keypoints_scores"][idx[matched]], eager["keypoints_scores"][matched],
                                   rtol=1e-3, atol=1e-3)


def _check_builder(model: torch.nn.Module, scripted: torch.jit.ScriptModule) -> None:
    model.eval()
    scripted.eval()
    image = _image()
    assert list(scripted.state_dict()) == list(model.state_dict())
    with torch.no_grad():
        eager = model([image])
        out = _run(scripted, [image])
    assert isinstance(eager, list) and len(eager) == 1  # eager contract unchanged
    assert isinstance(out, tuple) and len(out) == 2
    losses, detections = out
    assert losses == {} and len(detections) == 1
    _assert_same_detections(eager[0], detections[0])


def test_scripted_matches_eager(cheap) -> None:
    _check_builder(*cheap)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_scripted_matches_eager_slow(name: str) -> None:
    model = _model(name)
    _check_builder(model, _script(model))


def test_scripted_training_returns_losses_and_no_detections(cheap) -> None:
    model, scripted = cheap
    model.train()
    scripted.train()
    image = _image()
    target = {"boxes": torch.tensor([[20.0, 30.0, 120.0, 150.0]]), "labels": torch.tensor([3])}
    losses, detections = _run(scripted, [image], [target])
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert detections == []
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.roi_heads.box_predictor.cls_score.weight.grad is not None  # scripted shares the parameters
    model.zero_grad()
    assert set(model([image], [target])) == set(losses)  # eager training: the loss dict alone


def test_scripted_model_refuses_training_without_targets(cheap) -> None:
    _, scripted = cheap
    scripted.train()
    with pytest.raises(torch.jit.Error, match="targets are required"):
        _run(scripted, [_image()])


def test_scripted_model_rejects_bad_targets_with_the_shared_checks(cheap) -> None:
    """The scripted forward runs validation.validate_image_list, the checks the one-stage models use."""
    _, scripted = cheap
    scripted.train()
    try:
        bad = [{"boxes": torch.tensor([[10.0, 20.0, 10.0, 40.0]]), "labels": torch.tensor([1])}]
        with pytest.raises(Exception, match="x1 < x2"):
            _run(scripted, [_image()], bad)
        with pytest.raises(Exception, match="one target dict per image"):
            _run(scripted, [_image()], bad * 2)
    finally:
        scripted.eval()

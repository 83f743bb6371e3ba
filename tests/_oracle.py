"""The parity oracle: torchvision's outputs on fixed inputs, and how we compare against them.

The golden files in tests/oracle/golden come from ../shared/oracle (torchvision 0.28.0 on CPU).
The comparison rules are the oracle README's:

- detections, per image and as a set: a reference detection is matched when one of ours has
  the same label, a score within 1e-3 and every corner within 0.05 px; at least 99% of the
  reference detections must match and the counts must agree;
- masks of matched detections: mean absolute difference <= 0.02; keypoints within 1 px;
- losses: the same names, each within 1e-3 relative (1e-4 absolute).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List

import torch

from oracle.fill import fill_state_dict, manifest

GOLDEN = Path(__file__).parent / "oracle" / "golden"


def load_case(builder_name: str) -> Dict[str, Any]:
    """One golden case: builder, kwargs, weights_seed, images, eval_outputs, train_kwargs, targets, train_losses."""
    return torch.load(GOLDEN / f"{builder_name}.pt", weights_only=False)


def load_ops() -> Dict[str, Any]:
    return torch.load(GOLDEN / "ops.pt", weights_only=False)


def golden_manifest(builder_name: str) -> Dict[str, List[int]]:
    with open(GOLDEN / "state_dict_manifest.json") as f:
        return json.load(f)[builder_name]


def build_filled(builder: Callable[..., torch.nn.Module], seed: int, **kwargs: Any) -> torch.nn.Module:
    """Build with no weights, then fill deterministically, exactly as the oracle did."""
    model = builder(weights=None, weights_backbone=None, **kwargs)
    fill_state_dict(model, seed)
    return model


def run_case(builder: Callable[..., torch.nn.Module], builder_name: str):
    """Build, fill and run a golden case: ``(case, model, eval detections, training losses)``.

    Eval first; then the training losses with the weights refilled (eval does not change them,
    but a rebuild with ``train_kwargs`` does when they differ).
    """
    case = load_case(builder_name)
    model = build_filled(builder, case["weights_seed"], **case["kwargs"]).eval()
    with torch.no_grad():
        detections = model(case["images"])
    if case["train_kwargs"] != case["kwargs"]:
        model = builder(weights=None, weights_backbone=None, **case["train_kwargs"])
    fill_state_dict(model, case["weights_seed"])
    model.train()
    with torch.no_grad():
        losses = model(case["images"], case["targets"])
    return case, model, detections, losses


def assert_same_manifest(model: torch.nn.Module, builder_name: str) -> None:
    ours = manifest(model)
    ref = golden_manifest(builder_name)
    missing = sorted(set(ref) - set(ours))
    unexpected = sorted(set(ours) - set(ref))
    assert not missing and not unexpected, f"missing {missing[:10]}, unexpected {unexpected[:10]}"
    wrong = {k: (ours[k], ref[k]) for k in ref if list(ours[k]) != list(ref[k])}
    assert not wrong, f"shape mismatches (ours, ref): {dict(list(wrong.items())[:10])}"


def _match_detections(ours: Dict[str, torch.Tensor], ref: Dict[str, torch.Tensor],
                      score_tol: float = 1e-3, box_tol: float = 0.05) -> torch.Tensor:
    """For each reference detection, the index of a matching detection of ours, or -1. [N_ref]"""
    ob, ol, os_ = ours["boxes"].float(), ours["labels"], ours["scores"].float()
    rb, rl, rs = ref["boxes"].float(), ref["labels"], ref["scores"].float()
    if len(rb) == 0 or len(ob) == 0:
        return torch.full((len(rb),), -1, dtype=torch.long)
    ok = (rl[:, None] == ol[None, :])
    ok &= (rs[:, None] - os_[None, :]).abs() <= score_tol
    ok &= ((rb[:, None, :] - ob[None, :, :]).abs() <= box_tol).all(-1)  # [N_ref, N_ours]
    # Greedy one-to-one assignment, closest box first.
    dist = (rb[:, None, :] - ob[None, :, :]).abs().amax(-1).masked_fill(~ok, float("inf"))
    idx = torch.full((len(rb),), -1, dtype=torch.long)
    used = torch.zeros(len(ob), dtype=torch.bool)
    for i in range(len(rb)):
        d = dist[i].masked_fill(used, float("inf"))
        j = int(d.argmin())
        if torch.isfinite(d[j]):
            idx[i] = j
            used[j] = True
    return idx


def assert_detections_match(ours: List[Dict[str, torch.Tensor]], ref: List[Dict[str, torch.Tensor]]) -> None:
    """Compare eval outputs image by image, as the oracle README prescribes."""
    assert len(ours) == len(ref), f"{len(ours)} outputs for {len(ref)} images"
    for i, (o, r) in enumerate(zip(ours, ref)):
        assert set(r) <= set(o), f"image {i}: missing keys {set(r) - set(o)}"
        assert len(o["boxes"]) == len(r["boxes"]), f"image {i}: {len(o['boxes'])} detections, reference has {len(r['boxes'])}"
        assert o["labels"].dtype == torch.int64
        idx = _match_detections(o, r)
        matched = idx >= 0
        n = len(r["boxes"])
        if n:
            assert matched.float().mean() >= 0.99, f"image {i}: only {int(matched.sum())}/{n} reference detections matched"
        m_ref = matched.nonzero().flatten()
        m_ours = idx[m_ref]
        if "masks" in r and len(m_ref):
            assert o["masks"].shape[1:] == r["masks"].shape[1:], f"image {i}: mask shape {o['masks'].shape} vs {r['masks'].shape}"
            mad = (o["masks"][m_ours].float() - r["masks"][m_ref].float()).abs().mean()
            assert mad <= 0.02, f"image {i}: masks differ by {mad:.4f} mean absolute"
        if "keypoints" in r and len(m_ref):
            diff = (o["keypoints"][m_ours][..., :2].float() - r["keypoints"][m_ref][..., :2].float()).abs().max()
            assert diff <= 1.0, f"image {i}: keypoints differ by {diff:.3f} px"
        if "keypoints_scores" in r and len(m_ref):
            assert o["keypoints_scores"].shape[1:] == r["keypoints_scores"].shape[1:]


def assert_losses_match(ours: Dict[str, torch.Tensor], ref: Dict[str, torch.Tensor],
                        rel: float = 1e-3, abs_: float = 1e-4) -> None:
    assert set(ours) == set(ref), f"loss names {sorted(ours)} vs reference {sorted(ref)}"
    for k in ref:
        a, b = float(ours[k]), float(ref[k])
        assert abs(a - b) <= max(abs_, rel * abs(b)), f"{k}: ours {a:.6f}, reference {b:.6f}"

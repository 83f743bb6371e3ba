"""Where the time goes: per-stage times and the top ops by self CPU time, for eval or a training step.

The model's sub-modules, three levels deep (``backbone``, ``backbone.body``,
``backbone.body.layer3``, ``backbone.fpn``, ``rpn``, ``roi_heads``, ``roi_heads.box_head``, ``head``, ...), get forward hooks that open a
``torch.profiler.record_function("stage::<name>")`` range; the phases of a step are ranges
too (``phase::forward``, ``phase::backward``, ``phase::optimizer``). One run (after an
unprofiled warm-up) goes under `torch.profiler.profile`, then:

- forward time per stage is the length of its ranges; what lies outside every stage (losses,
  postprocess outside the heads, glue) is ``(outside stages)``;
- backward time per stage: each autograd node carries the sequence number of the forward op
  that made it, so a backward node's time goes to the stage that ran that op;
- top ops: self CPU time of each op name per phase (the profiler's ``self_cpu_time_total``).

The profiler adds some overhead per op, so these times run a little above the unprofiled ones.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

from torchdet.bench.latency import benchmark_image, build_eval_model
from torchdet.bench.train_step import train_setup

STAGE = "stage::"
PHASE = "phase::"
EVALUATE = "autograd::engine::evaluate_function: "
OUTSIDE = "(outside stages)"


@dataclass
class ProfileResult:
    builder: str
    mode: str  # "eval" or "train"
    phase_ms: Dict[str, float]
    stage_ms: Dict[str, Dict[str, float]]  # phase -> stage -> ms (nested stages as "a.b")
    top_ops: Dict[str, List[Tuple[str, int, float]]]  # phase -> [(op, calls, self ms)]
    notes: List[str] = field(default_factory=list)


def stage_modules(model: torch.nn.Module, depth: int = 3) -> Dict[str, torch.nn.Module]:
    """Sub-modules up to ``depth`` levels below the model, by dotted name."""
    found: Dict[str, torch.nn.Module] = {}

    def visit(module: torch.nn.Module, prefix: str, level: int) -> None:
        for child_name, child in module.named_children():
            name = f"{prefix}{child_name}"
            found[name] = child
            if level < depth:
                visit(child, name + ".", level + 1)

    visit(model, "", 1)
    return found


def add_stage_ranges(model: torch.nn.Module, depth: int = 3) -> List[torch.utils.hooks.RemovableHandle]:
    """Forward hooks that wrap each stage module's forward in a ``stage::<name>`` profiler range."""
    handles = []
    for name, module in stage_modules(model, depth).items():
        stack: List[record_function] = []

        def enter(_module, _inputs, label=f"{STAGE}{name}", stack=stack):
            rf = record_function(label)
            rf.__enter__()
            stack.append(rf)

        def leave(_module, _inputs, _output, stack=stack):
            stack.pop().__exit__(None, None, None)

        handles.append(module.register_forward_pre_hook(enter))
        handles.append(module.register_forward_hook(leave))
    return handles


def _ancestors(event) -> List:
    chain = []
    while event is not None:
        chain.append(event)
        event = event.cpu_parent
    return chain


def summarize(events, builder: str, mode: str, top: int = 12) -> ProfileResult:
    """Phase and stage times and top ops from the profiler's events (see the module docstring)."""
    phase_ms: Dict[str, float] = defaultdict(float)
    stage_ms: Dict[str, Dict[str, float]] = defaultdict(lambda: defaultdict(float))
    ops: Dict[str, Dict[str, List[float]]] = defaultdict(lambda: defaultdict(lambda: [0, 0.0]))
    seq_stage: Dict[int, str] = {}
    deferred = []
    for event in events:
        chain = _ancestors(event)
        phase_event = next((e for e in reversed(chain) if e.name.startswith(PHASE)), None)
        if phase_event is None:
            continue
        phase = phase_event.name[len(PHASE):]
        if event is phase_event:
            phase_ms[phase] += event.cpu_time_total / 1000
            continue
        stage = next((e.name[len(STAGE):] for e in chain if e.name.startswith(STAGE)), None)
        if event.name.startswith(STAGE):
            stage_ms[phase][event.name[len(STAGE):]] += event.cpu_time_total / 1000
            continue
        if phase == "forward" and stage is not None and event.sequence_nr >= 0:
            seq_stage.setdefault(event.sequence_nr, stage)
        if event.name.startswith(EVALUATE) and not any(e.name.startswith(EVALUATE) for e in chain[1:]):
            deferred.append((phase, event))
        entry = ops[phase][event.name]
        entry[0] += 1
        entry[1] += event.self_cpu_time_total / 1000
    for phase, event in deferred:  # backward nodes, once every forward op's stage is known
        node = event.name[len(EVALUATE):]
        stage = seq_stage.get(event.sequence_nr, "(accumulate grad)" if node == "torch::autograd::AccumulateGrad"
                              else OUTSIDE)
        for prefix in _prefixes(stage):
            stage_ms[phase][prefix] += event.cpu_time_total / 1000
    for stages in stage_ms.values():
        _fill_container_stages(stages)
    for phase, stages in stage_ms.items():
        top_level = sum(ms for name, ms in stages.items() if "." not in name and not name.startswith("("))
        if phase == "forward":
            stages[OUTSIDE] = phase_ms[phase] - top_level
    top_ops = {phase: sorted(((name, int(c), ms) for name, (c, ms) in by_name.items()
                              if not name.startswith((STAGE, EVALUATE))),
                             key=lambda row: -row[2])[:top]
               for phase, by_name in ops.items()}
    return ProfileResult(builder=builder, mode=mode, phase_ms=dict(phase_ms),
                         stage_ms={p: dict(s) for p, s in stage_ms.items()}, top_ops=top_ops)


def _fill_container_stages(stages: Dict[str, float]) -> None:
    """Give a stage that never ran its own forward (a container whose parent loops over its
    children, like ``backbone.features``) the time of its children that did, so every nested
    stage has its parent listed."""
    present = {name: ms for name, ms in stages.items() if not name.startswith("(")}
    for name, ms in present.items():
        for ancestor in reversed(_prefixes(name)[:-1]):
            if ancestor in present:
                break
            stages[ancestor] = stages.get(ancestor, 0.0) + ms


def _prefixes(stage: str) -> List[str]:
    """``a.b`` -> [``a``, ``a.b``], so a nested stage's time also counts for its parent."""
    if stage.startswith("("):
        return [stage]
    parts = stage.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def profile_eval(name: str, height: int = 480, width: int = 640, top: int = 12) -> ProfileResult:
    model = build_eval_model(name)
    image = benchmark_image(height, width)
    with torch.no_grad():
        model([image])  # warm-up, unprofiled
        handles = add_stage_ranges(model)
        try:
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                with record_function(f"{PHASE}forward"):
                    model([image])
        finally:
            for h in handles:
                h.remove()
    return summarize(prof.events(), name, "eval", top)


def profile_train(name: str, num_images: int = 2, height: int = 480, width: int = 640, top: int = 12) -> ProfileResult:
    setup = train_setup(name, num_images, height, width)

    def step() -> None:
        with record_function(f"{PHASE}forward"):
            loss = sum(setup.model(setup.images, setup.targets).values())
        with record_function(f"{PHASE}backward"):
            loss.backward()
        with record_function(f"{PHASE}optimizer"):
            setup.optimizer.step()
            setup.optimizer.zero_grad(set_to_none=True)

    step()  # warm-up, unprofiled
    handles = add_stage_ranges(setup.model)
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
    finally:
        for h in handles:
            h.remove()
    return summarize(prof.events(), name, "train", top)


def format_profile(result: ProfileResult, min_share: float = 0.01) -> str:
    total = sum(result.phase_ms.values())
    lines = [f"Profile of {result.builder} ({result.mode}), one run under torch.profiler: {total:.1f} ms"]
    for phase, ms in result.phase_ms.items():
        lines.append(f"  {phase:10s} {ms:10.1f} ms {100 * ms / total:5.1f}%")
    for phase, stages in result.stage_ms.items():
        phase_total = result.phase_ms.get(phase, 0.0) or 1.0
        lines.append(f"\n{phase}: time per stage (nested stages indented; share of the {phase})")
        for stage, ms in sorted(stages.items(), key=_stage_order(stages)):
            if ms / phase_total < min_share:
                continue
            indent = "  " * stage.count(".") if not stage.startswith("(") else ""
            lines.append(f"  {indent + stage:44s} {ms:10.1f} ms {100 * ms / phase_total:5.1f}%")
    for phase, rows in result.top_ops.items():
        phase_total = result.phase_ms.get(phase, 0.0) or 1.0
        lines.append(f"\n{phase}: top ops by self CPU time")
        lines.append(f"  {'op':52s} {'calls':>6s} {'self_ms':>9s} {'share':>6s}")
        for op, calls, ms in rows:
            lines.append(f"  {op[:52]:52s} {calls:6d} {ms:9.1f} {100 * ms / phase_total:5.1f}%")
    lines.extend(result.notes)
    return "\n".join(lines)


def _stage_order(stages: Dict[str, float]) -> Callable[[Tuple[str, float]], tuple]:
    """Sort key: top-level stages by time, each followed by its children by time; () buckets last."""
    def key(item: Tuple[str, float]) -> tuple:
        name, ms = item
        if name.startswith("("):
            return (1, -ms, "")
        parts = name.split(".")
        # each ancestor's (-time, name) in turn, so children follow their parent, largest first
        return (0,) + tuple(x for i in range(len(parts)) for x in (-stages.get(".".join(parts[: i + 1]), 0.0),
                                                                  ".".join(parts[: i + 1])))
    return key


def run_profile(name: str, train: bool = False, height: int = 480, width: int = 640, num_images: int = 2,
                top: int = 12, echo: Callable[[str], None] = print) -> ProfileResult:
    result = (profile_train(name, num_images, height, width, top) if train
              else profile_eval(name, height, width, top))
    echo(format_profile(result))
    return result

import pytest
import torch

from torchdet.ops import dispatch
from torchdet.ops.dispatch import OpDispatcher, current_mode, forced


@pytest.fixture
def op():
    d = OpDispatcher("test_double", reference=lambda x: x * 2)
    yield d
    dispatch._DISPATCHERS.pop("test_double")


def test_reference_when_nothing_matches(op):
    op.register("cuda_only", devices=("cuda",))(lambda x: x * 2 + 0)
    assert op.select("cpu", "eager")[0] == "reference"
    assert op.select("cuda", "eager")[0] == "cuda_only"
    assert op.select("cuda", "trace")[0] == "reference"


def test_priority_and_any_device(op):
    op.register("slow", modes=("eager", "compile"))(lambda x: x + x)
    op.register("fast", devices=("cpu",), priority=5)(lambda x: 2 * x)
    assert op.select("cpu", "eager")[0] == "fast"
    assert op.select("meta", "eager")[0] == "slow"
    assert op.select("cpu", "compile")[0] == "slow"
    assert op.names() == ["reference", "fast", "slow"]
    assert op(torch.device("cpu"), torch.tensor(3)).item() == 6


def test_forced_overrides_and_restores(op):
    op.register("fast", devices=("cpu",))(lambda x: 2 * x)
    with forced("test_double", "reference"):
        assert op.select("cpu", "eager")[0] == "reference"
    assert op.select("cpu", "eager")[0] == "fast"
    with pytest.raises(KeyError, match="no form"):
        with forced("test_double", "nope"):
            pass


def test_bad_registrations_are_refused(op):
    with pytest.raises(ValueError, match="modes"):
        op.register("x", modes=("onnx",))
    op.register("x")(lambda x: x)
    with pytest.raises(ValueError, match="names taken"):
        op.register("x")
    with pytest.raises(ValueError, match="already has a dispatcher"):
        OpDispatcher("test_double", reference=lambda x: x)


def test_current_mode_follows_tracing():
    seen = []

    def f(x):
        seen.append(current_mode())
        return x + 1

    f(torch.ones(1))
    torch.jit.trace(f, torch.ones(1), check_trace=False)
    torch.fx.symbolic_trace(lambda x: f(x))
    assert seen == ["eager", "trace", "compile"]


def test_select_can_ignore_forced(op):
    op.register("fast", devices=("cpu",))(lambda x: 2 * x)
    with forced("test_double", "reference"):
        assert op.select("cpu", "eager", use_forced=False)[0] == "fast"


def test_current_mode_is_compile_under_torch_export():
    seen = []

    class Module(torch.nn.Module):
        def forward(self, x):
            seen.append(current_mode())
            return x + 1

    torch.export.export(Module(), (torch.ones(2),), strict=False)
    assert seen and set(seen) == {"compile"}

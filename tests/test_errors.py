import pytest

from torchdet.errors import InvalidInputError, InvalidOpInputError


@pytest.mark.parametrize("caught", [ValueError, AssertionError])
def test_invalid_input_is_both(caught):
    with pytest.raises(caught, match="box 3"):
        raise InvalidInputError("box 3 is bad")


@pytest.mark.parametrize("caught", [ValueError, RuntimeError])
def test_invalid_op_input_is_both(caught):
    with pytest.raises(caught):
        raise InvalidOpInputError("boxes must be [N, 4]")

import pytest

from torchdet.errors import InvalidInputError, InvalidInputTypeError, InvalidOpInputError, MissingInputKeyError


@pytest.mark.parametrize("caught", [ValueError, AssertionError])
def test_invalid_input_is_both(caught):
    with pytest.raises(caught, match="box 3"):
        raise InvalidInputError("box 3 is bad")


@pytest.mark.parametrize("caught", [ValueError, RuntimeError])
def test_invalid_op_input_is_both(caught):
    with pytest.raises(caught):
        raise InvalidOpInputError("boxes must be [N, 4]")


@pytest.mark.parametrize("caught", [ValueError, AssertionError, TypeError])
def test_invalid_input_type_is_all_three(caught):
    with pytest.raises(caught, match="dtype torch.uint8"):
        raise InvalidInputTypeError("image 0 has dtype torch.uint8")


@pytest.mark.parametrize("caught", [ValueError, AssertionError, KeyError])
def test_missing_key_is_all_three(caught):
    with pytest.raises(caught):
        raise MissingInputKeyError("target of image 0 lacks ['labels']")


def test_missing_key_message_is_not_quoted():
    assert str(MissingInputKeyError("lacks 'labels'")) == "lacks 'labels'"

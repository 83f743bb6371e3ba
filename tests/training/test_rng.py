"""Random states: captured and restored exactly (what makes a resumed run match)."""
import random

import numpy as np
import torch

from torchdet.training.rng import capture_rng_state, restore_rng_state, seed_everything


def test_rng_state_round_trip():
    seed_everything(3)
    state = capture_rng_state()
    a = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    restore_rng_state(state)
    b = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    assert a == b

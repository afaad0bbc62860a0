"""recorder.batch_statistics's idx column: the flat index of the first most extreme unit in each image's push
direction, as numpy's ``argmax(sign * acts)`` gives it, with ties and mixed signs, with and without the argmin
pass."""

import numpy as np
import pytest
import torch

from dvtoolbox.optimize.recorder import batch_statistics


@pytest.mark.parametrize("signs", [(1.0, 1.0, 1.0), (1.0, -1.0, -1.0), (-1.0, -1.0, -1.0)])
def test_idx_is_numpys_argmax_of_the_signed_activations(signs):
    rng = np.random.RandomState(0)
    acts = rng.randint(-3, 4, size=(3, 5, 2, 3)).astype(np.float32)   # few values: many ties
    x = torch.from_numpy(rng.rand(3, 3, 4, 4))
    grad = torch.from_numpy(rng.randn(3, 3, 4, 4).astype(np.float32))
    units = torch.tensor([[0, 0, 0], [1, 1, 2], [4, 0, 1]])
    stats = batch_statistics(torch.from_numpy(acts), x, x.clone(), grad, units, torch.tensor(signs),
                             any_negative=any(s < 0 for s in signs))
    expected = [np.argmax(s * a.reshape(-1)) for s, a in zip(signs, acts)]
    assert stats[:, 1].to(torch.long).tolist() == expected
    assert stats[:, 0].tolist() == [float(acts[i, c, y, x_]) for i, (c, y, x_) in enumerate(units.tolist())]

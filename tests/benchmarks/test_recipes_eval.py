"""recipes_eval.py's objectives per target (image i pushes unit i: a channel's mean or the neuron at the centre of
the grid) and the value it reports, against numpy; transfer_eval.write_report's three files."""

import os
import sys

import numpy as np
import torch
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import recipes_eval  # noqa: E402
import transfer_eval  # noqa: E402


def acts(shape=(2, 4, 5, 6)):
    return torch.from_numpy(np.random.RandomState(0).randn(*shape).astype(np.float32))


def test_channel_target_sums_each_images_channel_mean():
    t = acts()
    value = recipes_eval.batch_objective("channels", [3, 1], "conv")({"conv": t})
    expected = t[0, 3].numpy().mean() + t[1, 1].numpy().mean()
    np.testing.assert_allclose(float(value), expected, rtol=1e-6)


def test_neuron_target_sums_each_images_unit_at_the_centre():
    t = acts()  # a 5 x 6 grid: the centre is row 2, column 3 (H // 2, W // 2)
    value = recipes_eval.batch_objective("neurons", [3, 1], "conv")({"conv": t})
    np.testing.assert_allclose(float(value), float(t[0, 3, 2, 3] + t[1, 1, 2, 3]), rtol=1e-6)


def test_write_report_writes_the_table_the_results_and_the_sheet(tmp_path):
    sheet = [[np.zeros((4, 4, 3), np.float32), np.ones((4, 4, 3), np.float32)]]
    transfer_eval.write_report(str(tmp_path), "# table\n", {"a": 1}, sheet)
    assert (tmp_path / "table.md").read_text() == "# table\n"
    assert (tmp_path / "results.json").read_text().replace(" ", "").replace("\n", "") == '{"a":1}'
    with Image.open(tmp_path / "contact_sheet.png") as sheet_png:
        assert sheet_png.size == (2 + 2 * (4 + 2), 2 + 4 + 2)  # two cells, 2 px of padding around each

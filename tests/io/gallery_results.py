"""A small real results folder for the gallery / GUI-layout tests: optimize_image.py's main on the tiny fixed-weight
model, units 0..3 of fc8 (of 5), 6 iterations of Table-1 row 1, one batch."""

from dvtoolbox.cli.optimize_image import main

UNITS = (0, 1, 2, 3)
ROW1 = ["--decay", "0", "--blur-radius", "0.5", "--blur-every", "4", "--small-norm-percentile", "50",
        "--lr-policy", "progress", "--lr-params", "{'max_lr': 100.0, 'desired_prog': 2.0}"]


def make_results(folder, *flags):
    """Run units 0..3 into folder/opt_fc8_NNNN_0_*; returns the exit status."""
    argv = ["--model", "tiny_test", "--max-iter", "6", "--push-channel", "0:4", "--batch-size", "4",
            "--device", "cpu", "--output-prefix", str(folder / "opt"), *ROW1, *flags]
    return main(argv, settings_dirs=[])


EXEMPLAR_UNITS = (0, 1, 2, 3, 4)   # fc8 has 5 units: unit 4 has exemplars but no synthetic image
N_TOP = 3


def make_exemplars(folder):
    """find_max_acts.py then crop_max_patches.py on 5 seeded photographs (tiny_test, fc8, N 3): the crops, deconv,
    backprop, info.txt and histogram of units 0..4 under folder/crops/fc8/unit_NNNN/; returns folder/crops/fc8."""
    import numpy as np
    from PIL import Image

    from dvtoolbox.cli.crop_max_patches import main as crop_main
    from dvtoolbox.cli.find_max_acts import main as find_main

    data = folder / "photos"
    data.mkdir()
    rng = np.random.default_rng(7)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (8 + i, 10, 3), dtype=np.uint8)).save(data / f"p{i}.png")
    nmt = folder / "maxes.npz"
    assert find_main(["--device", "cpu", "--workers", "0", "--model", "tiny_test", "--N", str(N_TOP), "--layers",
                      "fc8", str(data), str(nmt)]) == 0
    assert crop_main(["--device", "cpu", "--model", "tiny_test", "--do-maxes", "--do-deconv", "--do-backprop",
                      "--do-info", "--do-histogram", str(nmt), str(data), str(folder / "crops"), "fc8"]) == 0
    return folder / "crops" / "fc8"

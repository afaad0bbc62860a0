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

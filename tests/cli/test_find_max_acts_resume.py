"""find_max_acts.py: resumed after an interruption or a SIGKILL == uninterrupted; torchrun shards == one process."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from dvtoolbox.cli.find_max_acts import main
from dvtoolbox.exemplars import job as job_module
from dvtoolbox.exemplars import tracker as tracker_module
from dvtoolbox.exemplars.tracker import load_maxes

TINY_MAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny_find_max_acts.py")


def make_photos(root, count, seed=21):
    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / f"p{i:04d}.png")
    return root


def run(*argv):
    return main(["--device", "cpu", "--workers", "0", "--model", "tiny_test", "--N", "3", *argv])


def assert_same_file(path_a, path_b, same_batches=False):
    """The same top N and histograms. same_batches: both runs had the same batches, so every float is the same too;
    else a value may differ by float32 rounding (another batch size), and the histograms' sums by the order of
    their float64 additions."""
    meta_a, images_a, maxes_a = load_maxes(str(path_a))
    meta_b, images_b, maxes_b = load_maxes(str(path_b))
    assert images_a.paths == images_b.paths and list(maxes_a) == list(maxes_b)
    assert meta_a["images_done"] == meta_b["images_done"] and meta_a["unreadable"] == meta_b["unreadable"]
    for name in maxes_a:
        np.testing.assert_array_equal(maxes_a[name].images, maxes_b[name].images)
        np.testing.assert_array_equal(maxes_a[name].positions, maxes_b[name].positions)
        np.testing.assert_allclose(maxes_a[name].values, maxes_b[name].values, rtol=1e-6, atol=1e-6)
        a, b = maxes_a[name].histogram, maxes_b[name].histogram
        for key in ("edges", "counts", "count"):
            np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
        for key in ("minimum", "maximum", "total"):
            if same_batches:
                np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
            else:
                np.testing.assert_allclose(getattr(a, key), getattr(b, key), rtol=1e-6, atol=1e-5)
        if same_batches:
            np.testing.assert_array_equal(maxes_a[name].values, maxes_b[name].values)


class Interrupt(KeyboardInterrupt):
    pass


def test_resume_after_an_interruption_counts_each_image_once(tmp_path, monkeypatch):
    data = make_photos(tmp_path / "data", 10)
    assert run("--batch-size", "2", str(data), str(tmp_path / "whole.pkl")) == 0
    seen = []
    original = tracker_module.MaxesTracker.update

    def update(self, outputs, image_indices):
        if len(seen) == 3:
            raise Interrupt()
        seen.append(image_indices.tolist())
        original(self, outputs, image_indices)

    monkeypatch.setattr(tracker_module.MaxesTracker, "update", update)
    outfile = tmp_path / "maxes.pkl"
    assert run("--batch-size", "2", "--checkpoint-every", "2", str(data), str(outfile)) == 130
    part = tmp_path / "maxes.pkl.part"
    assert not outfile.exists() and load_maxes(str(part))[0]["images_done"] == 4  # checkpointed after batch 2
    assert (load_maxes(str(part))[2]["fc8"].histogram.count == 4).all()  # the histograms of those 4 images
    assert run("--batch-size", "2", str(data), str(outfile)) == 2  # a checkpoint is not overwritten silently
    seen.clear()

    def counted(self, outputs, image_indices):
        seen.append(image_indices.tolist())
        original(self, outputs, image_indices)

    monkeypatch.setattr(tracker_module.MaxesTracker, "update", counted)

    def no_calibration(*args, **kwargs):
        raise AssertionError("a resumed run takes the bins of its checkpoint")

    monkeypatch.setattr(job_module, "calibrate", no_calibration)
    assert run("--batch-size", "2", "--resume", str(data), str(outfile)) == 0
    assert seen == [[4, 5], [6, 7], [8, 9]]
    assert not part.exists()
    assert_same_file(outfile, tmp_path / "whole.pkl", same_batches=True)


def test_a_checkpoint_of_another_run_is_refused(tmp_path, capsys):
    data = make_photos(tmp_path / "data", 4)
    assert run("--batch-size", "1", str(data), str(tmp_path / "m.pkl")) == 0
    os.rename(tmp_path / "m.pkl", tmp_path / "x.pkl.part")
    assert run("--batch-size", "1", "--resume", "--N", "4", str(data), str(tmp_path / "x.pkl")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a part file" in err
    assert not (tmp_path / "x.pkl").exists()


def test_resume_after_sigkill_equals_uninterrupted(tmp_path):
    data = make_photos(tmp_path / "data", 400)
    argv = [sys.executable, TINY_MAIN, "--device", "cpu", "--workers", "0", "--model", "tiny_test", "--N", "3",
            "--batch-size", "1", "--checkpoint-every", "1", str(data), str(tmp_path / "maxes.pkl")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    part = tmp_path / "maxes.pkl.part"
    deadline = time.time() + 120
    while not part.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = load_maxes(str(part))[0]["images_done"]
    assert 0 < done < 400 and not (tmp_path / "maxes.pkl").exists()
    assert subprocess.run(argv + ["--resume"], env=env, capture_output=True).returncode == 0
    assert run("--batch-size", "1", str(data), str(tmp_path / "whole.pkl")) == 0
    assert_same_file(tmp_path / "maxes.pkl", tmp_path / "whole.pkl", same_batches=True)
    assert not part.exists() and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.skipif(sys.platform != "linux", reason="torchrun with gloo is tested on Linux")
def test_torchrun_shards_equal_one_process(tmp_path):
    data = make_photos(tmp_path / "data", 13)
    (data / "broken.png").write_bytes(b"not an image")
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29547", TINY_MAIN,
            "--device", "cpu", "--workers", "0", "--model", "tiny_test", "--N", "3", "--batch-size", "2",
            str(data), str(tmp_path / "sharded.pkl")]
    done = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"),
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert run("--batch-size", "3", str(data), str(tmp_path / "single.pkl")) == 0
    assert_same_file(tmp_path / "sharded.pkl", tmp_path / "single.pkl")
    assert load_maxes(str(tmp_path / "sharded.pkl"))[0]["unreadable"] == 1
    assert not list(tmp_path.glob("*.part"))

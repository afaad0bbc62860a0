"""bench_caffe_loader.py runs end to end and takes real Caffe's time from the --caffe-python subprocess."""

import json
import os
import sys

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import bench_caffe_loader  # noqa: E402

TINY = os.path.join(ROOT, "tests", "data", "caffe_reference", "tiny.prototxt")


@pytest.fixture
def fake_caffe(tmp_path):
    """A 'Python with pycaffe' that records the job it is sent and reports 0.5 s per iteration."""
    script = tmp_path / "fake_caffe.py"
    job_file = tmp_path / "job.json"
    script.write_text(
        "import json, os, sys\n"
        "job = json.load(sys.stdin)\n"
        "job.update(argv=sys.argv[1:], threads=os.environ['OPENBLAS_NUM_THREADS'])\n"
        f"json.dump(job, open({str(job_file)!r}, 'w'))\n"
        "print(json.dumps({'seconds': [0.5] * job['iters'], 'caffe': 'fake'}))\n")
    return f"{sys.executable} {script}", job_file


def test_ratio_against_caffe_timed_in_the_same_run(fake_caffe, capsys):
    command, job_file = fake_caffe
    assert bench_caffe_loader.main(["--deploy-proto", TINY, "--push-layer", "fc2", "--push-channel", "3",
                                    "--threads", "1", "--iters", "2", "--warmup", "1", "--rounds", "2",
                                    "--caffe-python", command]) == 0
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("threads 1:")][0]
    ours_ms = float(line.split(":")[1].split("ms")[0])
    ratio = float(line.split("->")[1].split("x")[0])
    assert "real Caffe in this run 500.0 ms" in line
    # ours_ms is printed to 0.1 ms (a relative rounding of 0.05 / ours_ms), the ratio to 0.01
    assert ratio == pytest.approx(500.0 / ours_ms, rel=0.05 / ours_ms + 0.005)
    job = json.loads(job_file.read_text())
    with open(TINY) as f:
        assert job["prototxt"] == f.read()
    assert (job["push_layer"], job["push_channel"], job["iters"], job["threads"]) == ("fc2", 3, 2, "1")
    assert job["argv"][0] == "-c" and "net._backward" in job["argv"][1]  # caffe_timing.py's source is sent


def test_failing_caffe_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match="real Caffe failed"):
        bench_caffe_loader.main(["--deploy-proto", TINY, "--push-layer", "fc2", "--push-channel", "3",
                                 "--threads", "1", "--iters", "1", "--warmup", "0", "--rounds", "1",
                                 "--caffe-python", f"{sys.executable} -c 'raise SystemExit(3)'"])


@pytest.mark.parametrize("flag, value", [("--rounds", "0"), ("--iters", "0"), ("--warmup", "-1")])
def test_bad_counts_are_one_line_and_exit_2(flag, value, capsys):
    with pytest.raises(SystemExit) as exc:
        bench_caffe_loader.main(["--deploy-proto", TINY, "--push-layer", "fc2", flag, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "--rounds and --iters must be >= 1 and --warmup >= 0" in err[-1]

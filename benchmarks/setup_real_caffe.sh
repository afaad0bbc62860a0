#!/bin/sh
# Real Caffe (Debian bullseye's caffe 1.0.0, CPU, OpenBLAS) in a chroot, for bench_caffe_loader.py --caffe-python.
# Caffe left Debian after bullseye and does not build against today's libraries; a minimal bullseye root holds it
# apart from the host. Needs root, debootstrap and the Debian mirror (about 700 MB on disk).
#   sudo sh benchmarks/setup_real_caffe.sh [/opt/caffe-bullseye]
#   python benchmarks/bench_caffe_loader.py --caffe-python "chroot /opt/caffe-bullseye python3"
set -eu
root=${1:-/opt/caffe-bullseye}
mirror=${MIRROR:-http://deb.debian.org/debian}
command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; }
[ -x "$root/usr/bin/python3" ] || debootstrap --variant=minbase bullseye "$root" "$mirror"
cp /etc/resolv.conf "$root/etc/resolv.conf"
chroot "$root" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends python3-caffe caffe libopenblas0-pthread python3-numpy python3-scipy >/dev/null'
mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
chroot "$root" python3 -c 'import caffe, numpy, scipy; print("real Caffe", caffe.__version__, "ready")'

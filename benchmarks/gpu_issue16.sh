#!/usr/bin/env bash
# Replaced by benchmarks/gpu_check.sh (issue 20: unbuffered stages teed into $OUT, dependencies checked, 6 minutes).
echo "gpu_issue16.sh: replaced by benchmarks/gpu_check.sh; running that" >&2
exec bash "$(dirname "$0")/gpu_check.sh" "$@"

#!/usr/bin/env bash
# The README's layer-page picture (doc/layer_page_blocks5.png): the one command on the repository's 11 ImageNet
# photographs, then a headless-Chromium screenshot of the page. Usage: bash scripts/layer_page_picture.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d)}
ls tests/data/images | grep ILSVRC | grep -v _gray > "$work/photos.txt"
python -m dvtoolbox.cli.layer_page --layer _blocks.5 --units 0:4 --N 6 --max-iter 200 \
    tests/data/images "$work/photos.txt" "$work/page"
(cd "$work/page/synthetic" && chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --window-size=820,660 --screenshot="$OLDPWD/doc/layer_page_blocks5.png" index.html)

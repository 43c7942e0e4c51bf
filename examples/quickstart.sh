#!/usr/bin/env bash
# The README's first set-up command: install into .venv, train on the bundled word list, sample, interpolate.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install torch==2.13.0
pip install -e .
textvae train corpora/words_en
textvae generate -n 20
textvae interpolate "sunshine" "thunderstorm"

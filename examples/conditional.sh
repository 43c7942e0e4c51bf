#!/usr/bin/env bash
# A conditional VAE on first names labelled by gender: generate by label, and re-write a name under the other label.
set -euo pipefail
textvae train corpora/names_en/train.tsv --column name --label label --valid corpora/names_en/valid.tsv \
    --out runs/names --epochs 20 --force
textvae generate --model runs/names -n 10 --label female --seed 1
textvae generate --model runs/names -n 10 --label male --seed 1
# guidance (default 1) steers samples towards the label; 0 is plain conditional sampling
textvae generate --model runs/names -n 10 --label male --seed 1 --guidance 0
textvae generate --model runs/names -n 10 --label male --seed 1 --guidance 2
textvae reconstruct --model runs/names oliver --label male --to-label female
textvae evaluate --model runs/names corpora/names_en/test.tsv --column name --label label

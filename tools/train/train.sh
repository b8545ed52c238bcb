#!/usr/bin/env bash
# Reproduces test/fixtures/models/longctx from scratch (dev-time; about 70 minutes on 2 cores).
# Needs: npm run build, Debian's python3-torch, libopenblas0-pthread (Debian's torch 1.13 links the
# reference BLAS otherwise: 25x slower) and libtcmalloc-minimal4 (glibc's allocator returns every large
# attention buffer to the kernel: 15x slower elementwise ops).
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-/tmp/capserve-longctx-data}
OUT=${OUT:-test/fixtures/models/longctx}
TOK=${TOK:-../shared/models/stories260K}
rm -rf "$DATA" && mkdir -p "$DATA" "$OUT"
node tools/train/make-data.mjs --out "$DATA" --length 512 --rows 20000 --seed 11 --min-length 200 --tokenizer "$TOK"
node tools/train/make-data.mjs --out "$DATA" --length 2048 --rows 2000 --seed 12 --tokenizer "$TOK"
node tools/train/make-data.mjs --out "$DATA" --length 8192 --rows 300 --seed 13 --min-length 4000 --tokenizer "$TOK"
LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 /usr/bin/python3 tools/train/train.py \
  --data "$DATA" --out "$OUT" --tokenizer "$TOK" --seed 1234 \
  --hidden 256 --layers 4 --heads 8 --kv-heads 4 --ffn 704 --rope-theta 500000 --max-positions 8192 \
  --phases 512:380:8192,2048:60:16384,8192:24:16384 --save-every 20
rm -f "$OUT/checkpoint.pt"

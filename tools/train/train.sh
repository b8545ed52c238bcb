#!/usr/bin/env bash
# The long-context model's training recipe, as run on 2026-12-02 (second attempt; 2 cores shared with
# other work): seeded stages, each starting from the previous stage's checkpoint. Dev-time only.
# Needs: npm run build, Debian's python3-torch, libopenblas0-pthread (Debian's torch 1.13 links the
# reference BLAS otherwise: 25x slower GEMM) and libtcmalloc-minimal4 (glibc's allocator returns every
# large attention buffer to the kernel: 15x slower elementwise ops).
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-/tmp/capserve-longctx-data}
WORK=${WORK:-/tmp/capserve-longctx}
TOK=${TOK:-../shared/models/stories260K}
export LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
mkdir -p "$DATA" "$WORK"
node tools/train/make-data.mjs --out "$DATA" --length 512 --rows 20000 --seed 11 --min-length 200 --tokenizer "$TOK"
node tools/train/make-data.mjs --out "$DATA" --length 2048 --rows 2000 --seed 12 --min-length 1000 --tokenizer "$TOK"
node tools/train/make-data.mjs --out "$DATA" --length 8192 --rows 400 --seed 13 --min-length 4000 --tokenizer "$TOK"
SHAPE=(--hidden 192 --layers 3 --heads 6 --kv-heads 3 --ffn 512 --rope-theta 500000 --max-positions 8192 --tokenizer "$TOK")
stage() { # NAME INIT ARGS...
  local name=$1 init=$2; shift 2
  mkdir -p "$WORK/$name"
  /usr/bin/python3 tools/train/train.py "${SHAPE[@]}" --out "$WORK/$name" ${init:+--init "$WORK/$init/checkpoint.pt"} "$@"
}
# 1. Induction warm-up: rows that are one random span repeated, with two layer-0 KV groups
#    initialised as previous-token heads (copy accuracy 0.07 -> 0.95 between steps 180 and 280).
stage s1 "" --data "$DATA" --threads 1 --lr 2e-3 --warmup 30 --answer-weight 1 --pure-copy 1 --prev-token-groups 2 \
  --phases 128:2000:4096 --seed 7 --save-every 50 --stop-after 300
# 2. Tasks at up to 512 tokens (answers x5, text x0.5), a quarter of each batch still pure-copy rows.
stage s2 s1 --data "$DATA" --threads 2 --lr 2e-3 --warmup 10 --answer-weight 5 --text-weight 0.5 --mix-pure-copy 0.25 \
  --phases 512:800:4096 --seed 8 --save-every 25 --stop-after 450
# 3. Tasks at 1,000-2,048 tokens.
stage s3 s2 --data "$DATA" --threads 2 --lr 1.5e-3 --warmup 10 --answer-weight 5 --text-weight 0.5 \
  --phases 2048:300:4096 --seed 9 --save-every 20 --stop-after STOP3

#!/usr/bin/env bash
# The long-context model's training recipe, exactly as run on 2026-12-02 (2 cores, about 75 minutes of
# training in all): seeded stages, each starting from the previous stage's checkpoint. Dev-time only.
# Needs: npm run build, Debian's python3-torch, libopenblas0-pthread (Debian's torch 1.13 links the
# reference BLAS otherwise: 25x slower GEMM) and libtcmalloc-minimal4 (glibc's allocator returns every
# large attention buffer to the kernel: 15x slower elementwise ops).
#
# Status: these stages did NOT produce a model that retrieves (teacher-forced pass-key answer tokens
# 0.24-0.48 correct, random-span copying at chance after ~1,200 steps); see tools/train/README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-/tmp/capserve-longctx-data}
WORK=${WORK:-/tmp/capserve-longctx}
TOK=${TOK:-../shared/models/stories260K}
export LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
mkdir -p "$DATA/a" "$DATA/b" "$WORK"
node tools/train/make-data.mjs --out "$DATA/a" --length 512 --rows 20000 --seed 11 --min-length 200 --tokenizer "$TOK"
node tools/train/make-data.mjs --out "$DATA/a" --length 2048 --rows 2000 --seed 12 --tokenizer "$TOK"
node tools/train/make-data.mjs --out "$DATA/a" --length 8192 --rows 300 --seed 13 --min-length 4000 --tokenizer "$TOK"
node tools/train/make-data.mjs --out "$DATA/b" --length 256 --rows 24000 --seed 21 --min-length 180 --text-share 0.05 --tokenizer "$TOK"
SHAPE=(--hidden 256 --layers 4 --heads 8 --kv-heads 4 --ffn 704 --rope-theta 500000 --max-positions 8192 --tokenizer "$TOK")
stage() { # NAME INIT ARGS...
  local name=$1 init=$2; shift 2
  mkdir -p "$WORK/$name"
  /usr/bin/python3 tools/train/train.py "${SHAPE[@]}" --out "$WORK/$name" ${init:+--init "$WORK/$init/checkpoint.pt"} "$@"
}
# 1. Text + tasks at 512 tokens (schedule planned for 512/2048/8192 phases; stopped at 320).
stage s1 "" --data "$DATA/a" --seed 1234 --phases 512:380:8192,2048:60:16384,8192:24:16384 --stop-after 320
# 2. Short rows, mostly pass keys, answers weighted 10.
stage s2 s1 --data "$DATA/b" --seed 1236 --lr 3e-3 --warmup 10 --answer-weight 10 --phases 256:1000:4096 --stop-after 60
# 3. Half the rows with a span of their own text repeated (copy).
stage s3 s2 --data "$DATA/b" --seed 1237 --lr 3e-3 --warmup 10 --answer-weight 10 --copy-share 0.5 --copy-mode text --phases 256:1000:4096 --stop-after 80
# 4-6. Random-token spans repeated (induction), half then all of the rows.
stage s4 s3 --data "$DATA/b" --seed 1238 --lr 3e-3 --warmup 10 --answer-weight 10 --copy-share 0.5 --phases 256:1000:4096 --stop-after 160
stage s5 s4 --data "$DATA/b" --seed 1239 --lr 3e-3 --warmup 5 --answer-weight 10 --copy-share 0.5 --phases 256:1000:4096 --stop-after 220
stage s6 s5 --data "$DATA/b" --seed 1240 --lr 3e-3 --warmup 5 --answer-weight 10 --copy-share 1.0 --phases 256:1000:4096 --stop-after 160
# 7. Pure induction warm-up: rows that are one random span repeated.
stage s7 s6 --data "$DATA/b" --seed 1241 --lr 2e-3 --warmup 5 --answer-weight 1 --pure-copy 1 --phases 128:400:8192

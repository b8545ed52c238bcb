#!/usr/bin/env python3
"""Teacher-forced induction probe of a train.py checkpoint: accuracy on the repeated half of
pure-copy rows (random spans repeated), the signal that induction heads have formed.
usage: eval_copy.py CHECKPOINT.pt --hidden H --layers L --heads N --kv-heads K --ffn F [--length 256]"""
import argparse
import sys

import numpy as np
import torch

sys.path.insert(0, __file__.rsplit('/', 1)[0])
from train import Model, pure_copy_rows  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument('checkpoint')
for name, default in (('hidden', 256), ('layers', 4), ('heads', 8), ('kv-heads', 4), ('ffn', 704), ('vocab', 512), ('length', 256), ('rows', 16), ('q-chunk', 1024)):
    p.add_argument(f'--{name}', type=int, default=default)
p.add_argument('--rope-theta', type=float, default=500000.0)
a = p.parse_args()
torch.set_num_threads(1)
model = Model(a)
model.load_state_dict(torch.load(a.checkpoint))
model.eval()
ids, w = pure_copy_rows(np.random.default_rng(99), a.rows, a.length)
x = torch.from_numpy(ids.astype(np.int64))
with torch.no_grad():
    pred = model(x[:, :-1]).argmax(-1)
ans = torch.from_numpy(w[:, 1:] == 2)
print(f'copy accuracy at {a.length}: {float(((pred == x[:, 1:]) & ans).sum() / ans.sum()):.3f}')

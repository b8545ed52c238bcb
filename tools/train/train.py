#!/usr/bin/env python3
"""Train capserve's long-context test model: a small Llama in Hugging Face layout.

Dev-time tool (Debian's python3-torch; never a runtime dependency, never run by CI).
Data: rows written by tools/train/make-data.mjs (RULER-style tasks hidden in
../shared/data/text haystacks, plus plain text rows), in a length curriculum given
by --phases "LEN:STEPS:TOKENS_PER_STEP,...". Loss: next-token cross-entropy on every
text token, answer tokens weighted by --answer-weight.

Writes OUT/{config.json, model.safetensors, generation_config.json, tokenizer.json,
tokenizer_config.json, train-log.json}. Seeded; `tools/train/train.sh` is the one
command that reproduces the committed model.
"""
import argparse
import json
import math
import os
import shutil
import struct
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def rms_norm(x, w, eps):
    var = x.pow(2).mean(-1, keepdim=True)
    return x * torch.rsqrt(var + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Block(nn.Module):
    def __init__(self, a):
        super().__init__()
        d, hd = a.hidden, a.hidden // a.heads
        self.heads, self.kv_heads, self.hd, self.eps = a.heads, a.kv_heads, hd, 1e-5
        self.input_layernorm = nn.Parameter(torch.ones(d))
        self.post_attention_layernorm = nn.Parameter(torch.ones(d))
        self.q_proj = nn.Linear(d, a.heads * hd, bias=False)
        self.k_proj = nn.Linear(d, a.kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(d, a.kv_heads * hd, bias=False)
        self.o_proj = nn.Linear(a.heads * hd, d, bias=False)
        self.gate_proj = nn.Linear(d, a.ffn, bias=False)
        self.up_proj = nn.Linear(d, a.ffn, bias=False)
        self.down_proj = nn.Linear(a.ffn, d, bias=False)
        self.q_chunk = a.q_chunk

    def attend(self, q, k, v, q0):
        # q: [B,H,Tq,hd] for query positions q0.., k/v: [B,H,Tk,hd]; causal.
        tq, tk = q.shape[2], k.shape[2]
        s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.hd)
        qi = torch.arange(q0, q0 + tq).unsqueeze(1)
        ki = torch.arange(tk).unsqueeze(0)
        s = s.masked_fill(ki > qi, float('-inf'))
        return torch.matmul(torch.softmax(s, dim=-1), v)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        h = rms_norm(x, self.input_layernorm, self.eps)
        q = self.q_proj(h).view(b, t, self.heads, self.hd).transpose(1, 2)
        k = self.k_proj(h).view(b, t, self.kv_heads, self.hd).transpose(1, 2)
        v = self.v_proj(h).view(b, t, self.kv_heads, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.heads // self.kv_heads
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        if t <= self.q_chunk:
            o = self.attend(q, k, v, 0)
        else:
            # Query blocks, each recomputed in backward: memory O(T * chunk) instead of O(T^2).
            outs = []
            for q0 in range(0, t, self.q_chunk):
                q1 = min(t, q0 + self.q_chunk)
                outs.append(checkpoint(self.attend, q[:, :, q0:q1], k[:, :, :q1], v[:, :, :q1], q0, use_reentrant=False))
            o = torch.cat(outs, dim=2)
        x = x + self.o_proj(o.transpose(1, 2).reshape(b, t, -1))
        h = rms_norm(x, self.post_attention_layernorm, self.eps)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Model(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.a = a
        self.embed_tokens = nn.Embedding(a.vocab, a.hidden)
        self.layers = nn.ModuleList([Block(a) for _ in range(a.layers)])
        self.norm = nn.Parameter(torch.ones(a.hidden))
        hd = a.hidden // a.heads
        self.register_buffer('inv_freq', 1.0 / (a.rope_theta ** (torch.arange(0, hd, 2).float() / hd)), persistent=False)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
        for blk in self.layers:
            nn.init.normal_(blk.o_proj.weight, std=0.02 / math.sqrt(2 * a.layers))
            nn.init.normal_(blk.down_proj.weight, std=0.02 / math.sqrt(2 * a.layers))

    def forward(self, ids):
        t = ids.shape[1]
        pos = torch.arange(t).float()
        freqs = torch.outer(pos, self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos()[None, None], emb.sin()[None, None]
        x = self.embed_tokens(ids)
        for blk in self.layers:
            # Only the attention query blocks are recomputed in backward (Block.forward); a block's other
            # activations are small at this width (about 20 x T x hidden floats).
            x = blk(x, cos, sin)
        x = rms_norm(x, self.norm, 1e-5)
        return x @ self.embed_tokens.weight.t()


PREV_TOKEN_PAIR_WEIGHTS = [0.134, 0.154, 0.093, 0.093, 0.093, 0.093, 0.073, 0.052, 0.073, 0.073, 0.011, 0.011, 0.011, 0.011, 0.011, 0.011]


def init_previous_token_heads(model, a, groups, rng_seed):
    """Structured initialisation (then trained like every other weight): in layer 0, the first
    `groups` KV groups become previous-token heads. Every token embedding gets a constant last
    coordinate, so after RMSNorm the hidden state carries a constant direction; the group's keys and
    its first query head read only that direction, and their RoPE pairs are phased so that
    q_t . k_s peaks at s = t - 1 (a sharp peak from the fast pairs, a distance penalty from the slow
    ones). The value projection reads the token coordinates and the output projection writes them to
    a random subspace: every position then carries its predecessor's identity, the half of an
    induction circuit that otherwise takes a long plateau to appear (Olsson et al. 2022)."""
    g = torch.Generator().manual_seed(rng_seed)
    hd, h = a.hidden // a.heads, a.hidden
    c = h - 1
    rep = a.heads // a.kv_heads
    inv = model.inv_freq
    half = hd // 2
    with torch.no_grad():
        emb = model.embed_tokens.weight
        # Equal-norm rows: the RMSNorm scale (and so the positional score) is then the same at every token.
        emb[:, :c] = emb[:, :c] / emb[:, :c].norm(dim=1, keepdim=True) * emb[:, :c].norm(dim=1).mean()
        emb[:, c] = emb[:, :c].norm(dim=1).mean()
        blk = model.layers[0]
        # After RMSNorm the constant coordinate is sqrt(h / 2).
        kappa = math.sqrt(h / 2)
        # Per-pair weights maximising the worst margin of the peak at offset 1 over offsets 0..8192
        # (found numerically for theta 5e5, head_dim 32: 0.078 of the total weight); a total of 110
        # gives the peak a margin of about 8.6 logits over any other position.
        pair_w = torch.tensor(PREV_TOKEN_PAIR_WEIGHTS) if half == 16 else torch.ones(half) / half
        amp = torch.sqrt(110.0 * pair_w * math.sqrt(hd)) / kappa
        for grp in range(groups):
            kr = slice(grp * hd, (grp + 1) * hd)
            blk.k_proj.weight[kr] = 0
            blk.k_proj.weight[kr, c] = torch.cat([amp, torch.zeros(half)])
            qh = grp * rep
            qr = slice(qh * hd, (qh + 1) * hd)
            blk.q_proj.weight[qr] = 0
            # Pair j of q is rotated by t*f_j, of k by s*f_j; with k = (amp, 0) and
            # q = amp*(cos f_j, -sin f_j) the score is sum_j amp^2 kappa^2 cos(f_j (t - s - 1)).
            blk.q_proj.weight[qr, c] = torch.cat([amp * torch.cos(inv), -amp * torch.sin(inv)])
            blk.v_proj.weight[kr] = torch.randn(hd, h, generator=g) / math.sqrt(h)
            blk.v_proj.weight[kr, c] = 0
            blk.o_proj.weight[:, qh * hd:(qh + 1) * hd] = torch.randn(h, hd, generator=g) / math.sqrt(hd)


def hf_state(model):
    out = {'model.embed_tokens.weight': model.embed_tokens.weight, 'model.norm.weight': model.norm}
    for i, blk in enumerate(model.layers):
        p = f'model.layers.{i}.'
        out[p + 'input_layernorm.weight'] = blk.input_layernorm
        out[p + 'post_attention_layernorm.weight'] = blk.post_attention_layernorm
        for n in ('q_proj', 'k_proj', 'v_proj', 'o_proj'):
            out[p + f'self_attn.{n}.weight'] = getattr(blk, n).weight
        for n in ('gate_proj', 'up_proj', 'down_proj'):
            out[p + f'mlp.{n}.weight'] = getattr(blk, n).weight
    return {k: v.detach().float().contiguous().numpy() for k, v in out.items()}


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name], dtype='<f4')
        header[name] = {'dtype': 'F32', 'shape': list(arr.shape), 'data_offsets': [offset, offset + arr.nbytes]}
        offset += arr.nbytes
        blobs.append(arr.tobytes())
    header['__metadata__'] = {'format': 'pt'}
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def save(model, a, out, log):
    os.makedirs(out, exist_ok=True)
    hd = a.hidden // a.heads
    config = {
        'architectures': ['LlamaForCausalLM'], 'model_type': 'llama', 'attention_bias': False, 'attention_dropout': 0.0,
        'bos_token_id': 1, 'eos_token_id': 2, 'head_dim': hd, 'hidden_act': 'silu', 'hidden_size': a.hidden,
        'initializer_range': 0.02, 'intermediate_size': a.ffn, 'max_position_embeddings': a.max_positions,
        'mlp_bias': False, 'num_attention_heads': a.heads, 'num_hidden_layers': a.layers,
        'num_key_value_heads': a.kv_heads, 'rms_norm_eps': 1e-5, 'rope_scaling': None, 'rope_theta': a.rope_theta,
        'tie_word_embeddings': True, 'torch_dtype': 'float32', 'vocab_size': a.vocab,
    }
    with open(os.path.join(out, 'config.json'), 'w') as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(out, 'generation_config.json'), 'w') as f:
        json.dump({'bos_token_id': 1, 'eos_token_id': 2, 'do_sample': False}, f, indent=2)
    for name in ('tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'):
        src = os.path.join(a.tokenizer, name)
        if os.path.exists(src):
            shutil.copy(src, os.path.join(out, name))
    write_safetensors(os.path.join(out, 'model.safetensors'), hf_state(model))
    with open(os.path.join(out, 'train-log.json'), 'w') as f:
        json.dump(log, f, indent=1)


def make_text_copy_row(row, weight, rng):
    """In place: a span of the row's own tokens repeated later in it, the repeat weighted 2 (answer)."""
    n = int((weight > 0).sum()) + 1
    span = int(rng.integers(8, 33))
    if n < 4 * span:
        return
    src = int(rng.integers(1, n // 2 - span))
    dst = int(rng.integers(src + span + 8, n - span))
    row[dst:dst + span] = row[src:src + span].copy()
    weight[1:n] = 1
    weight[dst + 1:dst + span] = 2
    weight[n:] = 0


def make_copy_row(row, weight, rng):
    """In place: spans of random tokens written into the row, each repeated later in it
    (induction: the repeat is predictable only by copying), the repeats weighted 2 (answer)."""
    n = int((weight > 0).sum()) + 1
    weight[1:n] = 1
    weight[n:] = 0
    for _ in range(2):
        span = int(rng.integers(6, 25))
        if n < 4 * span + 16:
            return
        src = int(rng.integers(1, n // 2 - span))
        dst = int(rng.integers(src + span + 4, n - span))
        row[src:src + span] = rng.integers(3, 512, size=span)
        row[dst:dst + span] = row[src:src + span]
        weight[src:src + span] = 1
        weight[dst + 1:dst + span] = 2


def pure_copy_rows(rng, n, length):
    """Rows of BOS + a random span (8 to 40 tokens) repeated to the end; every repeat weighted 2."""
    ids = np.zeros((n, length), dtype=np.int16)
    w = np.zeros((n, length), dtype=np.uint8)
    for r in range(n):
        span = int(rng.integers(8, 41))
        seq = rng.integers(3, 512, size=span)
        reps = np.tile(seq, length // span + 1)[: length - 1]
        ids[r, 0] = 1
        ids[r, 1:] = reps
        w[r, 1:] = 1
        w[r, 1 + span:] = 2
    return ids, w


def skip_bigram_rows(rng, n, length):
    """Rows of BOS + pairs of random tokens each repeated 3 times ("a b a b a b c d c d c d ..."): the
    token after "a b" is the one two back, so a head attending to the previous token pays off at once
    (the first half of an induction circuit); repeats weighted 2."""
    ids = np.zeros((n, length), dtype=np.int16)
    w = np.zeros((n, length), dtype=np.uint8)
    for r in range(n):
        ids[r, 0] = 1
        pos = 1
        while pos < length:
            pair = rng.integers(3, 512, size=2)
            block = np.tile(pair, 3)[: length - pos]
            ids[r, pos:pos + block.size] = block
            w[r, pos:pos + block.size] = 1
            w[r, pos + 2:pos + block.size] = 2
            pos += block.size
    return ids, w


def load_rows(path, length):
    raw = np.fromfile(path, dtype=np.uint8)
    n = raw.size // (3 * length)
    ids = raw[: n * length * 2].view(np.int16).reshape(n, length)
    w = raw[n * length * 2:].reshape(n, length)
    return ids, w


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--data', required=True, help='directory of rows-LEN-SEED.bin files')
    p.add_argument('--out', required=True)
    p.add_argument('--tokenizer', required=True)
    p.add_argument('--phases', required=True, help='LEN:STEPS:TOKENS_PER_STEP,...')
    p.add_argument('--hidden', type=int, default=256)
    p.add_argument('--layers', type=int, default=4)
    p.add_argument('--heads', type=int, default=8)
    p.add_argument('--kv-heads', type=int, default=4)
    p.add_argument('--ffn', type=int, default=704)
    p.add_argument('--vocab', type=int, default=512)
    p.add_argument('--rope-theta', type=float, default=500000.0)
    p.add_argument('--max-positions', type=int, default=16384)
    p.add_argument('--lr', type=float, default=2e-3)
    p.add_argument('--answer-weight', type=float, default=4.0)
    p.add_argument('--q-chunk', type=int, default=1024)
    p.add_argument('--seed', type=int, default=1234)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--init', help='resume from a train checkpoint (.pt)')
    p.add_argument('--save-every', type=int, default=100)
    p.add_argument('--warmup', type=int, default=100)
    p.add_argument('--copy-mode', choices=('random', 'text'), default='random')
    p.add_argument('--pure-copy', type=int, default=0, help='LEN: rows of LEN tokens that are only a random span repeated (induction warm-up); no data files')
    p.add_argument('--stop-after', type=int, default=0, help='stop (and save) after this many steps of the schedule')
    p.add_argument('--text-weight', type=float, default=1.0, help='loss weight of plain text tokens (answers get --answer-weight)')
    p.add_argument('--skip-bigram-share', type=float, default=0.0, help='with --pure-copy: share of rows that are repeated random pairs (previous-token warm-up)')
    p.add_argument('--prev-token-groups', type=int, default=0, help='from scratch: initialise this many layer-0 KV groups as previous-token heads')
    p.add_argument('--mix-pure-copy', type=float, default=0.0, help='share of each batch replaced by pure-copy rows of the phase length')
    p.add_argument('--copy-share', type=float, default=0.0,
                   help='share of rows turned into induction (copy) rows: a span of the row repeated later, the repeat weighted as an answer')
    a = p.parse_args()
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    torch.set_num_threads(a.threads)
    model = Model(a)
    if a.init:
        model.load_state_dict(torch.load(a.init))
    elif a.prev_token_groups:
        init_previous_token_heads(model, a, a.prev_token_groups, a.seed)
    nparams = sum(x.numel() for x in model.parameters())
    phases = [tuple(int(v) for v in s.split(':')) for s in a.phases.split(',')]
    total = sum(s for _, s, _ in phases)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.1)
    log = {'args': vars(a), 'params': nparams, 'steps': []}
    print(f'params {nparams}, phases {phases}', flush=True)
    step, t_start = 0, time.time()
    rng = np.random.default_rng(a.seed)
    for length, steps, tokens_per_step in phases:
        if a.stop_after and step >= a.stop_after:
            break
        if a.pure_copy:
            ids, w = pure_copy_rows(rng, 20000, length)
        else:
            files = sorted(f for f in os.listdir(a.data) if f.startswith(f'rows-{length}-'))
            ids, w = zip(*(load_rows(os.path.join(a.data, f), length) for f in files))
            ids, w = np.concatenate(ids), np.concatenate(w)
        batch = max(1, tokens_per_step // length)
        print(f'phase {length}: {ids.shape[0]} rows, batch {batch}, {steps} steps', flush=True)
        for _ in range(steps):
            warm = min(1.0, (step + 1) / a.warmup)
            lr = a.lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / total)))
            for g in opt.param_groups:
                g['lr'] = lr
            n_copy = 0
            pick = rng.integers(0, ids.shape[0], size=batch)
            xb = ids[pick].astype(np.int64)
            wb = w[pick].astype(np.float32)
            n_skip = int(round(batch * a.skip_bigram_share)) if a.pure_copy else 0
            if n_skip:
                sx, sw = skip_bigram_rows(rng, n_skip, length)
                xb[batch - n_skip:], wb[batch - n_skip:] = sx, sw
            if a.mix_pure_copy > 0 and not a.pure_copy:
                n_copy = int(round(batch * a.mix_pure_copy))
                if 0 < n_copy:
                    cx, cw = pure_copy_rows(rng, n_copy, length)
                    xb[:n_copy], wb[:n_copy] = cx, cw
            for r in range(batch):
                if rng.random() < a.copy_share:
                    (make_copy_row if a.copy_mode == 'random' else make_text_copy_row)(xb[r], wb[r], rng)
            x = torch.from_numpy(xb)
            wt = torch.from_numpy(wb)
            tw = wt[:, 1:]
            weight = torch.where(tw == 2, torch.full_like(tw, a.answer_weight), tw * a.text_weight)
            logits = model(x[:, :-1])
            nll = F.cross_entropy(logits.reshape(-1, a.vocab), x[:, 1:].reshape(-1), reduction='none').view_as(weight)
            loss = (nll * weight).sum() / weight.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            with torch.no_grad():
                ans = (tw == 2)
                ans_nll = float((nll * ans).sum() / ans.sum().clamp(min=1))
                ans_acc = float(((logits.argmax(-1) == x[:, 1:]) & ans).sum() / ans.sum().clamp(min=1))
                task_ans = ans[n_copy:]
                task_acc = float(((logits[n_copy:].argmax(-1) == x[n_copy:, 1:]) & task_ans).sum() / task_ans.sum().clamp(min=1))
                txt = (tw == 1)
                txt_nll = float((nll * txt).sum() / txt.sum().clamp(min=1))
            step += 1
            rec = {'step': step, 'len': length, 'lr': lr, 'loss': float(loss), 'text_nll': txt_nll, 'answer_nll': ans_nll,
                   'answer_acc': ans_acc, 'task_answer_acc': task_acc, 'elapsed_s': round(time.time() - t_start, 1)}
            log['steps'].append(rec)
            if step % 10 == 0:
                print(json.dumps(rec), flush=True)
            if a.stop_after and step >= a.stop_after:
                break
            if step % a.save_every == 0:
                torch.save(model.state_dict(), os.path.join(a.out, 'checkpoint.pt'))
                save(model, a, a.out, log)
    log['wall_s'] = round(time.time() - t_start, 1)
    torch.save(model.state_dict(), os.path.join(a.out, 'checkpoint.pt'))
    save(model, a, a.out, log)
    print(f'done in {log["wall_s"]} s', flush=True)


if __name__ == '__main__':
    main()

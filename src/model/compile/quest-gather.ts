/**
 * Quest's page selection in the graph (the attention block's quest variant): the layer's page
 * bound inputs and the gather of the top-k pages' K/V and bias.
 */
import { attr, type GraphBuilder } from '../onnx/graph-builder.js';

export interface QuestValues {
  readonly pageMin: string;
  readonly pageMax: string;
  readonly pageBias: string;
  readonly k: string;
}

/** The names of one layer's Quest inputs (AttentionLayerIo.quest). */
export interface QuestInputNames {
  readonly pageMin: string;
  readonly pageMax: string;
  readonly pageBias: string;
  readonly k: string;
  readonly pages: string;
}

/** The past the quest core reads: K/V [B, KV, C, D] and bias [B, 1|KV, 1|T, C]. */
export interface QuestPast {
  readonly pastK: string;
  readonly pastV: string;
  readonly pastBias: string;
}

/**
 * One layer's Quest inputs. In a graph holding every variant, steps of other
 * variants feed placeholders (one page, batch 1), so the batch dimension has its own name.
 */
export function questInputs(g: GraphBuilder, names: QuestInputNames, dims: { KV: number; D: number }, switched: boolean): QuestValues {
  const { KV, D } = dims;
  const batch = switched ? 'QB' : 'B';
  return {
    pageMin: g.input(names.pageMin, 'float32', [batch, KV, names.pages, D]),
    pageMax: g.input(names.pageMax, 'float32', [batch, KV, names.pages, D]),
    pageBias: g.input(names.pageBias, 'float32', [batch, KV, names.pages]),
    k: g.input(names.k, 'int64', [1]),
  };
}

/**
 * Quest's selection for one layer (decode, T = 1): page bounds come in from the
 * KV store ([B, KV, NP, D] per-channel min and max of the page's keys); a KV
 * head scores a page by the largest bound over its group's query heads, plus
 * page_bias (the engine pins the newest page, blocks padding pages); the top
 * quest_k pages' entries are gathered, so attention reads only them.
 */
export function questGather(
  g: GraphBuilder,
  l: number,
  qGrouped: string,
  past: QuestPast,
  pageSize: string,
  quest: QuestValues,
  dims: { KV: number; D: number },
): { pk: string; pv: string; pb: string } {
  const { KV, D } = dims;
  const { pastK, pastV, pastBias } = past;
  const { pageMin, pageMax, pageBias, k } = quest;
  // sum_c max(q_c min_c, q_c max_c) = relu(q) . max + min(q, 0) . min: two matrix products over
  // the page bounds ([B, KV, G*T, D] x [B, KV, NP, D]^T, T = 1), nothing of size pages x channels built.
  const qPos = g.op('Relu', [qGrouped]);
  const qNeg = g.op('Min', [qGrouped, g.scalarF32(0)]);
  const product = (a: string, b: string): string =>
    g.op('FusedMatMul', [a, b], { transA: attr.int(0), transB: attr.int(1), alpha: attr.float(1) }, 'com.microsoft');
  const bound = g.op('Add', [product(qPos, pageMax), product(qNeg, pageMin)]); // [B, KV, G, NP]
  const pageScore = g.op('Add', [g.op('ReduceMax', [bound], { axes: attr.ints([2]), keepdims: attr.int(0) }), pageBias]); // [B, KV, NP]
  const [, pages] = g.node(
    'TopK',
    [pageScore, k],
    { axis: attr.int(-1), largest: attr.int(1), sorted: attr.int(0) },
    {
      outputs: [`qv_${l}`, `qi_${l}`],
    },
  );
  if (!pages) throw new Error('unreachable');
  // Attend the chosen pages in cache order, so summation order matches dense attention.
  const [ascending] = g.node(
    'TopK',
    [g.op('Cast', [pages], { to: attr.int(1) }), k],
    { axis: attr.int(-1), largest: attr.int(0), sorted: attr.int(1) },
    {
      outputs: [`qs_${l}`, `qsi_${l}`],
    },
  );
  if (!ascending) throw new Error('unreachable');
  const ordered = g.op('Cast', [ascending], { to: attr.int(7) });
  // Pages are whole blocks of the cache (capacity is a multiple of the page size), so one GatherND
  // per tensor copies only the chosen pages, contiguous rows of pageSize x D floats.
  const idx = g.op('Unsqueeze', [ordered, g.int64s([-1])]); // [B, KV, k, 1]
  const paged = (x: string, width: number): string =>
    g.op('Reshape', [
      x,
      g.op('Concat', [g.op('Shape', [x], { start: attr.int(0), end: attr.int(2) }), g.int64s([-1]), g.op('Mul', [pageSize, g.int64s([width])])], {
        axis: attr.int(0),
      }),
    ]);
  const pick = (x: string, width: number): string => g.op('GatherND', [paged(x, width), idx], { batch_dims: attr.int(2) }); // [B, KV, k, ps*width]
  const pk = g.op('Reshape', [pick(pastK, D), g.int64s([0, 0, -1, D])]);
  const pv = g.op('Reshape', [pick(pastV, D), g.int64s([0, 0, -1, D])]);
  const cap = g.op('Shape', [pastK], { start: attr.int(2), end: attr.int(3) });
  const biasFull = g.op('Expand', [
    pastBias,
    g.op('Concat', [g.op('Shape', [pastBias], { start: attr.int(0), end: attr.int(1) }), g.int64s([KV, 1]), cap], { axis: attr.int(0) }),
  ]);
  const pb = g.op('Reshape', [pick(g.op('Squeeze', [biasFull, g.int64s([2])]), 1), g.int64s([0, 0, 1, -1])]); // [B, KV, 1, k*ps]
  return { pk, pv, pb };
}

import * as tf from '@tensorflow/tfjs-core';
import { batchMatMul } from '../backends/matmul';

/** A large negative additive bias for masked logits: exp() underflows to exactly 0, without -Inf NaNs. */
export const MASKED_LOGIT = -1e9;

/** [B, N, H·d] → [B, H, N, d] */
export function splitHeads(x: tf.Tensor, heads: number): tf.Tensor4D {
  const [b, n, c] = x.shape;
  if (c % heads !== 0) throw new Error(`splitHeads: ${c} channels are not divisible by ${heads} heads`);
  return tf.transpose(tf.reshape(x, [b, n, heads, c / heads]), [0, 2, 1, 3]); // [B, H, N, d]
}

/** [B, H, N, d] → [B, N, H·d] */
export function mergeHeads(x: tf.Tensor): tf.Tensor3D {
  const [b, h, n, d] = x.shape;
  return tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [b, n, h * d]); // [B, N, H·d]
}

/** Additive bias from a key mask [B, Nk] (1 = real): [B, 1, 1, Nk] with 0 or MASKED_LOGIT. */
export function keyMaskBias(mask: tf.Tensor): tf.Tensor4D {
  const [b, n] = mask.shape;
  return tf.reshape(tf.mul(tf.sub(1, tf.cast(mask, 'float32')), MASKED_LOGIT), [b, 1, 1, n]); // [B, 1, 1, Nk]
}

/** Additive causal bias [1, 1, N, N]: position i sees keys j ≤ i. */
export function causalBias(n: number): tf.Tensor4D {
  const visible = tf.linalg.bandPart(tf.ones([n, n]), -1, 0); // lower triangle
  return tf.reshape(tf.mul(tf.sub(1, visible), MASKED_LOGIT), [1, 1, n, n]);
}

/**
 * softmax(q·kᵀ·scale + bias)·v. q [B, H, Nq, d], k and v [B, H, Nk, d], bias broadcastable to
 * [B, H, Nq, Nk]. Returns [B, H, Nq, d]; with `returnProbs` also the probabilities.
 */
export function scaledDotProductAttention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, options: { bias?: tf.Tensor; scale?: number } = {}): tf.Tensor4D {
  return attentionWithProbs(q, k, v, options).out;
}

/** As scaledDotProductAttention, also returning the attention probabilities [B, H, Nq, Nk]. */
export function attentionWithProbs(
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  options: { bias?: tf.Tensor; scale?: number } = {},
): { out: tf.Tensor4D; probs: tf.Tensor4D } {
  const d = q.shape[3];
  if (k.shape[3] !== d || v.shape[2] !== k.shape[2]) {
    throw new Error(`attention: q [${q.shape}], k [${k.shape}], v [${v.shape}] do not fit`);
  }
  const scale = options.scale ?? 1 / Math.sqrt(d);
  const [b, h, nq] = q.shape;
  const nk = k.shape[2];
  const kt = tf.reshape(tf.transpose(k, [0, 1, 3, 2]), [b * h, d, nk]); // [B·H, d, Nk]
  const qk = batchMatMul(tf.reshape(q, [b * h, nq, d]) as tf.Tensor3D, kt as tf.Tensor3D); // [B·H, Nq, Nk]
  let logits: tf.Tensor = tf.mul(tf.reshape(qk, [b, h, nq, nk]), scale); // [B, H, Nq, Nk]
  if (options.bias) logits = tf.add(logits, options.bias);
  const probs = tf.softmax(logits) as tf.Tensor4D;
  const out = batchMatMul(tf.reshape(probs, [b * h, nq, nk]) as tf.Tensor3D, tf.reshape(v, [b * h, nk, v.shape[3]]) as tf.Tensor3D); // [B·H, Nq, dv]
  return { out: tf.reshape(out, [b, h, nq, v.shape[3]]) as tf.Tensor4D, probs }; // [B, H, Nq, dv]
}

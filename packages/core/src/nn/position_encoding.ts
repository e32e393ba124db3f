// Port of Mask2Former mask2former/modeling/transformer_decoder/position_encoding.py::PositionEmbeddingSine
// (itself DETR's). Deviations: NHWC/token layout [H·W, 2·num_pos_feats]; no padding mask (every
// feature pixel is real), so the table depends on (H, W) only and is computed in JS.
import * as tf from '@tensorflow/tfjs-core';

const cache = new Map<string, Float32Array>();

/**
 * The sine table of an H×W map, row-major tokens: [H·W, 2·numPosFeats] with channels
 * [pos_y (numPosFeats) | pos_x (numPosFeats)], each [sin(e/t₀), cos(e/t₀), sin(e/t₂), cos(e/t₂), …],
 * t_k = temperature^(2⌊k/2⌋/numPosFeats), e = cumsum / (last + 1e-6) · scale when `normalize`.
 */
export function positionEmbeddingSineTable(
  h: number,
  w: number,
  numPosFeats: number,
  options: { temperature?: number; normalize?: boolean; scale?: number } = {},
): Float32Array {
  const { temperature = 10000, normalize = true, scale = 2 * Math.PI } = options;
  const key = `${h}/${w}/${numPosFeats}/${temperature}/${normalize}/${scale}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const c = 2 * numPosFeats;
  const out = new Float32Array(h * w * c);
  const dimT = Array.from({ length: numPosFeats }, (_, k) => temperature ** ((2 * Math.floor(k / 2)) / numPosFeats));
  const eps = 1e-6;
  for (let y = 0; y < h; y++) {
    const ey = normalize ? ((y + 1) / (h + eps)) * scale : y + 1;
    for (let x = 0; x < w; x++) {
      const ex = normalize ? ((x + 1) / (w + eps)) * scale : x + 1;
      const o = (y * w + x) * c;
      for (let k = 0; k < numPosFeats; k++) {
        const trig = k % 2 === 0 ? Math.sin : Math.cos;
        out[o + k] = trig(ey / dimT[k]);
        out[o + numPosFeats + k] = trig(ex / dimT[k]);
      }
    }
  }
  if (cache.size > 64) cache.clear();
  cache.set(key, out);
  return out;
}

/** PositionEmbeddingSine(num_pos_feats = dim/2, normalize=True) of an H×W map as tokens [1, H·W, dim]. */
export function positionEmbeddingSine(h: number, w: number, dim: number): tf.Tensor3D {
  return tf.tensor3d(positionEmbeddingSineTable(h, w, dim / 2), [1, h * w, dim]);
}

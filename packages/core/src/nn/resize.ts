// Torch-exact `F.interpolate` on NHWC tensors as two matMuls with constant interpolation matrices.
// Why not tf.image.resizeBilinear: PyTorch's align_corners=False is tfjs' halfPixelCenters=true,
// and the cpu backend's ResizeBilinearGrad ignores halfPixelCenters (wrong gradients). A matMul
// has exact gradients on every backend.
import * as tf from '@tensorflow/tfjs-core';

export type ResizeMode = 'nearest' | 'bilinear';

const cache = new Map<string, Float32Array>();

/** [outSize, inSize] weights of torch's 1-D interpolation (align_corners=False, size given). */
export function interpolationMatrix(inSize: number, outSize: number, mode: ResizeMode): Float32Array {
  const key = `${inSize}/${outSize}/${mode}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const m = new Float32Array(outSize * inSize);
  const scale = inSize / outSize;
  for (let o = 0; o < outSize; o++) {
    if (mode === 'nearest') {
      m[o * inSize + Math.min(Math.floor(o * scale), inSize - 1)] = 1;
    } else {
      const src = Math.max(scale * (o + 0.5) - 0.5, 0);
      const i0 = Math.min(Math.floor(src), inSize - 1);
      const i1 = Math.min(i0 + 1, inSize - 1);
      const l = src - i0;
      m[o * inSize + i0] += 1 - l;
      m[o * inSize + i1] += l;
    }
  }
  if (cache.size > 256) cache.clear();
  cache.set(key, m);
  return m;
}

/** [B, H, W, C] → [B, outH, outW, C], as torch `F.interpolate(x, size, mode, align_corners=False)`. */
export function resize(x: tf.Tensor4D, size: readonly [number, number], mode: ResizeMode): tf.Tensor4D {
  const [b, h, w, c] = x.shape;
  const [oh, ow] = size;
  let y = x;
  if (oh !== h) {
    const rows = tf.tensor2d(interpolationMatrix(h, oh, mode), [oh, h]);
    const t = tf.reshape(tf.transpose(y, [1, 0, 2, 3]), [h, b * w * c]); // [H, B·W·C]
    y = tf.transpose(tf.reshape(tf.matMul(rows, t), [oh, b, w, c]), [1, 0, 2, 3]); // [B, oh, W, C]
  }
  if (ow !== w) {
    const cols = tf.tensor2d(interpolationMatrix(w, ow, mode), [ow, w]);
    const t = tf.reshape(tf.transpose(y, [2, 0, 1, 3]), [w, b * oh * c]); // [W, B·oh·C]
    y = tf.transpose(tf.reshape(tf.matMul(cols, t), [ow, b, oh, c]), [1, 2, 0, 3]); // [B, oh, ow, C]
  }
  return y;
}

import * as tf from '@tensorflow/tfjs-core';
import { mulberry32 } from '@png/node-utils';
import { BACKENDS, setBackend } from './backend';
import { maxAbsDiff } from '../testing';

describe('setBackend', () => {
  it('refuses an unknown backend, naming the known ones', async () => {
    await expect(setBackend('tensorflow' as never)).rejects.toThrow("unknown backend 'tensorflow'; expected one of wasm, cpu, webgpu, webgl");
    expect(BACKENDS).toEqual(['wasm', 'cpu', 'webgpu', 'webgl']);
  });

  it("refuses 'webgl' in Node, naming the backends to use instead, and keeps the current backend", async () => {
    await setBackend('cpu');
    await expect(setBackend('webgl')).rejects.toThrow(
      /^the 'webgl' backend needs a browser's WebGL and is not available in Node .*use setBackend\('wasm'\).*or setBackend\('webgpu'\)/,
    );
    expect(tf.getBackend()).toBe('cpu');
  });
});

describe('the cpu backend’s ResizeNearestNeighborGrad (replaced by setBackend)', () => {
  // Reference without any gradient kernel: resize is linear per image, so dx = Mᵀ·dy with M's
  // columns the forward resize of one-hot images. tfjs-backend-cpu 4.22's own kernel steps
  // through dy with the input's batch stride: wrong from the second sample on.
  it.each([
    [false, false],
    [true, false],
    [false, true],
  ])('batch 2, 3×4 → 7×5 and 8×8 → 3×4, alignCorners=%s, halfPixelCenters=%s: the adjoint of the forward', async (alignCorners, halfPixelCenters) => {
    await setBackend('cpu');
    const random = mulberry32(5);
    for (const [[h, w], size] of [
      [
        [3, 4],
        [7, 5],
      ],
      [
        [8, 8],
        [3, 4],
      ],
    ] as Array<[[number, number], [number, number]]>) {
      const [B, C] = [2, 2];
      const resize = (x: tf.Tensor4D) => tf.image.resizeNearestNeighbor(x, size, alignCorners, halfPixelCenters);
      const n = h * w * C;
      const m = size[0] * size[1] * C;
      const dy = Float32Array.from({ length: B * m }, () => 2 * random() - 1);
      const cols = await tf.tidy(() => tf.reshape(resize(tf.reshape(tf.eye(n), [n, h, w, C]) as tf.Tensor4D), [n, m])).data(); // row i = M[:, i]
      const expected = new Float32Array(B * n);
      for (let b = 0; b < B; b++) for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) expected[b * n + i] += cols[i * m + j] * dy[b * m + j];
      const x = tf.zeros([B, h, w, C]) as tf.Tensor4D;
      const g = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(resize(v as tf.Tensor4D), tf.tensor(dy, [B, size[0], size[1], C]))))(x);
      expect(g.shape).toEqual([B, h, w, C]);
      expect(maxAbsDiff(await g.data(), expected)).toBeLessThanOrEqual(1e-6);
      tf.dispose([x, g]);
    }
  });
});

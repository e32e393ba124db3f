import * as tf from '@tensorflow/tfjs-core';
import { expectClose, expectNoLeak } from '../testing';
import { setBackend } from './backend';
import { batchMatMul, matMul2d } from './matmul';

describe.each(['cpu', 'wasm'] as const)('products of plain matMuls on %s', (backend) => {
  beforeAll(() => setBackend(backend));

  it('matMul2d and batchMatMul equal tf.matMul, gradients included', async () => {
    const a = tf.randomNormal([5, 3], 0, 1, 'float32', 1) as tf.Tensor2D;
    const b = tf.randomNormal([3, 4], 0, 1, 'float32', 2) as tf.Tensor2D;
    const w = tf.randomNormal([5, 4], 0, 1, 'float32', 3);
    const ours = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(matMul2d(x as tf.Tensor2D, y as tf.Tensor2D), w)))([a, b]);
    const ref = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x as tf.Tensor2D, y as tf.Tensor2D), w)))([a, b]);
    await expectClose(ours[0], await ref[0].data(), 1e-5, 'dA');
    await expectClose(ours[1], await ref[1].data(), 1e-5, 'dB');
    const a3 = tf.randomNormal([3, 5, 2], 0, 1, 'float32', 4) as tf.Tensor3D;
    const b3 = tf.randomNormal([3, 2, 4], 0, 1, 'float32', 5) as tf.Tensor3D;
    const y = batchMatMul(a3, b3); // small: one batched matMul
    await expectClose(y, await tf.matMul(a3, b3).data(), 1e-5, 'batchMatMul');
    const big = [tf.randomNormal([2, 64, 64], 0, 1, 'float32', 9), tf.randomNormal([2, 64, 64], 0, 1, 'float32', 10)] as tf.Tensor3D[];
    const g = tf.randomNormal([2, 64, 64], 0, 1, 'float32', 11);
    const unrolled = tf.grads((x: tf.Tensor, z: tf.Tensor) => tf.sum(tf.mul(batchMatMul(x as tf.Tensor3D, z as tf.Tensor3D), g)))(big); // 64³ MACs: per-product 2-D
    const batched = tf.grads((x: tf.Tensor, z: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x as tf.Tensor3D, z as tf.Tensor3D), g)))(big);
    await expectClose(unrolled[0], await batched[0].data(), 1e-4, 'unrolled dA');
    await expectClose(unrolled[1], await batched[1].data(), 1e-4, 'unrolled dB');
    tf.dispose([a, b, w, ...ours, ...ref, a3, b3, y, ...big, g, ...unrolled, ...batched]);
  });

  it('batchMatMul unrolls G ≥ 3 products with unequal N, K, M (≥ 2^16 MACs), forward and backward equal to tf.matMul', async () => {
    const [G, N, K, M] = [3, 40, 24, 72]; // 40·24·72 = 69120 ≥ 2^16 multiply-adds per product: the unrolled path
    const a = tf.randomNormal([G, N, K], 0, 1, 'float32', 12) as tf.Tensor3D;
    const b = tf.randomNormal([G, K, M], 0, 1, 'float32', 13) as tf.Tensor3D;
    const w = tf.randomNormal([G, N, M], 0, 1, 'float32', 14); // so that dL/dy is not all ones
    // The unrolled path is taken: one Unpack per operand, one 2-D product per slice, one Pack.
    const profile = await tf.profile(() => batchMatMul(a, b));
    expect(profile.kernelNames).toEqual(expect.arrayContaining(['Unpack', 'Pack']));
    expect(profile.kernels.filter((k) => k.name === 'BatchMatMul').map((k) => k.inputShapes)).toEqual(
      Array.from({ length: G }, () => [
        [N, K],
        [K, M],
      ]),
    );
    tf.dispose(profile.result as tf.Tensor);

    const y = batchMatMul(a, b);
    const yRef = tf.matMul(a, b);
    expect(y.shape).toEqual([G, N, M]);
    await expectClose(y, await yRef.data(), 1e-4, 'unrolled forward');
    const loss = (mm: (x: tf.Tensor3D, z: tf.Tensor3D) => tf.Tensor) => (x: tf.Tensor, z: tf.Tensor) =>
      tf.sum(tf.mul(mm(x as tf.Tensor3D, z as tf.Tensor3D), w));
    const ours = tf.grads(loss(batchMatMul))([a, b]);
    const ref = tf.grads(loss((x, z) => tf.matMul(x, z)))([a, b]);
    expect(ours.map((t) => t.shape)).toEqual([
      [G, N, K],
      [G, K, M],
    ]);
    await expectClose(ours[0], await ref[0].data(), 1e-4, 'unrolled dA');
    await expectClose(ours[1], await ref[1].data(), 1e-4, 'unrolled dB');
    tf.dispose([y, yRef, ...ours, ...ref]);

    // No tensor (nor backend buffer) survives the forward or the gradient beyond what the caller gets.
    const buffers = () => tf.backend().numDataIds();
    tf.dispose(tf.grads(loss(batchMatMul))([a, b])); // warm-up
    const b0 = buffers();
    await expectNoLeak(() => batchMatMul(a, b), 'unrolled batchMatMul forward');
    await expectNoLeak(() => tf.grads(loss(batchMatMul))([a, b]), 'unrolled batchMatMul gradient');
    await expectNoLeak(() => tf.grad((x: tf.Tensor) => tf.sum(batchMatMul(x as tf.Tensor3D, b)))(a), 'unrolled batchMatMul gradient (one input)');
    expect(buffers()).toBe(b0);
    tf.dispose([a, b, w]);
  });
});

import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { getThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import { setBackend, wasmComputePath } from '../../index';
import { requestedWasmThreads, wasmStarted } from './wasm_threads';

// One wasm backend per process (per test file under jest): this file starts it with 2 threads.
describe('the wasm backend on 2 XNNPACK threads in Node (tfjs-backend-wasm threaded build)', () => {
  const saved = { threads: process.env.PNG_WASM_THREADS, native: process.env.PNG_NATIVE };
  afterEach(() => {
    for (const [key, value] of [
      ['PNG_WASM_THREADS', saved.threads],
      ['PNG_NATIVE', saved.native],
    ] as const) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  });

  it('reads the threads from the option, else PNG_WASM_THREADS, and names a bad value', () => {
    delete process.env.PNG_WASM_THREADS;
    expect(requestedWasmThreads()).toBeUndefined();
    expect(requestedWasmThreads(3)).toBe(3);
    process.env.PNG_WASM_THREADS = '2';
    expect(requestedWasmThreads()).toBe(2);
    expect(requestedWasmThreads(1)).toBe(1);
    for (const bad of ['0', '1.5', 'two', '9']) {
      process.env.PNG_WASM_THREADS = bad;
      expect(() => requestedWasmThreads()).toThrow(`PNG_WASM_THREADS='${bad}': expected a whole number of threads from 1 to 8`);
    }
    expect(() => requestedWasmThreads(0)).toThrow("setBackend('wasm', { threads: 0 }): expected a whole number of threads from 1 to 8");
  });

  it('threads are a wasm option only, and exclude the native kernels', async () => {
    await expect(setBackend('cpu', { threads: 2 })).rejects.toThrow("setBackend('cpu', { threads: 2 }): threads are an option of the wasm backend only");
    process.env.PNG_NATIVE = '1';
    await expect(setBackend('wasm', { threads: 2 })).rejects.toThrow('wasm threads 2 with PNG_NATIVE=1');
    expect(wasmStarted()).toBe(false);
  });

  it('starts on 2 threads, says so, and computes what the cpu backend computes, gradients too', async () => {
    delete process.env.PNG_NATIVE;
    await setBackend('cpu');
    const x = tf.randomNormal([2, 17, 19, 24], 0, 1, 'float32', 1) as tf.Tensor4D;
    const f = tf.randomNormal([3, 3, 24, 40], 0, 1, 'float32', 2) as tf.Tensor4D;
    const a = tf.randomNormal([3, 70, 90], 0, 1, 'float32', 3) as tf.Tensor3D;
    const b = tf.randomNormal([3, 90, 50], 0, 1, 'float32', 4) as tf.Tensor3D;
    const compute = () => {
      const conv = tf.conv2d(x, f, [1, 2], 'same');
      const [dx, df] = tf.grads((xx: tf.Tensor, ff: tf.Tensor) => tf.sum(tf.square(tf.conv2d(xx as tf.Tensor4D, ff as tf.Tensor4D, 1, 'same'))))([x, f]);
      return [conv, dx, df, tf.matMul(a, b), tf.softmax(tf.matMul(a, b))].map((t) => ({ shape: t.shape, values: t.dataSync() }));
    };
    const expected = compute();

    await setBackend('wasm', { threads: 2 });
    expect(getThreadsCount()).toBe(2);
    expect(wasmComputePath()).toBe('wasm kernels (XNNPACK, 2 threads): native kernels not used: opt-in, PNG_NATIVE=1 uses them');
    const got = compute();
    got.forEach((g, i) => {
      expect(g.shape).toEqual(expected[i].shape);
      // float32 sums in another order: within 1e-5 of the output's largest magnitude
      let [worst, scale] = [0, 0];
      for (let j = 0; j < g.values.length; j++) {
        worst = Math.max(worst, Math.abs(g.values[j] - expected[i].values[j]));
        scale = Math.max(scale, Math.abs(expected[i].values[j]));
      }
      expect(worst).toBeLessThan(1e-5 * scale);
    });
  });

  it('a second setBackend keeps the threads, and asking another count names the one running', async () => {
    await setBackend('cpu');
    await setBackend('wasm');
    expect(getThreadsCount()).toBe(2);
    await expect(setBackend('wasm', { threads: 2 })).resolves.toBe('wasm');
    await expect(setBackend('wasm', { threads: 1 })).rejects.toThrow('wasm threads 1: the wasm backend already runs 2 threads in this process');
  });
});

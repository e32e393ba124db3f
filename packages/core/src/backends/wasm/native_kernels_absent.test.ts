import * as tf from '@tensorflow/tfjs-core';
import { setBackend, wasmComputePath } from '../../index';

// @png/native-kernels as it is on a machine where it could not build (no compiler, headers or oneDNN).
jest.mock('@png/native-kernels', () => ({ kernels: null, unavailable: 'not built at install (test stand-in)' }));

describe('the wasm backend without @png/native-kernels', () => {
  const saved = process.env.PNG_NATIVE;
  afterEach(() => {
    if (saved === undefined) delete process.env.PNG_NATIVE;
    else process.env.PNG_NATIVE = saved;
  });

  it('PNG_NATIVE=1 is an error saying why the native kernels are unavailable', async () => {
    process.env.PNG_NATIVE = '1';
    await expect(setBackend('wasm')).rejects.toThrow('PNG_NATIVE=1 but the native kernels are unavailable: not built at install (test stand-in)');
  });

  it('runs the wasm kernels unless asked (opt-in), says so, and computes a conv and its gradient', async () => {
    delete process.env.PNG_NATIVE;
    await setBackend('wasm');
    expect(wasmComputePath()).toBe('wasm kernels (XNNPACK, 1 thread): native kernels not used: opt-in, PNG_NATIVE=1 uses them');
    for (const name of ['Conv2D', 'BatchMatMul', 'Conv2DBackpropInput', 'Conv2DBackpropFilter'])
      expect((tf.getKernel(name, 'wasm') as { native?: boolean }).native).toBeUndefined();
    const x = tf.ones([1, 4, 4, 1]) as tf.Tensor4D;
    const f = tf.ones([3, 3, 1, 1]) as tf.Tensor4D;
    expect(Array.from(tf.conv2d(x, f, 1, 'valid').dataSync())).toEqual([9, 9, 9, 9]);
    const filterGradient = tf.grad((ff: tf.Tensor) => tf.sum(tf.conv2d(x, ff as tf.Tensor4D, 1, 'valid')));
    expect(Array.from(filterGradient(f).dataSync())).toEqual(new Array(9).fill(4));
  });

  it('PNG_NATIVE=0 says it was asked for the wasm kernels', async () => {
    process.env.PNG_NATIVE = '0';
    let fresh: typeof import('./native_kernels') | undefined; // a copy that has not loaded the addon yet
    jest.isolateModules(() => {
      fresh = require('./native_kernels');
    });
    await expect(fresh?.useNativeKernels(1)).resolves.toBe('wasm kernels (XNNPACK, 1 thread): native kernels not used: PNG_NATIVE=0');
  });
});

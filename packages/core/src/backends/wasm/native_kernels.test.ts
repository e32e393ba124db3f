import * as tf from '@tensorflow/tfjs-core';
import { setBackend, wasmComputePath } from '../../index';
import { nativeFilterCache } from './native_kernels';

// The native kernels against the cpu backend (the reference), where @png/native-kernels is built
// (`.ci/run` installs oneDNN, so CI must have it): this file opts in with PNG_NATIVE=1.
const { kernels, unavailable } = require('@png/native-kernels') as { kernels: object | null; unavailable: string | null };
const native = kernels !== null;
if (native) process.env.PNG_NATIVE = '1';

if (!native) {
  it('is not built on this machine: @png/native-kernels says why and how to build it; CI (.ci/run installs oneDNN) must build it', () => {
    expect(unavailable).toMatch(/apt-get install .*libdnnl-dev|does not load/);
    expect(process.env.CI).toBeFalsy();
  });
}

/** fn run on cpu and on wasm with the same inputs: max |difference| relative to the cpu result's max |value|. */
async function relativeError(inputs: () => tf.Tensor[], fn: (...xs: tf.Tensor[]) => tf.Tensor): Promise<number> {
  await setBackend('cpu');
  const values = inputs().map((t) => ({ data: t.dataSync().slice(), shape: t.shape }));
  const want = fn(...values.map((v) => tf.tensor(v.data, v.shape))).dataSync();
  await setBackend('wasm');
  const got = fn(...values.map((v) => tf.tensor(v.data, v.shape))).dataSync();
  expect(got.length).toBe(want.length);
  let [err, scale] = [0, 0];
  for (let i = 0; i < want.length; i++) {
    err = Math.max(err, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return err / scale;
}

const rand = (shape: number[], seed: number) => () => tf.randomNormal(shape, 0, 1, 'float32', seed);

if (native)
  describe('native kernels (@png/native-kernels over oneDNN) on wasm match cpu', () => {
    beforeAll(() => setBackend('wasm'));

    it('says it took the native path', () => {
      expect(wasmComputePath()).toMatch(/^native kernels \(oneDNN \d+\.\d+\.\d+, \d+ threads/);
      expect((tf.getKernel('Conv2D', 'wasm') as { native?: boolean }).native).toBe(true);
    });

    const convs: Array<[string, number[], number[], number, 'same' | 'valid' | number[][], number]> = [
      [
        '3×3 stride 1 explicit pad',
        [2, 9, 7, 5],
        [3, 3, 5, 6],
        1,
        [
          [0, 0],
          [1, 1],
          [1, 1],
          [0, 0],
        ],
        1,
      ],
      [
        '3×3 stride 2 asymmetric pad',
        [1, 9, 8, 4],
        [3, 3, 4, 3],
        2,
        [
          [0, 0],
          [0, 1],
          [1, 0],
          [0, 0],
        ],
        1,
      ],
      ['1×1 valid', [2, 4, 4, 7], [1, 1, 7, 5], 1, 'valid', 1],
      ['3×3 same, dilation 2 (forward only)', [1, 8, 8, 3], [3, 3, 3, 4], 1, 'same', 2],
    ];
    it.each(convs)('Conv2D, %s', async (_, xs, fs, stride, pad, dilation) => {
      expect(
        await relativeError(
          () => [rand(xs, 1)(), rand(fs, 2)()],
          (x, f) => tf.conv2d(x as tf.Tensor4D, f as tf.Tensor4D, stride, pad as 'same', 'NHWC', dilation),
        ),
      ).toBeLessThan(1e-5);
    });
    it.each(convs.filter((c) => c[5] === 1))('Conv2DBackpropInput and Conv2DBackpropFilter (conv2d gradients), %s', async (_, xs, fs, stride, pad) => {
      const loss = (x: tf.Tensor, f: tf.Tensor, w: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(x as tf.Tensor4D, f as tf.Tensor4D, stride, pad as 'same'), w));
      const probe = tf.tidy(() => tf.conv2d(tf.zeros<tf.Rank>(xs) as tf.Tensor4D, tf.zeros<tf.Rank>(fs) as tf.Tensor4D, stride, pad as 'same'));
      const ys: number[] = probe.shape; // dy's shape
      probe.dispose();
      const inputs = () => [rand(xs, 3)(), rand(fs, 4)(), rand(ys, 5)()];
      expect(await relativeError(inputs, (x, f, w) => tf.grad((xx) => loss(xx, f, w))(x))).toBeLessThan(1e-5);
      expect(await relativeError(inputs, (x, f, w) => tf.grad((ff) => loss(x, ff, w))(f))).toBeLessThan(1e-5);
    });

    const products: Array<[string, number[], number[], boolean, boolean]> = [
      ['2-D', [5, 7], [7, 3], false, false],
      ['transposed a and b', [4, 7, 5], [4, 3, 7], true, true],
      ['a broadcast over b’s batch', [1, 5, 7], [2, 3, 7, 4], false, false],
      ['b broadcast, transposed', [2, 3, 5, 7], [4, 7], false, true],
    ];
    it.each(products)('BatchMatMul, %s', async (_, as, bs, ta, tb) => {
      expect(
        await relativeError(
          () => [rand(as, 6)(), rand(bs, 7)()],
          (a, b) => tf.matMul(a, b, ta, tb),
        ),
      ).toBeLessThan(1e-5);
    });

    it('leaves to wasm the products whose batches broadcast otherwise ([2, 1] · [1, 3])', async () => {
      expect(
        await relativeError(
          () => [rand([2, 1, 4, 5], 8)(), rand([1, 3, 5, 2], 9)()],
          (a, b) => tf.matMul(a, b),
        ),
      ).toBeLessThan(1e-5);
    });

    it("keeps one reordered copy per filter's data, reuses it, never for another filter's data, and none with a budget of 0", async () => {
      await setBackend('wasm');
      const cache = () => nativeFilterCache() ?? { entries: -1, bytes: -1, limitBytes: -1 };
      expect(cache().limitBytes).toBe(1024 * 2 ** 20); // PNG_NATIVE_FILTER_CACHE_MB's default
      // 3×3, 64 → 64 channels: oneDNN blocks this filter (HWIO is not its layout), so it is reordered
      const x = tf.randomNormal([1, 8, 8, 64], 0, 1, 'float32', 1) as tf.Tensor4D;
      const f1 = tf.randomNormal([3, 3, 64, 64], 0, 1, 'float32', 2) as tf.Tensor4D;
      const f2 = tf.randomNormal([3, 3, 64, 64], 0, 1, 'float32', 3) as tf.Tensor4D;
      const before = cache();
      const a = tf.conv2d(x, f1, 1, 'same');
      const kept = cache();
      expect([kept.entries - before.entries, kept.bytes - before.bytes]).toEqual([1, 3 * 3 * 64 * 64 * 4]);
      const again = tf.conv2d(x, f1, 1, 'same');
      expect(cache().entries).toBe(kept.entries); // reused, not reordered again
      expect(Buffer.from((await again.data()).buffer).equals(Buffer.from((await a.data()).buffer))).toBe(true);
      // another filter of the same shape gets its own copy: the result is f2's, not f1's
      const b = tf.conv2d(x, f2, 1, 'same');
      expect(cache().entries).toBe(kept.entries + 1);
      const fresh = await (async () => {
        await setBackend('cpu');
        const r = tf.conv2d(tf.tensor(await x.data(), x.shape) as tf.Tensor4D, tf.tensor(await f2.data(), f2.shape) as tf.Tensor4D, 1, 'same').dataSync();
        await setBackend('wasm');
        return r;
      })();
      const got = await b.data();
      expect(Math.max(...fresh.map((v, i) => Math.abs(v - got[i])))).toBeLessThan(1e-3);
      // a budget of 0 keeps nothing (and empties the cache); the results stay the same
      const { kernels: addon } = require('@png/native-kernels') as { kernels: { filterCache(o: { limitBytes: number }): { entries: number } } };
      expect(addon.filterCache({ limitBytes: 0 }).entries).toBe(0);
      const uncached = tf.conv2d(x, f1, 1, 'same');
      expect(cache().entries).toBe(0);
      expect(Buffer.from((await uncached.data()).buffer).equals(Buffer.from((await a.data()).buffer))).toBe(true);
      addon.filterCache({ limitBytes: 1024 * 2 ** 20 });
      tf.dispose([x, f1, f2, a, again, b, uncached]);
    });

    it('hands out filter keys per process, so that two copies of @png/core (or jest test files) never share one', () => {
      const { kernels: addon } = require('@png/native-kernels') as { kernels: { newFilterKey(): number } };
      const keys = [addon.newFilterKey(), addon.newFilterKey()];
      expect(keys[1]).toBeGreaterThan(keys[0]);
      const other = jest.requireActual('@png/native-kernels') as { kernels: { newFilterKey(): number } }; // another module instance, one addon
      expect(other.kernels.newFilterKey()).toBeGreaterThan(keys[1]);
    });
  });

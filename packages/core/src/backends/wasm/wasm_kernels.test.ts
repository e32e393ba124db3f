import * as tf from '@tensorflow/tfjs-core';
import { setBackend } from '../backend';
import { expectDefined, randn } from '../../testing';
import { registerWasmTrainingKernels, WASM_KERNEL_OVERRIDES, WASM_TRAINING_KERNELS, wasmKernelOptions } from './wasm_kernels';

type Backend = 'cpu' | 'wasm';

const kernelOf = (kernelName: string): tf.KernelConfig => expectDefined(tf.getKernel(kernelName, 'wasm'), `wasm kernel ${kernelName}`);

interface GradCase {
  name: string;
  shapes: number[][];
  f: (...xs: tf.Tensor[]) => tf.Tensor;
  /** Maps the random inputs (e.g. to positives for log/sqrt/pow); by input index. */
  prep?: Record<number, (v: number) => number>;
}

/**
 * Gradients of L = Σ f(x)·R (R a fixed random tensor, so that dL/dy is not all ones) with respect
 * to every input, on `backend`.
 */
async function gradsOn(backend: Backend, c: GradCase, seed = 1): Promise<Float32Array[]> {
  await setBackend(backend);
  const xs = c.shapes.map((s, i) => {
    const v = randn(tf.util.sizeFromShape(s), seed + 17 * i);
    const p = c.prep?.[i];
    return tf.tensor(p ? v.map(p) : v, s);
  });
  const gs = tf.grads((...a: tf.Tensor[]) => {
    const y = c.f(...a);
    return tf.sum(tf.mul(y, tf.tensor(randn(y.size, seed + 999), y.shape)));
  })(xs);
  const out = await Promise.all(gs.map((g) => g.data() as Promise<Float32Array>));
  tf.dispose([...xs, ...gs]);
  return out;
}

/** Max abs error relative to max(1, max |reference|). */
function relErr(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  expect(actual.length).toBe(expected.length);
  let err = 0,
    mag = 1;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    if (!(d <= err)) err = d;
    mag = Math.max(mag, Math.abs(expected[i]));
  }
  return err / mag;
}

const TOL = 1e-4;
const errors: Record<string, number> = {};

async function expectGradsMatch(c: GradCase): Promise<void> {
  const ref = await gradsOn('cpu', c);
  const got = await gradsOn('wasm', c);
  expect(got.length).toBe(ref.length);
  const e = Math.max(...got.map((g, i) => relErr(g, ref[i])));
  errors[c.name] = e;
  expect(e).toBeLessThanOrEqual(TOL);
}

/** Runs one kernel directly on `backend` (bypassing the ops' argument checks). */
async function kernelOn(
  backend: Backend,
  kernel: string,
  inputs: Record<string, { shape: number[]; data: Float32Array | Int32Array }>,
  attrs: object,
): Promise<{ shape: number[]; data: Float32Array }> {
  await setBackend(backend);
  const ts: tf.NamedTensorMap = {};
  for (const [k, v] of Object.entries(inputs)) ts[k] = tf.tensor(v.data, v.shape, v.data instanceof Int32Array ? 'int32' : 'float32');
  const y = tf.engine().runKernel(kernel, ts, attrs as tf.NamedAttrMap) as tf.Tensor;
  const out = { shape: y.shape, data: (await y.data()) as Float32Array };
  tf.dispose([y, ...Object.values(ts)]);
  return out;
}

async function expectKernelMatch(
  name: string,
  kernel: string,
  inputs: Record<string, { shape: number[]; data: Float32Array | Int32Array }>,
  attrs: object,
): Promise<void> {
  const ref = await kernelOn('cpu', kernel, inputs, attrs);
  const got = await kernelOn('wasm', kernel, inputs, attrs);
  expect(got.shape).toEqual(ref.shape);
  const e = relErr(got.data, ref.data);
  errors[name] = e;
  expect(e).toBeLessThanOrEqual(TOL);
}

const input = (shape: number[], seed: number) => ({ shape, data: randn(tf.util.sizeFromShape(shape), seed) });

beforeAll(async () => {
  await setBackend('cpu');
  await setBackend('wasm');
  registerWasmTrainingKernels();
});

afterAll(() => {
  // One line per comparison, for the record (relative max abs error, wasm vs cpu).
  console.log(
    Object.entries(errors)
      .map(([k, v]) => `${k}: ${v.toExponential(2)}`)
      .join('\n'),
  );
});

describe('registerWasmTrainingKernels', () => {
  it('registers exactly the kernels the wasm backend lacks, idempotently', () => {
    for (const k of WASM_TRAINING_KERNELS) expect(tf.getKernel(k, 'wasm')).toBeDefined();
    const before = WASM_TRAINING_KERNELS.map((k) => kernelOf(k).kernelFunc);
    expect(registerWasmTrainingKernels()).toEqual([]);
    expect(WASM_TRAINING_KERNELS.map((k) => kernelOf(k).kernelFunc)).toEqual(before);
    expect([...WASM_TRAINING_KERNELS].sort()).toEqual([
      'Conv2DBackpropFilter',
      'DepthwiseConv2dNativeBackpropFilter',
      'DepthwiseConv2dNativeBackpropInput',
      'Einsum',
      'UnsortedSegmentSum',
    ]);
  });

  it("replaces wasm's Conv2DBackpropInput, Slice, Unpack and Identity once (the overrides stay registered, idempotently)", () => {
    expect(WASM_KERNEL_OVERRIDES).toEqual(['Conv2DBackpropInput', 'Slice', 'Unpack', 'Identity']);
    const k = kernelOf('Conv2DBackpropInput');
    // where @png/native-kernels is built, its kernel sits over the override (and falls back on it)
    expect(k.kernelFunc.name).toBe((k as { native?: boolean }).native ? '' : 'conv2DBackpropInput');
    expect(k.setupFunc).toBeDefined(); // wasm's cwrap setup is kept for the fallback
    expect(kernelOf('Slice').kernelFunc.name).toBe('slice');
    expect(kernelOf('Unpack').kernelFunc.name).toBe('unpack');
    expect(kernelOf('Identity').kernelFunc.name).toBe('identity');
    const before = WASM_KERNEL_OVERRIDES.map((name) => kernelOf(name).kernelFunc);
    expect(registerWasmTrainingKernels()).toEqual([]);
    expect(registerWasmTrainingKernels()).toEqual([]);
    expect(WASM_KERNEL_OVERRIDES.map((name) => kernelOf(name).kernelFunc)).toEqual(before);
    expect(kernelOf('Conv2DBackpropInput').kernelFunc).toBe(k.kernelFunc);
  });

  it('Identity shares storage: a clone is one more reference, not one more buffer, and outlives its source', async () => {
    await setBackend('wasm');
    const x = tf.tensor1d([1, 2, 3]);
    const buffers = tf.backend().numDataIds();
    const y = tf.clone(x);
    expect(tf.backend().numDataIds()).toBe(buffers);
    x.dispose();
    expect([...(await y.data())]).toEqual([1, 2, 3]);
    y.dispose();
    expect(tf.backend().numDataIds()).toBe(buffers - 1);
    const s = tf.clone(tf.tensor1d(['a', 'b'], 'string')); // strings: wasm's own copy
    expect(await s.array()).toEqual(['a', 'b']);
    s.dispose();
  });

  it('leaks neither tensors nor wasm buffers', async () => {
    await setBackend('wasm');
    const x = tf.randomNormal([2, 6, 5, 3]),
      w = tf.randomNormal([3, 3, 3, 4]),
      dw = tf.randomNormal([3, 3, 3, 2]);
    const emb = tf.randomNormal([7, 4]),
      ids = tf.tensor2d(
        [
          [1, 2],
          [2, 6],
        ],
        [2, 2],
        'int32',
      );
    const buffers = () => tf.backend().numDataIds();
    const run = () => {
      const gConv = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
        tf.sum(
          tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 2, [
            [0, 0],
            [0, 1],
            [0, 1],
            [0, 0],
          ]),
        ),
      )([x, w]);
      const gConv1 = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, 2)))([x, w]); // over-padded: crops dy
      const gConv11 = tf.grad((a: tf.Tensor) => tf.sum(tf.conv2d(a as tf.Tensor4D, tf.ones([1, 1, 3, 2]) as tf.Tensor4D, 2, 'valid')))(x); // 1×1 s2: zero phases
      const gDw = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.depthwiseConv2d(a as tf.Tensor4D, b as tf.Tensor4D, 2, 'same')))([x, dw]);
      const gEmb = tf.grad((e: tf.Tensor) => tf.sum(tf.gather(e, ids)))(emb);
      const ein = tf.einsum('bhw,wc->bhc', tf.reshape(x, [2, 6, 15]), tf.ones([15, 2]));
      return [...gConv, ...gConv1, gConv11, ...gDw, gEmb, ein];
    };
    tf.dispose(tf.tidy(run)); // warm-up (first calls may allocate caches)
    const n = tf.memory().numTensors,
      b = buffers();
    tf.dispose(tf.tidy(run));
    expect(tf.memory().numTensors).toBe(n);
    expect(buffers()).toBe(b);
    tf.dispose([x, w, dw, emb, ids]);
  });
});

describe('Conv2DBackpropFilter (conv2d gradients) on wasm match cpu', () => {
  type Pad = 'same' | 'valid' | number | [[number, number], [number, number], [number, number], [number, number]];
  const conv = (name: string, xs: number[], ws: number[], stride: number | [number, number], pad: Pad): GradCase => ({
    name,
    shapes: [xs, ws],
    f: (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, stride, pad),
  });
  const asym: Pad = [
    [0, 0],
    [0, 1],
    [0, 1],
    [0, 0],
  ];
  const p1: Pad = [
    [0, 0],
    [1, 1],
    [1, 1],
    [0, 0],
  ];
  it.each([
    conv('conv 3x3 s1 pad 1, batch 2, non-square', [2, 5, 7, 3], [3, 3, 3, 4], 1, p1),
    conv('conv 3x3 s2 pad [[0,1],[0,1]] (SD downsample)', [2, 6, 8, 3], [3, 3, 3, 4], 2, asym),
    conv('conv 3x3 s2 pad [[0,1],[0,1]], odd size', [2, 7, 5, 2], [3, 3, 2, 3], 2, asym),
    conv('conv 3x3 s2 pad 1 symmetric, odd size', [2, 7, 6, 3], [3, 3, 3, 4], 2, p1),
    conv('conv 3x3 s1 valid', [2, 6, 5, 2], [3, 3, 2, 3], 1, 'valid'),
    conv('conv 3x3 s2 same', [2, 7, 8, 2], [3, 3, 2, 3], 2, 'same'),
    conv('conv 1x1 s1', [2, 4, 5, 6], [1, 1, 6, 5], 1, 'valid'),
    conv('conv 1x1 s2', [2, 5, 4, 3], [1, 1, 3, 4], 2, 'valid'),
    conv(
      'conv 2x3 kernel, strides [2,1], pad [[0,0],[1,0],[2,1],[0,0]]',
      [2, 6, 5, 3],
      [2, 3, 3, 2],
      [2, 1],
      [
        [0, 0],
        [1, 0],
        [2, 1],
        [0, 0],
      ],
    ),
    conv('conv 3x3 s1 pad 2 (over-padded)', [1, 4, 4, 2], [3, 3, 2, 2], 1, 2),
  ])('$name', (c) => expectGradsMatch(c));

  it('groups im2col taps when the column block is large (one GEMM per group, concatenated)', async () => {
    const saved = wasmKernelOptions.maxColsFloats;
    try {
      for (const limit of [1, 2 * 3 * 2 * 4 * 4]) {
        wasmKernelOptions.maxColsFloats = limit; // 1 ⇒ one tap per GEMM; 2·Ci·N ⇒ pairs of taps
        await expectGradsMatch(conv(`conv 3x3 s2 asym, im2col limit ${limit}`, [2, 7, 7, 3], [3, 3, 3, 4], 2, asym));
      }
    } finally {
      wasmKernelOptions.maxColsFloats = saved;
    }
  });

  it('handles NCHW (kernel called directly)', () =>
    expectKernelMatch(
      'Conv2DBackpropFilter NCHW s2 pad 1',
      tf.Conv2DBackpropFilter,
      { x: input([2, 3, 7, 6], 5), dy: input([2, 4, 4, 3], 6) },
      {
        strides: [2, 2],
        pad: 1,
        dataFormat: 'NCHW',
        filterShape: [3, 3, 3, 4],
      },
    ));

  it('conv2dTranspose (its gradient uses Conv2DBackpropFilter with x and dy swapped)', () =>
    expectGradsMatch({
      name: 'conv2dTranspose 3x3 s2 same',
      shapes: [
        [2, 3, 4, 4],
        [3, 3, 2, 4],
      ],
      f: (x, w) => tf.conv2dTranspose(x as tf.Tensor4D, w as tf.Tensor4D, [2, 6, 8, 2], 2, 'same'),
    }));
});

describe('Conv2DBackpropInput (override: stride-phase convs through XNNPACK) on wasm matches cpu', () => {
  type Pad = 'same' | 'valid' | number | [[number, number], [number, number], [number, number], [number, number]];
  const asym: Pad = [
    [0, 0],
    [0, 1],
    [0, 1],
    [0, 0],
  ];
  /** Runs the kernel directly on both backends: dx for input [B, H, W, Ci], filter [KH, KW, Ci, Co]. */
  const bpi = (name: string, xs: number[], ws: number[], stride: number | [number, number], pad: Pad) => {
    const { outShape } = tf.backend_util.computeConv2DInfo(
      xs as [number, number, number, number],
      ws as [number, number, number, number],
      stride,
      1,
      pad as 'same',
    );
    return expectKernelMatch(
      `Conv2DBackpropInput ${name}`,
      tf.Conv2DBackpropInput,
      { dy: input(outShape, 21), filter: input(ws, 22) },
      {
        strides: stride,
        pad,
        dataFormat: 'NHWC',
        dimRoundingMode: undefined,
        inputShape: xs,
      },
    );
  };
  it.each([
    ['3x3 s1 pad 1, batch 2, non-square, Ci≠Co', [2, 5, 7, 3], [3, 3, 3, 4], 1, 1],
    [
      '3x3 s1 explicit pad 1',
      [1, 6, 6, 4],
      [3, 3, 4, 4],
      1,
      [
        [0, 0],
        [1, 1],
        [1, 1],
        [0, 0],
      ],
    ],
    ['3x3 s1 same', [2, 6, 5, 2], [3, 3, 2, 5], 1, 'same'],
    ['3x3 s1 valid', [2, 6, 5, 2], [3, 3, 2, 3], 1, 'valid'],
    ['3x3 s1 asym [[0,1],[0,1]]', [1, 6, 7, 3], [3, 3, 3, 2], 1, asym],
    ['3x3 s1 pad 3 (over-padded: dy cropped)', [1, 4, 5, 2], [3, 3, 2, 3], 1, 3],
    ['1x1 s1 valid', [2, 4, 5, 6], [1, 1, 6, 5], 1, 'valid'],
    ['1x1 s2 valid (phases without taps)', [2, 5, 4, 3], [1, 1, 3, 4], 2, 'valid'],
    ['1x1 s2 valid, even size', [1, 6, 8, 3], [1, 1, 3, 2], 2, 'valid'],
    ['3x3 s2 asym [[0,1],[0,1]] (SD downsample)', [2, 8, 6, 3], [3, 3, 3, 4], 2, asym],
    ['3x3 s2 asym, odd size 7x9', [1, 7, 9, 3], [3, 3, 3, 2], 2, asym],
    ['3x3 s2 pad 1, odd size 7x9', [2, 7, 9, 2], [3, 3, 2, 3], 2, 1],
    ['3x3 s2 same, odd size', [1, 7, 8, 2], [3, 3, 2, 3], 2, 'same'],
    ['3x3 s2 same, even size', [1, 8, 6, 3], [3, 3, 3, 2], 2, 'same'],
    ['3x3 s2 valid, odd size', [2, 9, 7, 2], [3, 3, 2, 3], 2, 'valid'],
    ['3x3 strides [2,1] pad 1', [2, 7, 6, 3], [3, 3, 3, 2], [2, 1], 1],
    [
      '2x3 strides [1,2] explicit [[1,0],[2,1]]',
      [1, 6, 7, 2],
      [2, 3, 2, 3],
      [1, 2],
      [
        [0, 0],
        [1, 0],
        [2, 1],
        [0, 0],
      ],
    ],
    ['4x4 s2 pad 1 (even kernel)', [1, 8, 8, 2], [4, 4, 2, 3], 2, 1],
    ['3x3 s3 valid', [1, 10, 11, 2], [3, 3, 2, 2], 3, 'valid'],
    ['5x5 s2 pad 2 over odd 9x7', [1, 9, 7, 2], [5, 5, 2, 3], 2, 2],
    ['3x3 s2 pad 3 (over-padded)', [1, 5, 6, 2], [3, 3, 2, 2], 2, 3],
  ] as [string, number[], number[], number | [number, number], Pad][])('%s', (name, xs, ws, s, p) => bpi(name, xs, ws, s, p));

  it("falls back to wasm's own kernel for NCHW", () =>
    expectKernelMatch(
      'Conv2DBackpropInput NCHW s2 pad 1 (fallback)',
      tf.Conv2DBackpropInput,
      { dy: input([2, 4, 4, 3], 23), filter: input([3, 3, 3, 4], 24) },
      {
        strides: [2, 2],
        pad: 1,
        dataFormat: 'NCHW',
        dimRoundingMode: undefined,
        inputShape: [2, 3, 7, 6],
      },
    ));

  it('end to end: gradients through conv2d s2 (asym pad) then conv2d s1 (pad 1)', () =>
    expectGradsMatch({
      name: 'e2e conv s2 asym → relu → conv s1 pad 1',
      shapes: [
        [2, 9, 8, 3],
        [3, 3, 3, 5],
        [3, 3, 5, 4],
      ],
      f: (x, w1, w2) => {
        const h = tf.conv2d(x as tf.Tensor4D, w1 as tf.Tensor4D, 2, asym); // [2, 4, 4, 5]
        return tf.conv2d(tf.relu(h), w2 as tf.Tensor4D, 1, [
          [0, 0],
          [1, 1],
          [1, 1],
          [0, 0],
        ]); // [2, 4, 4, 4]
      },
    }));
});

describe('Slice / Unpack (overrides: contiguous slices copied from the heap) on wasm match cpu', () => {
  type Dtype = 'float32' | 'int32' | 'bool';
  interface Out {
    shape: number[];
    dtype: tf.DataType;
    data: number[];
  }

  /** Values of `dtype` for `shape`: random normals, small integers or a bool pattern. */
  const values = (shape: number[], dtype: Dtype, seed: number): Float32Array | Int32Array | Uint8Array => {
    const v = randn(tf.util.sizeFromShape(shape), seed);
    if (dtype === 'int32') return Int32Array.from(v, (x) => Math.round(100 * x));
    if (dtype === 'bool') return Uint8Array.from(v, (x) => (x > 0 ? 1 : 0));
    return v;
  };
  const make = (shape: number[], dtype: Dtype, seed: number) => tf.tensor(values(shape, dtype, seed), shape, dtype);

  /**
   * Every output of `f` on `backend`, and how many times the backend's readSync ran inside `f` (wasm's
   * own Slice reads the whole input through readSync; the heap-copy path must not).
   */
  async function outputsOn(backend: Backend, f: () => tf.Tensor | tf.Tensor[]): Promise<{ outs: Out[]; reads: number }> {
    await setBackend(backend);
    const spy = jest.spyOn(tf.backend() as unknown as { readSync(dataId: tf.DataId): unknown }, 'readSync');
    let ys: tf.Tensor[];
    let reads: number;
    try {
      const y = tf.tidy(f);
      ys = Array.isArray(y) ? y : [y];
      reads = spy.mock.calls.length; // before the outputs are read back
    } finally {
      spy.mockRestore();
    }
    const outs = await Promise.all(ys.map(async (t) => ({ shape: t.shape, dtype: t.dtype, data: Array.from(await t.data()) })));
    tf.dispose(ys);
    return { outs, reads };
  }

  /** Same shapes, dtypes and (bit-exact) values on wasm as on cpu; and whether wasm took the heap-copy path. */
  async function expectSameOutputs(name: string, f: () => tf.Tensor | tf.Tensor[], fastPath: boolean): Promise<Out[]> {
    const ref = await outputsOn('cpu', f);
    const got = await outputsOn('wasm', f);
    expect(got.outs.length).toBe(ref.outs.length);
    expect(got.outs.map((o) => [o.shape, o.dtype])).toEqual(ref.outs.map((o) => [o.shape, o.dtype]));
    for (let i = 0; i < ref.outs.length; i++) expect(got.outs[i].data).toEqual(ref.outs[i].data);
    errors[name] = Math.max(0, ...got.outs.map((o, i) => relErr(o.data, ref.outs[i].data)));
    if (fastPath) expect(got.reads).toBe(0);
    else expect(got.reads).toBeGreaterThan(0); // wasm's own kernel
    return got.outs;
  }

  describe('Slice', () => {
    it.each([
      // [name, shape, begin, size, dtype, contiguous]
      ['rank 1, middle', [10], [3], [4], 'float32', true],
      ['rank 2 along axis 0', [6, 5], [2, 0], [3, 5], 'float32', true],
      ['rank 2 along axis 0, size -1 (to the end)', [6, 5], [4, 0], [-1, -1], 'float32', true],
      ['rank 3 along axis 0', [4, 3, 5], [1, 0, 0], [2, -1, -1], 'float32', true],
      ['rank 4 along axis 0', [3, 2, 4, 5], [2, 0, 0, 0], [1, 2, 4, 5], 'float32', true],
      ['rank 4 along axis 0, the whole tensor', [3, 2, 4, 5], [0, 0, 0, 0], [3, 2, 4, 5], 'float32', true],
      ['rank 5 along axis 0', [3, 2, 2, 3, 2], [1, 0, 0, 0, 0], [2, 2, 2, 3, 2], 'float32', true],
      ['middle of the last axis, leading dims of size 1', [1, 1, 12], [0, 0, 3], [1, 1, 5], 'float32', true],
      ['middle of an inner axis, leading slice sizes 1 at non-zero offsets', [3, 4, 10], [1, 2, 3], [1, 1, 6], 'float32', true],
      ['middle of axis 2 of 4, leading size-1 slices, trailing axis whole', [2, 3, 6, 4], [1, 2, 1, 0], [1, 1, 4, 4], 'float32', true],
      ['non-contiguous: a 2-D window (fallback)', [4, 6], [1, 2], [2, 3], 'float32', false],
      ['non-contiguous: rank 3 window (fallback)', [3, 4, 5], [0, 1, 1], [3, 2, 3], 'float32', false],
      ['non-contiguous: rank 4, inner axis cut (fallback)', [2, 3, 4, 5], [0, 0, 1, 0], [2, 3, 2, 5], 'float32', false],
      ['int32 along axis 0', [5, 4], [1, 0], [3, 4], 'int32', true],
      ['int32 inner, leading size 1', [3, 8], [2, 1], [1, 6], 'int32', true],
      ['int32 non-contiguous (fallback)', [5, 4], [1, 1], [3, 2], 'int32', false],
      ['bool along axis 0', [6, 3], [2, 0], [2, 3], 'bool', true],
      ['bool non-contiguous (fallback)', [6, 3], [2, 1], [2, 2], 'bool', false],
    ] as [string, number[], number[], number[], Dtype, boolean][])('%s', (name, shape, begin, size, dtype, contiguous) =>
      expectSameOutputs(`Slice ${name}`, () => tf.slice(make(shape, dtype, 31), begin, size), contiguous),
    );

    it("slices of a reshaped view and of a slice (offsets into other tensors' data)", async () => {
      await expectSameOutputs('Slice of a reshape', () => tf.slice(tf.reshape(make([4, 3, 5], 'float32', 32), [6, 10]), [3, 0], [2, 10]), true);
      await expectSameOutputs('Slice of a slice', () => tf.slice(tf.slice(make([6, 4, 3], 'float32', 33), [2, 0, 0], [3, 4, 3]), [1, 1, 0], [1, 2, 3]), true);
    });

    it("an out-of-range slice throws as on cpu (wasm's own kernel reads past the end)", async () => {
      await setBackend('wasm');
      const x = tf.zeros([4, 3]);
      expect(() => tf.slice(x, [3, 0], [2, 3])).toThrow(/begin\[0\] \+ size\[0\] \(5\) would overflow input\.shape\[0\] \(4\)/);
      x.dispose();
    });

    it('a slice of size 0', async () => {
      const outs = await expectSameOutputs('Slice size 0 along axis 0', () => tf.slice(make([4, 3], 'float32', 34), [2, 0], [0, 3]), true);
      expect(outs[0].shape).toEqual([0, 3]);
      expect(outs[0].data).toEqual([]);
      await expectSameOutputs('Slice size 0 at the end', () => tf.slice(make([4, 3], 'int32', 35), [4, 0], [0, -1]), true);
    });
  });

  describe('Unpack (tf.unstack)', () => {
    it.each([
      // [name, shape, axis, dtype, fast path]
      ['axis 0, rank 2', [4, 5], 0, 'float32', true],
      ['axis 0, rank 3', [3, 4, 5], 0, 'float32', true],
      ['axis 0, rank 1 (scalars)', [5], 0, 'float32', true],
      ['axis 0, a single slice', [1, 6], 0, 'float32', true],
      ['axis 1 of [1, n, m]', [1, 4, 5], 1, 'float32', true],
      ['axis -1 of [1, 1, m]', [1, 1, 6], -1, 'float32', true],
      ['axis 1 of [2, n, m] (fallback)', [2, 4, 5], 1, 'float32', false],
      ['axis 2 of [1, n, m] (fallback)', [1, 3, 4], 2, 'float32', false],
      ['axis -1 of [n, m] (fallback)', [3, 4], -1, 'float32', false],
      ['int32 axis 0', [3, 4], 0, 'int32', true],
      ['int32 axis 1 of [1, n, m]', [1, 3, 2], 1, 'int32', true],
      ['int32 axis 1 of [2, n] (fallback)', [2, 3], 1, 'int32', false],
      ['bool axis 0', [4, 3], 0, 'bool', true],
    ] as [string, number[], number, Dtype, boolean][])('%s', async (name, shape, axis, dtype, fast) => {
      const outs = await expectSameOutputs(`Unpack ${name}`, () => tf.unstack(make(shape, dtype, 41), axis), fast);
      const a = (axis + shape.length) % shape.length;
      expect(outs.length).toBe(shape[a]);
      for (const o of outs) expect(o.shape).toEqual(shape.filter((_, i) => i !== a));
    });
  });

  describe('gradients through slice / unstack, wasm vs cpu', () => {
    const flat = (t: tf.Tensor) => tf.reshape(t, [-1]);
    it.each<GradCase>([
      {
        name: 'unstack axis 0 → weighted stack on axis 1',
        shapes: [[3, 4, 5]],
        f: (a) =>
          tf.stack(
            tf.unstack(a).map((t, i) => tf.mul(t, i + 1)),
            1,
          ),
      },
      {
        name: 'unstack axis 1 of [1, n, m] (fast) and of [2, n, m] (fallback)',
        shapes: [
          [1, 4, 5],
          [2, 4, 5],
        ],
        f: (a, b) => tf.concat([...tf.unstack(a, 1), ...tf.unstack(b, 1)].map(flat)),
      },
      {
        name: 'unstack → per-slice matMul → stack (the unrolled batchMatMul pattern)',
        shapes: [
          [3, 4, 5],
          [3, 5, 2],
        ],
        f: (a, b) => {
          const bs = tf.unstack(b);
          return tf.stack(tf.unstack(a).map((ai, g) => tf.matMul(ai as tf.Tensor2D, bs[g] as tf.Tensor2D)));
        },
      },
      {
        name: 'slice: contiguous (axis 0, inner with size-1 leads) and not',
        shapes: [
          [4, 6],
          [3, 4, 10],
        ],
        f: (a, b) =>
          tf.concat([
            flat(tf.slice(a, [1, 0], [2, -1])),
            flat(tf.slice(a, [0, 2], [3, 3])),
            flat(tf.slice(b, [1, 2, 3], [1, 1, 6])),
            flat(tf.slice(b, [0, 1, 0], [2, 2, 10])),
          ]),
      },
      {
        name: 'split (slices along axis 0 and axis 1)',
        shapes: [[6, 4]],
        f: (a) => {
          const [p, q] = tf.split(a, [2, 4], 0);
          const [r, s] = tf.split(a, 2, 1);
          return tf.concat([flat(tf.mul(p, 2)), flat(q), flat(tf.exp(r)), flat(s)]);
        },
      },
    ])('$name', (c) => expectGradsMatch(c));
  });

  it('leak neither tensors nor wasm buffers (fast paths, fallbacks, gradients)', async () => {
    await setBackend('wasm');
    const x = tf.randomNormal([3, 4, 5]),
      y = tf.randomNormal([1, 4, 5]);
    const buffers = () => tf.backend().numDataIds();
    const run = () => [
      tf.slice(x, [1, 0, 0], [2, -1, -1]),
      tf.slice(x, [0, 1, 1], [3, 2, 3]),
      tf.slice(x, [1, 1, 0], [0, 2, 5]),
      ...tf.unstack(x),
      ...tf.unstack(y, 1),
      ...tf.unstack(x, 1),
      ...tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.add(tf.sum(tf.stack(tf.unstack(a, 0))), tf.sum(tf.slice(b, [0, 1, 0], [1, 2, 5]))))([x, y]),
    ];
    tf.dispose(tf.tidy(run)); // warm-up
    const n = tf.memory().numTensors,
      b = buffers();
    tf.dispose(tf.tidy(run));
    expect(tf.memory().numTensors).toBe(n);
    expect(buffers()).toBe(b);
    tf.dispose([x, y]);
  });
});

describe('depthwise conv gradients on wasm match cpu', () => {
  const dw = (name: string, xs: number[], ws: number[], stride: number, pad: 'same' | 'valid' | number): GradCase => ({
    name,
    shapes: [xs, ws],
    f: (x, w) => tf.depthwiseConv2d(x as tf.Tensor4D, w as tf.Tensor4D, stride, pad),
  });
  it.each([
    dw('depthwise 3x3 s1 same, multiplier 2', [2, 6, 5, 3], [3, 3, 3, 2], 1, 'same'),
    dw('depthwise 3x3 s2 same, multiplier 1, odd size', [2, 7, 6, 4], [3, 3, 4, 1], 2, 'same'),
    dw('depthwise 3x3 s2 valid, multiplier 3', [1, 7, 8, 2], [3, 3, 2, 3], 2, 'valid'),
    dw('depthwise 2x2 s1 pad 1', [2, 4, 5, 2], [2, 2, 2, 2], 1, 1),
    dw('depthwise 1x1 s1', [2, 3, 4, 3], [1, 1, 3, 2], 1, 'valid'),
  ])('$name', (c) => expectGradsMatch(c));

  // tfjs' depthwise gradient refuses dilations > 1, and the cpu backprop kernels ignore dilations,
  // so the reference is a direct loop over the definition.
  it('dilation 2 (kernels called directly, against a naive loop)', async () => {
    const [B, H, W, C, M, K, d] = [2, 7, 6, 3, 2, 3, 2];
    const x = input([B, H, W, C], 1),
      dy = input([B, H, W, C * M], 2),
      f = input([K, K, C, M], 4);
    const attrs = { strides: [1, 1], dilations: [d, d], pad: 'same', dimRoundingMode: undefined };
    const { top, left } = tf.backend_util.computeConv2DInfo([B, H, W, C], [K, K, C, M], 1, d, 'same', undefined, true).padInfo;
    const dW = new Float32Array(K * K * C * M),
      dx = new Float32Array(B * H * W * C);
    for (let b = 0; b < B; b++)
      for (let y = 0; y < H; y++)
        for (let xo = 0; xo < W; xo++)
          for (let kh = 0; kh < K; kh++)
            for (let kw = 0; kw < K; kw++) {
              const i = y + kh * d - top,
                j = xo + kw * d - left;
              if (i < 0 || i >= H || j < 0 || j >= W) continue;
              for (let c = 0; c < C; c++)
                for (let m = 0; m < M; m++) {
                  const g = dy.data[((b * H + y) * W + xo) * C * M + c * M + m];
                  dW[((kh * K + kw) * C + c) * M + m] += x.data[((b * H + i) * W + j) * C + c] * g;
                  dx[((b * H + i) * W + j) * C + c] += f.data[((kh * K + kw) * C + c) * M + m] * g;
                }
            }
    const gotW = await kernelOn('wasm', tf.DepthwiseConv2dNativeBackpropFilter, { x, dy }, { ...attrs, filterShape: [K, K, C, M] });
    const gotX = await kernelOn('wasm', tf.DepthwiseConv2dNativeBackpropInput, { dy, filter: f }, { ...attrs, inputShape: [B, H, W, C] });
    expect(gotW.shape).toEqual([K, K, C, M]);
    expect(gotX.shape).toEqual([B, H, W, C]);
    errors['DepthwiseConv2dNativeBackpropFilter dilation 2 (vs loop)'] = relErr(gotW.data, dW);
    errors['DepthwiseConv2dNativeBackpropInput dilation 2 (vs loop)'] = relErr(gotX.data, dx);
    expect(relErr(gotW.data, dW)).toBeLessThanOrEqual(TOL);
    expect(relErr(gotX.data, dx)).toBeLessThanOrEqual(TOL);
  });
});

describe('UnsortedSegmentSum (gather gradient) on wasm matches cpu', () => {
  const ids = () =>
    tf.tensor2d(
      [
        [1, 4, 4],
        [0, 9, 1],
      ],
      [2, 3],
      'int32',
    );
  it.each<GradCase>([
    { name: 'gather axis 0 (embedding lookup, repeated ids)', shapes: [[10, 4]], f: (e) => tf.gather(e, ids()) },
    { name: 'gather axis 1', shapes: [[3, 10, 2]], f: (e) => tf.gather(e, ids(), 1) },
  ])('$name', (c) => expectGradsMatch(c));

  // The cpu kernel cannot take multi-dimensional ids (a broadcasting bug), so: a direct loop.
  it('drops out-of-range ids and takes multi-dim ids (kernel called directly, against a loop)', async () => {
    const x = input([2, 3, 5], 7),
      ids = Int32Array.from([2, -1, 0, 2, 6, 5]);
    const expected = new Float32Array(6 * 5);
    ids.forEach((s, i) => {
      if (s >= 0 && s < 6) for (let j = 0; j < 5; j++) expected[s * 5 + j] += x.data[i * 5 + j];
    });
    const got = await kernelOn('wasm', tf.UnsortedSegmentSum, { x, segmentIds: { shape: [2, 3], data: ids } }, { numSegments: 6 });
    expect(got.shape).toEqual([6, 5]);
    errors['UnsortedSegmentSum multi-dim ids (vs loop)'] = relErr(got.data, expected);
    expect(relErr(got.data, expected)).toBeLessThanOrEqual(TOL);
  });
});

describe('Einsum (forward) on wasm matches cpu', () => {
  it.each([
    [
      'ij,jk->ik',
      [
        [3, 4],
        [4, 5],
      ],
    ],
    [
      'bij,bjk->bik',
      [
        [2, 3, 4],
        [2, 4, 5],
      ],
    ],
    [
      'bhqd,bhkd->bhqk',
      [
        [2, 2, 3, 4],
        [2, 2, 5, 4],
      ],
    ],
    ['i,j->ij', [[3], [4]]],
    ['ij->ji', [[3, 4]]],
    ['ij->', [[3, 4]]],
    [
      'ij,ij->i',
      [
        [3, 4],
        [3, 4],
      ],
    ],
    ['ij->ij', [[3, 4]]],
  ] as [string, number[][]][])('%s', async (equation, shapes) => {
    const run = async (b: Backend) => {
      await setBackend(b);
      const xs = shapes.map((s, i) => tf.tensor(randn(tf.util.sizeFromShape(s), 3 + i), s));
      const y = tf.einsum(equation, ...xs);
      const out = { shape: y.shape, data: await y.data() };
      tf.dispose([y, ...xs]);
      return out;
    };
    const ref = await run('cpu');
    const got = await run('wasm');
    expect(got.shape).toEqual(ref.shape);
    errors[`einsum ${equation}`] = relErr(got.data, ref.data);
    expect(errors[`einsum ${equation}`]).toBeLessThanOrEqual(TOL);
  });
});

describe('resize gradients (present in wasm) are correct', () => {
  // Backend-free reference: resize is linear per image, dx = Mᵀ·dy with M built column by column
  // from the forward resize of one-hot images. (The cpu kernels are no reference: its
  // ResizeNearestNeighborGrad is wrong for batch > 1 and its ResizeBilinearGrad returns a
  // [B, W, H, C] shape; both backends ignore halfPixelCenters in the gradients, so only
  // halfPixelCenters=false is checked — see packages/*/src/resize.ts for the workaround.)
  it.each([
    ['bilinear', false],
    ['bilinear', true],
    ['nearest', false],
    ['nearest', true],
  ] as const)('%s alignCorners=%s, batch 2, non-square', async (kind, alignCorners) => {
    await setBackend('wasm');
    const [B, H, W, C] = [2, 3, 4, 2],
      size: [number, number] = [7, 5];
    const resize = (x: tf.Tensor4D) =>
      kind === 'bilinear' ? tf.image.resizeBilinear(x, size, alignCorners, false) : tf.image.resizeNearestNeighbor(x, size, alignCorners, false);
    const n = H * W * C,
      m = size[0] * size[1] * C; // per image
    const dy = randn(B * m, 11);
    const cols = await tf.tidy(() => tf.reshape(resize(tf.reshape(tf.eye(n), [n, H, W, C]) as tf.Tensor4D), [n, m])).data(); // row i = M[:, i]
    const expected = new Float32Array(B * n);
    for (let b = 0; b < B; b++) for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) expected[b * n + i] += cols[i * m + j] * dy[b * m + j];
    const x = tf.tensor4d(randn(B * n, 12), [B, H, W, C]);
    const g = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(resize(v as tf.Tensor4D), tf.tensor(dy, [B, size[0], size[1], C]))))(x);
    expect(g.shape).toEqual([B, H, W, C]);
    const e = relErr(await g.data(), expected);
    errors[`resize ${kind} alignCorners=${alignCorners} (vs dense operator)`] = e;
    tf.dispose([x, g]);
    expect(e).toBeLessThanOrEqual(TOL);
  });
});

describe('gradients of the ops the models use, wasm vs cpu', () => {
  const pos = { 0: (v: number) => Math.abs(v) + 0.5 };
  const cases: GradCase[] = [
    {
      name: 'matMul',
      shapes: [
        [3, 4],
        [4, 5],
      ],
      f: (a, b) => tf.matMul(a, b),
    },
    {
      name: 'matMul transposeA/B',
      shapes: [
        [4, 3],
        [5, 4],
      ],
      f: (a, b) => tf.matMul(a, b, true, true),
    },
    // (tfjs' BatchMatMul gradient does not reduce broadcast batch dims, on any backend: no broadcast here)
    {
      name: 'batchMatMul + transposeB',
      shapes: [
        [2, 3, 4],
        [2, 5, 4],
      ],
      f: (a, b) => tf.matMul(a, b, false, true),
    },
    {
      name: 'add/sub/mul/div broadcasting',
      shapes: [[2, 3, 4], [4], [3, 1], [1, 3, 1]],
      prep: { 3: (v) => Math.abs(v) + 1 },
      f: (a, b, c, d) => tf.div(tf.mul(tf.sub(tf.add(a, b), c), d), d),
    },
    { name: 'softmax, logSoftmax', shapes: [[3, 5]], f: (a) => tf.add(tf.softmax(a), tf.logSoftmax(a)) },
    { name: 'exp, log', shapes: [[3, 5]], prep: pos, f: (a) => tf.add(tf.exp(a), tf.log(a)) },
    { name: 'sigmoid, tanh, erf (GELU)', shapes: [[3, 5]], f: (a) => tf.add(tf.mul(a, tf.sigmoid(a)), tf.mul(tf.tanh(a), tf.erf(a))) },
    { name: 'relu, abs, step, clipByValue', shapes: [[4, 5]], f: (a) => tf.stack([tf.relu(a), tf.abs(a), tf.step(a), tf.clipByValue(a, -0.5, 0.7)]) },
    {
      name: 'mean, sum, max, min with keepDims',
      shapes: [[3, 5]],
      f: (a) => tf.concat([tf.mean(a, 1, true), tf.sum(a, 1, true), tf.max(a, 1, true), tf.min(a, 1, true)], 1),
    },
    {
      name: 'moments, rsqrt, square, pow, sqrt (GroupNorm/LayerNorm)',
      shapes: [[2, 4, 3, 2]],
      f: (a) => {
        const { mean, variance } = tf.moments(a, [1, 3], true);
        return tf.add(tf.mul(tf.sub(a, mean), tf.rsqrt(tf.add(variance, 1e-5))), tf.sqrt(tf.add(tf.pow(tf.square(a), 1.5), 1)));
      },
    },
    {
      name: 'pow with tensor exponent',
      shapes: [
        [3, 4],
        [3, 4],
      ],
      prep: pos,
      f: (a, b) => tf.pow(a, b),
    },
    {
      name: 'reshape, transpose, concat, split, slice, pad, tile',
      shapes: [[2, 3, 4]],
      f: (a) => {
        const [p, q] = tf.split(tf.transpose(tf.reshape(a, [6, 4])), [1, 3], 0);
        return tf.concat(
          [
            tf.tile(
              tf.pad(tf.slice(q, [0, 1], [3, 4]), [
                [1, 0],
                [0, 2],
              ]),
              [1, 2],
            ),
            tf.tile(tf.slice(p, [0, 1], [1, 5]), [4, 1]),
          ],
          1,
        ); // [4, 17]
      },
    },
    {
      name: 'cast, log1p, softplus, maximum, minimum, where',
      shapes: [
        [3, 4],
        [3, 4],
      ],
      prep: pos,
      f: (a, b) => {
        const cond = tf.tensor2d(
          [
            [1, 0, 1, 0],
            [0, 0, 1, 1],
            [1, 1, 0, 0],
          ],
          [3, 4],
          'bool',
        );
        return tf.stack([tf.cast(a, 'float32'), tf.log1p(a), tf.softplus(b), tf.maximum(a, b), tf.minimum(a, b), tf.where(cond, a, b)]);
      },
    },
    {
      name: 'oneHot (constant) · x, bandPart batch 2',
      shapes: [[2, 4, 4]],
      f: (a) => tf.add(tf.mul(a, tf.oneHot(tf.tensor1d([0, 1, 3, 2], 'int32'), 4)), tf.linalg.bandPart(a, 0, -1)),
    },
  ];
  it.each(cases)('$name', (c) => expectGradsMatch(c));
});

describe('end to end', () => {
  it('conv → GroupNorm-like moments → SiLU → matMul → softmax → mean: gradients equal on cpu and wasm', () =>
    expectGradsMatch({
      name: 'e2e conv→groupnorm→silu→matMul→softmax→mean',
      shapes: [[2, 6, 6, 4], [3, 3, 4, 8], [8], [8], [8, 5]],
      prep: { 2: (v) => 1 + 0.1 * v },
      f: (x, w, gamma, beta, proj) => {
        const h = tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 2, [
          [0, 0],
          [0, 1],
          [0, 1],
          [0, 0],
        ]); // [2, 3, 3, 8]
        const g = tf.reshape(h, [2, 9, 2, 4]); // 2 groups of 4 channels
        const { mean, variance } = tf.moments(g, [1, 3], true);
        const n = tf.add(tf.mul(tf.reshape(tf.mul(tf.sub(g, mean), tf.rsqrt(tf.add(variance, 1e-5))), [2, 3, 3, 8]), gamma), beta);
        const s = tf.mul(n, tf.sigmoid(n)); // SiLU
        const logits = tf.matMul(tf.reshape(s, [2, 9, 8]), tf.tile(tf.reshape(proj, [1, 8, 5]), [2, 1, 1]) as tf.Tensor3D); // [2, 9, 5]
        return tf.mean(tf.softmax(logits), [1], true);
      },
    }));
});

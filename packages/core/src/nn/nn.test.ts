import * as tf from '@tensorflow/tfjs-core';
import { backendStrategy, setBackend } from '../backends/backend';
import { wasmStrategy } from '../backends/wasm/wasm_strategy';
import { SafetensorsBytes, serializeSafetensors } from '../safetensors';
import { WeightScope } from '../weights';
import { Conv2d } from './conv2d';
import { GroupNorm } from './group_norm';
import { LayerNorm } from './layer_norm';
import { Linear } from './linear';
import { scaledDotProductAttention } from './attention';
import { expectClose, expectDefined, expectNoLeak } from '../testing';

/** A WeightScope over in-memory torch-layout tensors. */
function scopeOf(tensors: Record<string, { shape: number[]; data: number[] }>) {
  const bytes = serializeSafetensors(
    Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, { dtype: 'F32' as const, shape: t.shape, data: Float32Array.from(t.data) }])),
  );
  return WeightScope.fromSource(new SafetensorsBytes(bytes, 'test.safetensors'));
}

describe.each(['cpu', 'wasm'] as const)('nn primitives on %s', (backend) => {
  beforeAll(() => setBackend(backend));

  it('Linear keeps torch [out, in] and works on any leading shape', async () => {
    const { module: lin, params } = scopeOf({ weight: { shape: [2, 3], data: [1, 2, 3, 4, 5, 6] }, bias: { shape: [2], data: [0.5, -1] } }).build(
      (s) => new Linear(s, 3, 2),
    );
    const y = tf.tidy(() => lin.forward(tf.tensor([1, 0, -1, 2, 1, 0], [1, 2, 3])));
    await expectClose(params.get('weight'), [1, 2, 3, 4, 5, 6], 0); // kept as the checkpoint's [out, in]
    expect(y.shape).toEqual([1, 2, 2]);
    await expectClose(y, [1 - 3 + 0.5, 4 - 6 - 1, 2 + 2 + 0.5, 8 + 5 - 1], 1e-6);
    y.dispose();
    await expectNoLeak(() => tf.tidy(() => lin.forward(tf.ones([4, 3]))), 'Linear.forward');
    params.dispose();
  });

  it('Conv2d keeps OIHW and pads explicitly like torch', async () => {
    // one output channel, two input channels, 3×3 kernel: channel 0 weights all 1, channel 1 weights the centre only
    const w = [...Array(9).fill(1), 0, 0, 0, 0, 2, 0, 0, 0, 0];
    const { module: conv, params } = scopeOf({ weight: { shape: [1, 2, 3, 3], data: w }, bias: { shape: [1], data: [0.25] } }).build(
      (s) => new Conv2d(s, 2, 1, 3, { padding: 1 }),
    );
    // x: [1, 2, 2, 2] NHWC; channel 0 = 1 everywhere, channel 1 = pixel index
    const x = tf.tensor4d([1, 0, 1, 1, 1, 2, 1, 3], [1, 2, 2, 2]);
    const y = conv.forward(x);
    // each output sees all four channel-0 ones (zero padding) + 2 × its own channel-1 value + bias
    await expectClose(y, [4.25, 6.25, 8.25, 10.25], 1e-6);
    tf.dispose([x, y]);
    await expectClose(params.get('weight'), w, 0);
    params.dispose();
  });

  it('Linear and Conv2d with large frozen weights and few pixels equal the plain products, input gradients included (on wasm: the weight streamed)', async () => {
    // few output pixels, wide layers: on wasm, streamsWeight picks the streamed product for both
    const scope = WeightScope.fresh({ seed: 3, trainable: false });
    const lin = new Linear(scope.pp('lin'), 128, 96);
    const conv = new Conv2d(scope.pp('conv'), 96, 40, 3, {
      stride: 2,
      padding: [
        [1, 0],
        [2, 1],
      ],
    });
    const params = scope.finish();
    const x = tf.randomNormal([2, 5, 6, 128], 0, 1, 'float32', 4) as tf.Tensor4D;
    const net = (f: (t: tf.Tensor4D) => tf.Tensor4D) => (t: tf.Tensor4D) => tf.tanh(f(t)) as tf.Tensor4D;
    const ours = net((t) => conv.forward(lin.forward(t) as tf.Tensor4D));
    const reference = net((t) => {
      const h = tf.add(tf.matMul(tf.reshape(t, [-1, 128]), lin.weight, false, true), expectDefined(lin.bias, 'lin.bias')); // [B·H·W, 96]
      const hwio = tf.transpose(conv.weight, [2, 3, 1, 0]) as tf.Tensor4D; // [kh, kw, I, O]
      return tf.add(
        tf.conv2d(tf.reshape(h, [2, 5, 6, 96]) as tf.Tensor4D, hwio, 2, [
          [0, 0],
          [1, 0],
          [2, 1],
          [0, 0],
        ]),
        expectDefined(conv.bias, 'conv.bias'),
      ) as tf.Tensor4D;
    });
    const g = tf.randomNormal([2, 2, 4, 40], 0, 1, 'float32', 5); // output [2, ⌊(5+1−3)/2⌋+1, ⌊(6+3−3)/2⌋+1, 40]
    const y = ours(x);
    expect(y.shape).toEqual([2, 2, 4, 40]);
    await expectClose(y, await reference(x).data(), 1e-5, 'forward');
    const dx = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(ours(t as tf.Tensor4D), g)))(x);
    await expectClose(
      dx,
      await tf
        .grad((t: tf.Tensor) => tf.sum(tf.mul(reference(t as tf.Tensor4D), g)))(x)
        .data(),
      1e-5,
      'input gradient',
    );
    if (backendStrategy() === wasmStrategy) {
      // both products have the weight [O, K] on the left: XNNPACK streams it and packs only the activation
      // (on the native kernels, nativeWasmStrategy runs tfjs' plain ops instead)
      const profile = await tf.profile(() => ours(x));
      expect(profile.kernels.filter((k) => k.name === 'BatchMatMul').map((k) => k.inputShapes)).toEqual([
        [
          [96, 128],
          [128, 60],
        ],
        [
          [40, 864],
          [864, 16],
        ],
      ]);
      tf.dispose(profile.result as tf.Tensor);
    }
    await expectNoLeak(() => tf.grad((t: tf.Tensor) => tf.sum(ours(t as tf.Tensor4D)))(x), 'streamed forward and gradient');
    tf.dispose([x, g, y, dx]);
    params.dispose();
  });

  it('Conv2d: a frozen weight keeps an HWIO layout from load time off wasm, so a forward transposes nothing; a trainable one has none and gets its gradient', async () => {
    const frozen = WeightScope.fresh({ seed: 5, trainable: false });
    const conv = new Conv2d(frozen.pp('conv'), 3, 4, 3, { padding: 1 });
    const params = frozen.finish();
    const x = tf.randomNormal([1, 6, 6, 3], 0, 1, 'float32', 6) as tf.Tensor4D; // 36 pixels, a 4×27 weight: not streamed on wasm
    const layout = params.layoutOf('conv.weight');
    if (backend === 'wasm') {
      expect(layout).toBeUndefined(); // no second copy in wasm32's heap
    } else {
      await expectClose(expectDefined(layout, 'conv.weight layout'), await tf.transpose(conv.weight, [2, 3, 1, 0]).data(), 0, 'HWIO layout');
      const profile = await tf.profile(() => conv.forward(x));
      expect(profile.kernelNames).not.toContain('Transpose');
      tf.dispose(profile.result as tf.Tensor);
    }
    const trainable = WeightScope.fresh({ seed: 5 }); // the same values, as tf.Variables
    const tconv = new Conv2d(trainable.pp('conv'), 3, 4, 3, { padding: 1 });
    const tparams = trainable.finish();
    expect(tparams.layoutOf('conv.weight')).toBeUndefined();
    const g = tf.randomNormal([1, 6, 6, 4], 0, 1, 'float32', 7);
    await expectClose(tconv.forward(x), await conv.forward(x).data(), 0, 'trainable forward');
    const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(tconv.forward(x), g)), [tconv.weight as tf.Variable]);
    const reference = tf.grad((w: tf.Tensor) =>
      tf.sum(
        tf.mul(
          tf.conv2d(x, tf.transpose(w, [2, 3, 1, 0]) as tf.Tensor4D, 1, [
            [0, 0],
            [1, 1],
            [1, 1],
            [0, 0],
          ]),
          g,
        ),
      ),
    )(conv.weight);
    await expectClose(grads[(tconv.weight as tf.Variable).name], await reference.data(), 1e-5, 'weight gradient');
    tf.dispose([x, g, value, grads, reference]);
    const live = tf.memory().numTensors;
    params.dispose(); // the layout with the weights
    expect(tf.memory().numTensors).toBe(live - (backend === 'wasm' ? 2 : 3));
    tparams.dispose();
  });

  it('scaledDotProductAttention equals the textbook formula, key mask included', async () => {
    const q = tf.randomNormal([2, 2, 3, 4], 0, 1, 'float32', 6) as tf.Tensor4D;
    const k = tf.randomNormal([2, 2, 5, 4], 0, 1, 'float32', 7) as tf.Tensor4D;
    const v = tf.randomNormal([2, 2, 5, 3], 0, 1, 'float32', 8) as tf.Tensor4D;
    const bias = tf.tensor4d([0, 0, 0, -1e9, -1e9, 0, 0, 0, 0, 0], [2, 1, 1, 5]);
    const ours = scaledDotProductAttention(q, k, v, { bias });
    const ref = tf.matMul(tf.softmax(tf.add(tf.mul(tf.matMul(q, k, false, true), 0.5), bias)), v);
    await expectClose(ours, await ref.data(), 1e-5, 'attention');
    tf.dispose([q, k, v, bias, ours, ref]);
  });

  it('GroupNorm groups contiguous channels as PyTorch does', async () => {
    const s = WeightScope.fresh();
    const gn = new GroupNorm(s, 2, 4, 1e-5);
    const params = s.finish();
    // channels (0,1) form group 0 and (2,3) group 1; a per-group constant offset must vanish
    const x = tf.tensor4d([0, 2, 100, 104, 4, 6, 108, 112], [1, 1, 2, 4]);
    const y = gn.forward(x);
    const g0 = [0, 2, 4, 6],
      g1 = [100, 104, 108, 112];
    const norm = (v: number[]) => {
      const m = v.reduce((a, b) => a + b) / 4;
      const s2 = v.reduce((a, b) => a + (b - m) ** 2, 0) / 4;
      return v.map((t) => (t - m) / Math.sqrt(s2 + 1e-5));
    };
    const [a, b] = [norm(g0), norm(g1)];
    await expectClose(y, [a[0], a[1], b[0], b[1], a[2], a[3], b[2], b[3]], 1e-5);
    tf.dispose([x, y]);
    params.dispose();
  });

  it('LayerNorm normalises the last axis', async () => {
    const s = WeightScope.fresh();
    const ln = new LayerNorm(s, 2, 0);
    const params = s.finish();
    const y = tf.tidy(() => ln.forward(tf.tensor2d([1, 3, -2, 2], [2, 2])));
    await expectClose(y, [-1, 1, -1, 1], 1e-6);
    y.dispose();
    params.dispose();
  });
});

describe('WeightScope', () => {
  it('names the missing key, its shape and the keys that exist nearby', () => {
    const scope = scopeOf({ 'a.weight': { shape: [2, 3], data: [0, 0, 0, 0, 0, 0] } });
    const before = tf.memory().numTensors;
    expect(() => scope.build((s) => new Linear(s.pp('a'), 3, 2))).toThrow(
      /missing tensor 'a\.bias' \(expected shape \[2\]\); tensors under 'a\.': 'a\.weight'/,
    );
    expect(tf.memory().numTensors).toBe(before);
  });

  it('names a mis-shaped tensor with both shapes', () => {
    const scope = scopeOf({ weight: { shape: [3, 2], data: [0, 0, 0, 0, 0, 0] } });
    expect(() => scope.build((s) => new Linear(s, 3, 2, { bias: false }))).toThrow(/'weight' has shape \[3,2\], expected \[2,3\]/);
  });

  it('reports tensors that no module asked for', () => {
    const scope = scopeOf({ weight: { shape: [2, 3], data: [0, 0, 0, 0, 0, 0] }, extra: { shape: [1], data: [0] } });
    expect(() => scope.build((s) => new Linear(s, 3, 2, { bias: false }))).toThrow(/unexpected tensors 'extra'/);
  });

  it('names trainable variables after their parameter keys, so gradients are keyed by them', () => {
    const build = () => WeightScope.fresh({ seed: 0 }).build((s) => new Linear(s.pp('proj'), 3, 2));
    const one = build();
    const two = build(); // the same keys while the first lives
    expect(one.params.trainableVariables().map((v) => v.name)).toEqual(['proj.weight', 'proj.bias']);
    expect(two.params.trainableVariables().map((v) => v.name)).toEqual(['proj.weight#2', 'proj.bias#2']);
    const { value, grads } = tf.variableGrads(() => tf.sum(one.module.forward(tf.ones([1, 3]))));
    expect(Object.keys(grads).sort()).toEqual(['proj.bias', 'proj.weight']);
    tf.dispose([value, grads]);
    one.params.dispose();
    two.params.dispose();
    const three = build(); // the names are free again
    expect(three.params.trainableVariables().map((v) => v.name)).toEqual(['proj.weight', 'proj.bias']);
    three.params.dispose();
  });

  it('makes tf.Variables in trainable scopes, seeded per key', async () => {
    const a = WeightScope.fresh({ seed: 7 });
    new Linear(a.pp('x'), 4, 4);
    const pa = a.finish();
    const b = WeightScope.fresh({ seed: 7 });
    new Linear(b.pp('x'), 4, 4);
    const pb = b.finish();
    expect(pa.trainableVariables()).toHaveLength(2);
    await expectClose(pa.get('x.weight'), await pb.get('x.weight').data(), 0);
    pa.dispose();
    pb.dispose();
  });
});

import * as tf from '@tensorflow/tfjs-core';
import { setBackend } from '../backends/backend';
import { expectClose, expectNoLeak } from '../testing';
import { recompute } from './recompute';

describe.each(['cpu', 'wasm'] as const)('recompute on %s', (backend) => {
  let x: tf.Tensor2D, y: tf.Tensor1D, w: tf.Variable, v: tf.Variable, unused: tf.Variable;
  beforeAll(async () => {
    await setBackend(backend);
    x = tf.randomNormal([2, 3], 0, 1, 'float32', 1);
    y = tf.randomNormal([3], 0, 1, 'float32', 2);
    w = tf.variable(tf.randomNormal([3, 4], 0, 1, 'float32', 3), true, `w_${backend}`);
    v = tf.variable(tf.randomNormal([4], 0, 1, 'float32', 4), true, `v_${backend}`);
    unused = tf.variable(tf.ones([5]), true, `unused_${backend}`);
  });
  afterAll(() => tf.dispose([x, y, w, v, unused]));

  /** Three outputs of different shapes: [2, 4], [2], [2, 3]; a chain of ops long enough to have intermediates. */
  const fn = (a: tf.Tensor, b: tf.Tensor): tf.Tensor[] => {
    let h = tf.matMul(tf.add(a, b) as tf.Tensor2D, w as tf.Tensor2D); // [2, 4]
    for (let i = 0; i < 4; i++) h = tf.tanh(tf.add(tf.mul(h, 0.9), v));
    return [h, tf.mul(tf.sum(tf.mul(a, b), 1), tf.mean(w)), tf.exp(a)];
  };
  /** A scalar that weighs every output differently. */
  const loss = (outs: tf.Tensor[]): tf.Scalar =>
    tf.addN(outs.map((o, i) => tf.sum(tf.mul(o, tf.reshape(tf.linspace(1, 2 + i, o.size), o.shape))))) as tf.Scalar;
  const plain = (a: tf.Tensor, b: tf.Tensor) => fn(a, b);
  const checkpointed = (a: tf.Tensor, b: tf.Tensor) => recompute(fn, [a, b], { variables: [w, v, unused] });

  it('returns the outputs of fn, bit for bit', async () => {
    const [ref, ours] = [plain(x, y), checkpointed(x, y)];
    expect(ours.map((o) => o.shape)).toEqual([[2, 4], [2], [2, 3]]);
    for (let i = 0; i < ref.length; i++) expect(await ours[i].data()).toEqual(await ref[i].data());
    tf.dispose([ref, ours]);
  });

  it('gives the gradients of the plain computation for inputs and variables; zeros for an unused variable', async () => {
    const inputGrads = (f: typeof plain) => tf.grads((a: tf.Tensor, b: tf.Tensor) => loss(f(a, b)))([x, y]);
    const [refInputs, ourInputs] = [inputGrads(plain), inputGrads(checkpointed)];
    for (let i = 0; i < 2; i++) await expectClose(ourInputs[i], await refInputs[i].data(), 1e-6, `input ${i}`);
    tf.dispose([refInputs, ourInputs]);
    const ref = tf.variableGrads(() => loss(plain(x, y)), [w, v, unused]);
    const ours = tf.variableGrads(() => loss(checkpointed(x, y)), [w, v, unused]);
    await expectClose(ours.value, await ref.value.data(), 1e-6, 'loss');
    for (const k of [w.name, v.name]) await expectClose(ours.grads[k], await ref.grads[k].data(), 1e-6, k);
    expect(ref.grads[unused.name]).toBeUndefined(); // tfjs: no gradient for a variable the loss does not reach
    await expectClose(ours.grads[unused.name], [0, 0, 0, 0, 0], 0, unused.name);
    tf.dispose([ref.value, ours.value, ref.grads, ours.grads]);
  });

  it('keeps no intermediate of fn for the gradient: only new storage for its outputs', () => {
    const newBuffers = (f: typeof plain) => {
      let count = 0;
      const { value, grads } = tf.variableGrads(() => {
        const before = tf.memory().numDataBuffers;
        const outs = f(x, y);
        count = tf.memory().numDataBuffers - before;
        return loss(outs);
      }, [w, v]);
      tf.dispose([value, grads]);
      return count;
    };
    // tfjs saves a tensor for a gradient as a clone, which shares its storage (on wasm through
    // @png/core's Identity). New storage: the 3 outputs only.
    expect(newBuffers(checkpointed)).toBe(3);
    expect(newBuffers(plain)).toBeGreaterThan(20);
  });

  it('runs the recompute and its backpropagation inside aroundBackward, once per gradient', () => {
    const events: string[] = [];
    const traced = (a: tf.Tensor, b: tf.Tensor) => {
      events.push('fn');
      return fn(a, b);
    };
    const { value, grads } = tf.variableGrads(
      () =>
        loss(
          recompute(traced, [x, y], {
            variables: [w, v],
            aroundBackward: (backward) => {
              events.push('before');
              backward();
              events.push('after');
            },
          }),
        ),
      [w, v],
    );
    expect(events).toEqual(['fn', 'before', 'fn', 'after']);
    tf.dispose([value, grads]);
  });

  it('leaks nothing, with or without a tape; registered trainable variables are the default', async () => {
    await expectNoLeak(() => checkpointed(x, y), 'recompute (no tape)');
    await expectNoLeak(() => tf.variableGrads(() => loss(recompute(fn, [x, y])), [w, v]), 'recompute (gradients)');
    await expectNoLeak(() => tf.grads((a: tf.Tensor, b: tf.Tensor) => loss(checkpointed(a, b)))([x, y]), 'recompute (input gradients)');
  });

  it('names what it cannot do', () => {
    expect(() => recompute(() => [tf.tensor1d([1], 'int32')], [x])).toThrow('recompute: output 0 of fn is int32; only float32 outputs have gradients');
    expect(() => recompute(() => [], [x])).toThrow('recompute: fn returned no tensors');
    let calls = 0;
    const unstable = (a: tf.Tensor) => [++calls === 1 ? tf.exp(a) : tf.exp(tf.concat([a, a]))];
    expect(() => tf.variableGrads(() => loss(recompute(unstable, [x], { variables: [w] })), [w])).toThrow(
      'recompute: fn returned shapes [[4,3]] when run again, [[2,3]] the first time',
    );
  });
});

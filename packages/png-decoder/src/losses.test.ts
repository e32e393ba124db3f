import * as tf from '@tensorflow/tfjs-core';
import { setBackend } from '@png/core';
import { expectNoLeak } from '@png/core/testing';
import { deepSupervisionLoss, maskLoss } from './index';
import { gradCheck } from '@png/core/testing';

/** Reference in plain JS (Mask2Former's sigmoid_ce_loss mean + dice_loss), one phrase. */
function reference(x: number[], t: number[]): { bce: number; dice: number } {
  let ce = 0,
    st = 0,
    s = 0,
    tt = 0;
  x.forEach((v, i) => {
    const sig = 1 / (1 + Math.exp(-v));
    ce += -(t[i] * Math.log(sig) + (1 - t[i]) * Math.log(1 - sig));
    st += sig * t[i];
    s += sig;
    tt += t[i];
  });
  return { bce: ce / x.length, dice: 1 - (2 * st + 1) / (s + tt + 1) };
}

describe.each(['cpu', 'wasm'] as const)('mask losses on %s', (backend) => {
  beforeAll(() => setBackend(backend));

  it('equal BCE + Dice averaged over the real phrases; padding contributes 0 to value and gradient', async () => {
    // B = 1, 2×2 pixels, P = 3: phrases 0 and 1 real, phrase 2 padding with wild logits
    const x = [
      [0.5, -1, 2, 0],
      [3, -2, 0.1, -0.3],
      [80, -90, 1e3, -1e3],
    ];
    const t = [
      [1, 0, 1, 0],
      [0, 0, 1, 1],
      [0, 1, 0, 1],
    ];
    const nhwc = (a: number[][]) =>
      tf.tensor4d(
        [0, 1, 2, 3].flatMap((px) => a.map((row) => row[px])),
        [1, 2, 2, 3],
      );
    const logits = nhwc(x);
    const targets = nhwc(t);
    const mask = tf.tensor2d([[1, 1, 0]]);
    const r0 = reference(x[0], t[0]),
      r1 = reference(x[1], t[1]);
    const expected = (r0.bce + r0.dice + r1.bce + r1.dice) / 2;
    const loss = maskLoss(logits, targets, mask);
    expect((await loss.data())[0]).toBeCloseTo(expected, 5);
    const weighted = maskLoss(logits, targets, mask, { bce_weight: 2, dice_weight: 0.5 });
    expect((await weighted.data())[0]).toBeCloseTo((2 * (r0.bce + r1.bce) + 0.5 * (r0.dice + r1.dice)) / 2, 5);
    const g = tf.grad((l: tf.Tensor) => maskLoss(l as tf.Tensor4D, targets, mask))(logits);
    const gv = await g.data();
    expect([2, 5, 8, 11].map((i) => gv[i])).toEqual([0, 0, 0, 0]); // phrase 2 (channel 2 of every pixel)
    expect([0, 1, 3, 4].some((i) => gv[i] !== 0)).toBe(true);
    // no real phrase at all → 0
    const none = maskLoss(logits, targets, tf.zeros([1, 3]) as tf.Tensor2D);
    expect((await none.data())[0]).toBe(0);
    await expectNoLeak(() => maskLoss(logits, targets, mask), 'maskLoss');
    await expectNoLeak(() => tf.grad((l: tf.Tensor) => maskLoss(l as tf.Tensor4D, targets, mask))(logits), 'grad(maskLoss)');
    tf.dispose([logits, targets, mask, loss, weighted, g, none]);
  });

  it('resizes logits to the target resolution and names both shapes on a mismatch', async () => {
    const logits = tf.randomNormal([2, 4, 4, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
    const targets = tf.cast(tf.greater(tf.randomUniform([2, 16, 16, 3], 0, 1, 'float32', 2), 0.5), 'float32') as tf.Tensor4D;
    const mask = tf.ones([2, 3]) as tf.Tensor2D;
    const loss = maskLoss(logits, targets, mask);
    expect(loss.shape).toEqual([]);
    expect(Number.isFinite((await loss.data())[0])).toBe(true);
    expect(() => maskLoss(logits, tf.zeros([2, 16, 16, 4]) as tf.Tensor4D, mask)).toThrow('maskLoss: targets [2,16,16,4] do not match logits [2,4,4,3]');
    expect(() => maskLoss(logits, targets, tf.ones([2, 4]) as tf.Tensor2D)).toThrow('maskLoss: phraseMask [2,4] does not match logits [2,4,4,3]');
    const preds = [logits, tf.mul(logits, 2) as tf.Tensor4D];
    const deep = deepSupervisionLoss(preds, targets, mask);
    const l2 = maskLoss(preds[1], targets, mask);
    expect((await deep.data())[0]).toBeCloseTo((await loss.data())[0] + (await l2.data())[0], 5);
    await expectNoLeak(() => deepSupervisionLoss(preds, targets, mask), 'deepSupervisionLoss');
    tf.dispose([logits, targets, mask, loss, preds[1], deep, l2]);
  });
});

describe('maskLoss gradients (cpu, float32 central differences)', () => {
  beforeAll(() => setBackend('cpu'));
  it('match finite differences, with resizing', async () => {
    const logits = tf.variable(tf.randomNormal([1, 4, 4, 3], 0, 2, 'float32', 3));
    const targets = tf.cast(tf.greater(tf.randomUniform([1, 8, 8, 3], 0, 1, 'float32', 4), 0.5), 'float32') as tf.Tensor4D;
    const mask = tf.tensor2d([[1, 1, 0]]);
    const results = await gradCheck(() => maskLoss(logits as tf.Tensor4D, targets, mask), [logits], { entries: 16, eps: 1e-2, seed: 2, minGrad: 1e-3 });
    const worst = Math.max(...results.map((r) => r.relError));
    // eslint-disable-next-line no-console
    console.log(`maskLoss gradcheck: ${results.length} entries, max rel err ${worst.toExponential(2)}`);
    expect(worst).toBeLessThan(1e-2);
    tf.dispose([logits, targets, mask]);
  });
});

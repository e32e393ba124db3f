import * as tf from '@tensorflow/tfjs-core';
import { setBackend } from '@png/core';
import { expectClose, expectNoLeak } from '@png/core/testing';
import { boxLoss, deepSupervisionLoss, maskBoxes, maskLoss, type PointSampling } from './index';
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

/** A `random` that returns `values` in turn (then throws: the test drew more than it planned). */
function sequence(values: number[]): () => number {
  let i = 0;
  return () => {
    if (i >= values.length) throw new Error(`sequence: drew more than its ${values.length} values`);
    return values[i++];
  };
}

describe.each(['cpu', 'wasm'] as const)("maskLoss at Mask2Former's sampled points on %s", (backend) => {
  beforeAll(() => setBackend(backend));

  it('at every pixel centre once (no importance sampling) equals the loss over every pixel, gradient too', async () => {
    const [h, w] = [4, 4];
    const logits = tf.randomNormal([2, h, w, 3], 0, 2, 'float32', 5) as tf.Tensor4D;
    const targets = tf.cast(tf.greater(tf.randomUniform([2, h, w, 3], 0, 1, 'float32', 6), 0.5), 'float32') as tf.Tensor4D;
    const mask = tf.tensor2d([
      [1, 1, 0],
      [1, 0, 1],
    ]);
    // per mask: 16 candidates (x, y) drawn and unused, then the 16 uniform points, here the pixel centres
    const centres = Array.from({ length: h * w }, (_, i) => [((i % w) + 0.5) / w, (Math.floor(i / w) + 0.5) / h]).flat();
    const draws = () => Array.from({ length: 6 }, () => [...new Array(2 * h * w).fill(0.3), ...centres]).flat();
    const points = (): PointSampling => ({ num_points: h * w, oversample_ratio: 1, importance_sample_ratio: 0, random: sequence(draws()) });
    const all = await maskLoss(logits, targets, mask).data();
    expect((await maskLoss(logits, targets, mask, {}, points()).data())[0]).toBeCloseTo(all[0], 5);
    const g = await tf
      .grad((l: tf.Tensor) => maskLoss(l as tf.Tensor4D, targets, mask))(logits)
      .data();
    const gp = await tf
      .grad((l: tf.Tensor) => maskLoss(l as tf.Tensor4D, targets, mask, {}, points()))(logits)
      .data();
    for (let i = 0; i < g.length; i++) expect(gp[i]).toBeCloseTo(g[i], 6);
    await expectNoLeak(() => maskLoss(logits, targets, mask, {}, points()), 'maskLoss with points');
    tf.dispose([logits, targets, mask]);
  });

  it('takes the most uncertain candidates: all points where the logit is 0, none where it is 20', async () => {
    // one 8×8 mask: logits 0 on the left half, 20 on the right; target empty
    const logits = tf.tensor4d(
      Array.from({ length: 64 }, (_, i) => (i % 8 < 4 ? 0 : 20)),
      [1, 8, 8, 1],
    );
    const targets = tf.zeros([1, 8, 8, 1]) as tf.Tensor4D;
    const mask = tf.ones([1, 1]) as tf.Tensor2D;
    let state = 7;
    const random = () => {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      return state / 2 ** 32;
    };
    // 4 points, the 4 most uncertain of 200 candidates: logit 0 there, so BCE log 2 and Dice 1 − 1/(4·½ + 1)
    const loss = await maskLoss(logits, targets, mask, {}, { num_points: 4, oversample_ratio: 50, importance_sample_ratio: 1, random }).data();
    expect(loss[0]).toBeCloseTo(Math.log(2) + (1 - 1 / 3), 5);
    tf.dispose([logits, targets, mask]);
  });

  it('reads targets at their own resolution, runs in deep supervision, and names bad sampling', async () => {
    const logits = tf.randomNormal([1, 4, 4, 2], 0, 1, 'float32', 7) as tf.Tensor4D;
    const targets = tf.cast(tf.greater(tf.randomUniform([1, 16, 16, 2], 0, 1, 'float32', 8), 0.5), 'float32') as tf.Tensor4D;
    const mask = tf.ones([1, 2]) as tf.Tensor2D;
    const random = () => 0.37;
    const one = await maskLoss(logits, targets, mask, {}, { num_points: 5, oversample_ratio: 2, importance_sample_ratio: 0.5, random }).data();
    expect(Number.isFinite(one[0])).toBe(true);
    const deep = await deepSupervisionLoss([logits, logits], targets, mask, {}, undefined, {
      num_points: 5,
      oversample_ratio: 2,
      importance_sample_ratio: 0.5,
      random,
    }).data();
    expect(deep[0]).toBeCloseTo(2 * one[0], 5); // every draw the same point: each layer the same loss
    // the gradient reaches the logits through the sampled values; the choice of points passes none
    const g = await tf
      .grad((l: tf.Tensor) => maskLoss(l as tf.Tensor4D, targets, mask, {}, { num_points: 5, oversample_ratio: 2, importance_sample_ratio: 0.5, random }))(
        logits,
      )
      .data();
    expect(g.every(Number.isFinite) && g.some((v) => v !== 0)).toBe(true);
    const bad = (points: Partial<PointSampling>) => () =>
      maskLoss(logits, targets, mask, {}, { num_points: 5, oversample_ratio: 2, importance_sample_ratio: 0.5, random, ...points });
    expect(bad({ num_points: 0 })).toThrow('maskLoss: points.num_points must be a positive integer, got 0');
    expect(bad({ oversample_ratio: 0.5 })).toThrow('maskLoss: points.oversample_ratio must be ≥ 1, got 0.5');
    expect(bad({ importance_sample_ratio: 1.5 })).toThrow('maskLoss: points.importance_sample_ratio must be in [0, 1], got 1.5');
    tf.dispose([logits, targets, mask]);
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

/** A [1, H, W, P] target with each phrase's pixels set: cells[p] = [[y, x], …]. */
function target(h: number, w: number, cells: number[][][]): tf.Tensor4D {
  const data = new Float32Array(h * w * cells.length);
  cells.forEach((pixels, p) => {
    for (const [y, x] of pixels) data[(y * w + x) * cells.length + p] = 1;
  });
  return tf.tensor4d(data, [1, h, w, cells.length]);
}

/** DETR's loss_boxes for one box pair in plain JS: L1 over (cx, cy, w, h) and 1 − GIoU. */
function boxReference(a: number[], t: number[]): { l1: number; giou: number } {
  const c = ([cx, cy, w, h]: number[]) => [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2];
  const [ax0, ay0, ax1, ay1] = c(a);
  const [tx0, ty0, tx1, ty1] = c(t);
  const inter = Math.max(0, Math.min(ax1, tx1) - Math.max(ax0, tx0)) * Math.max(0, Math.min(ay1, ty1) - Math.max(ay0, ty0));
  const union = (ax1 - ax0) * (ay1 - ay0) + (tx1 - tx0) * (ty1 - ty0) - inter;
  const enclosing = (Math.max(ax1, tx1) - Math.min(ax0, tx0)) * (Math.max(ay1, ty1) - Math.min(ay0, ty0));
  const l1 = a.reduce((acc, v, i) => acc + Math.abs(v - t[i]), 0);
  return { l1, giou: 1 - (inter / union - (enclosing - union) / enclosing) };
}

describe.each(['cpu', 'wasm'] as const)('box losses on %s', (backend) => {
  beforeAll(() => setBackend(backend));

  it("maskBoxes: each mask's pixel extent as normalised (cx, cy, w, h); an empty mask is absent", async () => {
    // 4×8 canvas: phrase 0 one pixel at (y 1, x 2); phrase 1 rows 0–3 × columns 4–7 and a stray pixel at (3, 0); phrase 2 empty
    const t = target(4, 8, [
      [[1, 2]],
      [
        [0, 4],
        [3, 7],
        [3, 0],
      ],
      [],
    ]);
    const { boxes, present } = maskBoxes(t);
    expect([...(await present.data())]).toEqual([1, 1, 0]);
    await expectClose(boxes, [2.5 / 8, 1.5 / 4, 1 / 8, 1 / 4, 0.5, 0.5, 1, 1, 0, 0, 0, 0], 1e-6, 'mask boxes');
    tf.dispose([t, boxes, present]);
  });

  it("boxLoss: 1 · L1 + 0.4 · (1 − GIoU) by default (MaskDINO's box:mask ratio) averaged over real phrases with a target; 0 for an exact box; padding and empty targets add nothing", async () => {
    const t = target(4, 8, [
      [[1, 2]],
      [
        [0, 4],
        [3, 7],
      ],
      [],
      [[2, 2]],
    ]);
    const truth = [2.5 / 8, 1.5 / 4, 1 / 8, 1 / 4];
    const second = [0.75, 0.5, 0.5, 1];
    const guess = [0.3, 0.6, 0.2, 0.5];
    const predicted = tf.tensor3d([[truth, guess, [0.5, 0.5, 0.2, 0.2], [0.9, 0.9, 0.9, 0.9]]]); // [1, 4, 4]
    const mask = tf.tensor2d([[1, 1, 1, 0]]); // phrase 2 real but empty, phrase 3 padding
    const r = boxReference(guess, second);
    const expected = (r.l1 + 0.4 * r.giou + 0) / 2; // phrase 0 exact: L1 0, GIoU 1
    const loss = boxLoss(predicted, t, mask);
    expect(Math.abs((await loss.data())[0] - expected)).toBeLessThan(1e-5);
    const weighted = boxLoss(predicted, t, mask, { box_l1_weight: 1, box_giou_weight: 0 });
    expect(Math.abs((await weighted.data())[0] - r.l1 / 2)).toBeLessThan(1e-5);
    // the gradient reaches the counted boxes only
    const g = tf.grad((b: tf.Tensor) => boxLoss(b as tf.Tensor3D, t, mask))(predicted);
    const rows = (await g.array()) as number[][][];
    expect(rows[0][1].some((v) => v !== 0)).toBe(true);
    expect([...rows[0][2], ...rows[0][3]].every((v) => v === 0)).toBe(true);
    expect(() => boxLoss(tf.zeros([1, 4, 3]) as tf.Tensor3D, t, mask)).toThrow('boxLoss: boxes must be [1, 4, 4] like phraseMask [1,4], got [1,4,3]');
    await expectNoLeak(() => boxLoss(predicted, t, mask), 'boxLoss');
    tf.dispose([t, predicted, mask, loss, weighted, g]);
  });

  it("deepSupervisionLoss adds every layer's box loss when boxes are given", async () => {
    const t = target(4, 8, [
      [[1, 2]],
      [
        [0, 4],
        [3, 7],
      ],
    ]);
    const mask = tf.tensor2d([[1, 1]]);
    const logits = [0, 1].map((i) => tf.randomNormal([1, 2, 4, 2], 0, 1, 'float32', i) as tf.Tensor4D);
    const boxes = [2, 3].map((i) => tf.randomUniform([1, 2, 4], 0.1, 0.9, 'float32', i) as tf.Tensor3D);
    const masksOnly = await deepSupervisionLoss(logits, t, mask).data();
    const both = await deepSupervisionLoss(logits, t, mask, {}, boxes).data();
    const boxTerms = await Promise.all(boxes.map(async (b) => (await boxLoss(b, t, mask).data())[0]));
    expect(Math.abs(both[0] - masksOnly[0] - boxTerms[0] - boxTerms[1])).toBeLessThan(1e-4);
    expect(() => deepSupervisionLoss(logits, t, mask, {}, boxes.slice(1))).toThrow('deepSupervisionLoss: 1 box predictions for 2 mask predictions');
    tf.dispose([t, mask, logits, boxes]);
  });
});

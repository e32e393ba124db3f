// Mask losses of DESIGN.md §1 part 5: sigmoid BCE + Dice per phrase (Mask2Former's
// sigmoid_ce_loss and dice_loss, mask2former/modeling/criterion.py), averaged over the real
// phrases only, and summed over the decoder's predictions (deep supervision). No Hungarian
// matching: phrase i's prediction is compared with phrase i's target. Every target pixel counts by
// default; with `points`, Mask2Former's point loss (get_uncertain_point_coords_with_randomness and
// point_sample, detectron2's point_features.py): K points per mask, most of them where the
// prediction is least certain. With the decoder's box_head,
// DETR's box loss (detr/models/detr.py loss_boxes: L1 on normalised cx, cy, w, h + generalized
// IoU) against each phrase's mask box, weighted against the masks as MaskDINO does (box L1 5 and
// GIoU 2 beside mask BCE 5 and Dice 5), at this project's mask weights 1 and 1: 1 and 0.4.
import * as tf from '@tensorflow/tfjs-core';
import { resize } from '@png/core';

/** Weights of the two terms (DESIGN.md: BCE:Dice = 1:1). */
export interface MaskLossWeights {
  bce_weight: number;
  dice_weight: number;
}

export const DEFAULT_MASK_LOSS_WEIGHTS: Readonly<MaskLossWeights> = Object.freeze({ bce_weight: 1, dice_weight: 1 });

/**
 * Mask2Former's point sampling of the mask loss (its defaults: 112² points, oversample 3,
 * importance 0.75): `num_points` points per mask, of which `importance_sample_ratio` are the most
 * uncertain (|logit| smallest) of `oversample_ratio` × num_points uniform candidates and the rest
 * uniform; logits and targets are read there bilinearly (grid_sample, align_corners=False, zeros
 * outside). The points carry no gradient; `random` draws them (uniform in [0, 1)).
 */
export interface PointSampling {
  num_points: number;
  oversample_ratio: number;
  importance_sample_ratio: number;
  random: () => number;
}

/** Weights of the box loss's terms (MaskDINO's 5 and 2 against its mask weights 5 and 5, scaled to the mask weights 1 and 1 here). */
export interface BoxLossWeights {
  box_l1_weight: number;
  box_giou_weight: number;
}

export const DEFAULT_BOX_LOSS_WEIGHTS: Readonly<BoxLossWeights> = Object.freeze({ box_l1_weight: 1, box_giou_weight: 0.4 });

function checkPointSampling({ num_points, oversample_ratio, importance_sample_ratio, random }: PointSampling): void {
  if (!Number.isInteger(num_points) || num_points < 1) throw new Error(`maskLoss: points.num_points must be a positive integer, got ${num_points}`);
  if (!(oversample_ratio >= 1)) throw new Error(`maskLoss: points.oversample_ratio must be ≥ 1, got ${oversample_ratio}`);
  if (!(importance_sample_ratio >= 0 && importance_sample_ratio <= 1))
    throw new Error(`maskLoss: points.importance_sample_ratio must be in [0, 1], got ${importance_sample_ratio}`);
  if (typeof random !== 'function') throw new Error('maskLoss: points.random must be a function drawing uniformly from [0, 1)');
}

function checkShapes(where: string, logits: tf.Tensor, targets: tf.Tensor, phraseMask: tf.Tensor): void {
  const [b, , , p] = logits.shape;
  if (logits.rank !== 4) throw new Error(`${where}: logits must be [B, H, W, P], got [${logits.shape}]`);
  if (targets.rank !== 4 || targets.shape[0] !== b || targets.shape[3] !== p) {
    throw new Error(
      `${where}: targets [${targets.shape}] do not match logits [${logits.shape}]; expected [${b}, H, W, ${p}] (any H, W: logits are resized to the targets)`,
    );
  }
  if (phraseMask.rank !== 2 || phraseMask.shape[0] !== b || phraseMask.shape[1] !== p) {
    throw new Error(`${where}: phraseMask [${phraseMask.shape}] does not match logits [${logits.shape}]; expected [${b}, ${p}]`);
  }
}

/** Per-phrase losses [B, P] (no masking): BCE mean over pixels and Dice, each unweighted. */
function perPhrase(logits: tf.Tensor4D, targets: tf.Tensor4D): { bce: tf.Tensor2D; dice: tf.Tensor2D } {
  const [b, h, w, p] = targets.shape;
  const x = tf.reshape(logits, [b, h * w, p]); // [B, HW, P]
  const t = tf.reshape(tf.cast(targets, 'float32'), [b, h * w, p]); // [B, HW, P]
  // stable BCE with logits: max(x, 0) − x·t + log(1 + exp(−|x|))
  const ce = tf.add(tf.sub(tf.relu(x), tf.mul(x, t)), tf.log1p(tf.exp(tf.neg(tf.abs(x))))); // [B, HW, P]
  const bce = tf.mean(ce, 1) as tf.Tensor2D; // [B, P]
  const s = tf.sigmoid(x);
  const numerator = tf.add(tf.mul(tf.sum(tf.mul(s, t), 1), 2), 1); // [B, P]
  const denominator = tf.add(tf.add(tf.sum(s, 1), tf.sum(t, 1)), 1); // [B, P]
  const dice = tf.sub(1, tf.div(numerator, denominator)) as tf.Tensor2D; // [B, P]
  return { bce, dice };
}

/**
 * The 4 bilinear taps of grid_sample (align_corners=False, zero padding) at normalised points
 * (x, y) ∈ [0, 1]² of an h×w map, as flat pixel indices and weights (a tap outside the map: index
 * 0, weight 0). Writes taps k·4 … k·4 + 3 for point k.
 */
function bilinearTaps(x: number, y: number, h: number, w: number, k: number, index: Int32Array, weight: Float32Array): void {
  const px = x * w - 0.5;
  const py = y * h - 0.5;
  const x0 = Math.floor(px);
  const y0 = Math.floor(py);
  const fx = px - x0;
  const fy = py - y0;
  for (let t = 0; t < 4; t++) {
    const xi = x0 + (t & 1);
    const yi = y0 + (t >> 1);
    const inside = xi >= 0 && xi < w && yi >= 0 && yi < h;
    index[k * 4 + t] = inside ? yi * w + xi : 0;
    weight[k * 4 + t] = inside ? (t & 1 ? fx : 1 - fx) * (t >> 1 ? fy : 1 - fy) : 0;
  }
}

/**
 * The bilinear taps of `points[m]` (normalised x, y; the same count for every m) on logit map m
 * (h×w) and on target map m (th×tw): flat indices into the n stacked maps, and weights, [n·count·4].
 */
function pointTaps(points: ReadonlyArray<ReadonlyArray<readonly [number, number]>>, h: number, w: number, th: number, tw: number) {
  const count = points[0]?.length ?? 0;
  const size = points.length * count * 4;
  const taps = { index: new Int32Array(size), weight: new Float32Array(size), targetIndex: new Int32Array(size), targetWeight: new Float32Array(size) };
  for (const [m, mapPoints] of points.entries()) {
    for (const [j, [x, y]] of mapPoints.entries()) {
      const k = m * count + j;
      bilinearTaps(x, y, h, w, k, taps.index, taps.weight);
      bilinearTaps(x, y, th, tw, k, taps.targetIndex, taps.targetWeight);
      for (let t = 0; t < 4; t++) {
        taps.index[k * 4 + t] += m * h * w; // into the flat [B·P·h·w]
        taps.targetIndex[k * 4 + t] += m * th * tw; // into the flat [B·P·H·W]
      }
    }
  }
  return taps;
}

/**
 * Per-phrase BCE (mean over the points) and Dice over Mask2Former's sampled points: logits
 * [B, h, w, P] and targets [B, H, W, P] each read at the same normalised points (see
 * PointSampling). The points are drawn here; which candidates are the most uncertain is decided on
 * the backend (topk of −|logit|), with no read back (so it runs on WebGPU too) and no gradient. Returns [B, P] each, like perPhrase.
 */
function perPhraseAtPoints(logits: tf.Tensor4D, targets: tf.Tensor4D, sampling: PointSampling): { bce: tf.Tensor2D; dice: tf.Tensor2D } {
  const [b, h, w, p] = logits.shape;
  const [, th, tw] = targets.shape;
  const { num_points: k, oversample_ratio, importance_sample_ratio, random } = sampling;
  const n = b * p;
  const candidates = Math.floor(k * oversample_ratio);
  const important = Math.floor(k * importance_sample_ratio);
  // per mask, as Mask2Former draws them: the candidates' points, then the uniform ones
  const drawn = Array.from({ length: n }, () => Array.from({ length: candidates + k - important }, () => [random(), random()] as const));
  const candidateTaps = pointTaps(
    drawn.map((points) => points.slice(0, candidates)),
    h,
    w,
    th,
    tw,
  );
  const uniformTaps = pointTaps(
    drawn.map((points) => points.slice(candidates)),
    h,
    w,
    th,
    tw,
  );
  const flat = tf.reshape(tf.transpose(logits, [0, 3, 1, 2]), [n * h * w]); // [B, h, w, P] → [B·P·h·w]
  const flatTargets = tf.reshape(tf.transpose(tf.cast(targets, 'float32'), [0, 3, 1, 2]), [n * th * tw]); // [B·P·H·W]
  const read = (values: tf.Tensor, index: tf.Tensor, weight: tf.Tensor, count: number) =>
    tf.sum(tf.mul(tf.reshape(tf.gather(values, index), [n, count, 4]), tf.reshape(weight, [n, count, 4])), 2); // [B·P, count]
  const taps = (t: ReturnType<typeof pointTaps>) => ({
    index: tf.tensor1d(t.index, 'int32'),
    weight: tf.tensor1d(t.weight),
    targetIndex: tf.tensor1d(t.targetIndex, 'int32'),
    targetWeight: tf.tensor1d(t.targetWeight),
  });
  // Each part: values x and targets t at its points, [B·P, count], and which points count (1) or not (0).
  const parts: Array<{ x: tf.Tensor; t: tf.Tensor; counts?: tf.Tensor }> = [];
  if (important > 0) {
    const c = taps(candidateTaps);
    const x = read(flat, c.index, c.weight, candidates); // [B·P, C]
    // the most uncertain candidates of each mask (topk of −|logit|), as a 0/1 mask; no gradient flows through the choice
    const counts = tf.customGrad((input) => {
      const values = input as tf.Tensor2D;
      const { indices } = tf.topk(tf.neg(tf.abs(values)), important); // [B·P, I]
      return { value: tf.cast(tf.sum(tf.oneHot(indices, candidates), 1), 'float32'), gradFunc: () => tf.zerosLike(values) }; // [B·P, C]
    })(x);
    parts.push({ x, t: read(flatTargets, c.targetIndex, c.targetWeight, candidates), counts });
  }
  if (k > important) {
    const u = taps(uniformTaps);
    parts.push({ x: read(flat, u.index, u.weight, k - important), t: read(flatTargets, u.targetIndex, u.targetWeight, k - important) });
  }
  /** Σ over every part's counted points of f(part), [B·P]. */
  const total = (f: (part: (typeof parts)[number]) => tf.Tensor) =>
    parts.map((part) => tf.sum(part.counts ? tf.mul(f(part), part.counts) : f(part), 1)).reduce((a, b) => tf.add(a, b));
  const bce = tf.div(
    total(({ x, t }) => tf.add(tf.sub(tf.relu(x), tf.mul(x, t)), tf.log1p(tf.exp(tf.neg(tf.abs(x)))))),
    k,
  ); // [B·P]
  const numerator = tf.add(
    tf.mul(
      total(({ x, t }) => tf.mul(tf.sigmoid(x), t)),
      2,
    ),
    1,
  ); // [B·P]
  const denominator = tf.add(
    tf.add(
      total(({ x }) => tf.sigmoid(x)),
      total(({ t }) => t),
    ),
    1,
  ); // [B·P]
  return {
    bce: tf.reshape(bce, [b, p]) as tf.Tensor2D, // [B·P] → [B, P]
    dice: tf.reshape(tf.sub(1, tf.div(numerator, denominator)), [b, p]) as tf.Tensor2D, // [B·P] → [B, P]
  };
}

/**
 * bce_weight · BCE + dice_weight · Dice, averaged over the real phrases of the batch.
 * logits [B, h, w, P]; targets [B, H, W, P] in {0, 1}; phraseMask [B, P] (1 = real). When (h, w)
 * ≠ (H, W) the logits are bilinearly resized to the targets (torch F.interpolate,
 * align_corners=False) before the loss, as Mask2Former upsamples predictions to the target.
 * Padding phrases contribute exactly 0 to the value and to the gradient. A batch with no real
 * phrase has loss 0. With `points`, each term is taken at Mask2Former's sampled points instead
 * (logits and targets each read there at their own resolution; see PointSampling). Returns a
 * scalar the caller owns; runs in tf.tidy.
 */
export function maskLoss(
  logits: tf.Tensor4D,
  targets: tf.Tensor4D,
  phraseMask: tf.Tensor2D,
  weights: Partial<MaskLossWeights> = {},
  points?: PointSampling,
): tf.Scalar {
  checkShapes('maskLoss', logits, targets, phraseMask);
  if (points) checkPointSampling(points);
  const { bce_weight, dice_weight } = { ...DEFAULT_MASK_LOSS_WEIGHTS, ...weights };
  return tf.tidy('maskLoss', () => {
    const [, h, w] = targets.shape;
    const resized = () => (logits.shape[1] === h && logits.shape[2] === w ? logits : resize(logits, [h, w], 'bilinear'));
    const { bce, dice } = points ? perPhraseAtPoints(logits, targets, points) : perPhrase(resized(), targets);
    const m = tf.cast(phraseMask, 'float32'); // [B, P]
    const loss = tf.add(tf.mul(bce, bce_weight), tf.mul(dice, dice_weight)); // [B, P]
    // tf.where (not a product) so a non-finite padding loss cannot leak NaN into value or gradient
    const masked = tf.where(tf.greater(m, 0), loss, tf.zerosLike(loss));
    return tf.div(tf.sum(masked), tf.maximum(tf.sum(m), 1)) as tf.Scalar;
  });
}

/**
 * The box of each target mask: targets [B, H, W, P] in {0, 1} → boxes [B, P, 4] as normalised
 * (cx, cy, w, h) of the pixels' extent (a pixel is a unit square: one pixel at column x spans
 * [x, x + 1) / W) and `present` [B, P], 1 where the mask has a pixel (an empty mask's box is 0).
 * No gradient flows (targets). Caller owns the tensors.
 */
export function maskBoxes(targets: tf.Tensor4D): { boxes: tf.Tensor3D; present: tf.Tensor2D } {
  if (targets.rank !== 4) throw new Error(`maskBoxes: targets must be [B, H, W, P], got [${targets.shape}]`);
  return tf.tidy(() => {
    const [, h, w] = targets.shape;
    const t = tf.cast(tf.greater(targets, 0), 'float32');
    const rows = tf.max(t, 2); // [B, H, P]: 1 where the row holds a pixel
    const cols = tf.max(t, 1); // [B, W, P]
    // the first and the last occupied index along an axis (argMax returns the first maximum)
    const extent = (any: tf.Tensor3D, n: number) => {
      const first = tf.cast(tf.argMax(any, 1), 'float32'); // [B, P]
      const last = tf.sub(n - 1, tf.cast(tf.argMax(tf.reverse(any, 1), 1), 'float32')); // [B, P]
      return { from: tf.div(first, n), to: tf.div(tf.add(last, 1), n) }; // normalised [from, to)
    };
    const y = extent(rows as tf.Tensor3D, h);
    const x = extent(cols as tf.Tensor3D, w);
    const present = tf.max(rows, 1) as tf.Tensor2D; // [B, P]
    const box = tf.stack([tf.div(tf.add(x.from, x.to), 2), tf.div(tf.add(y.from, y.to), 2), tf.sub(x.to, x.from), tf.sub(y.to, y.from)], 2); // [B, P, 4]
    return { boxes: tf.mul(box, tf.expandDims(present, 2)) as tf.Tensor3D, present };
  });
}

/** (cx, cy, w, h) [..., 4] → corners x0, y0, x1, y1 [...] each. */
function corners(box: tf.Tensor): { x0: tf.Tensor; y0: tf.Tensor; x1: tf.Tensor; y1: tf.Tensor } {
  const [cx, cy, w, h] = tf.unstack(box, box.rank - 1);
  return { x0: tf.sub(cx, tf.div(w, 2)), y0: tf.sub(cy, tf.div(h, 2)), x1: tf.add(cx, tf.div(w, 2)), y1: tf.add(cy, tf.div(h, 2)) };
}

/**
 * DETR's box loss of predicted boxes [B, P, 4] (normalised cx, cy, w, h) against the boxes of
 * `targets` [B, H, W, P] (maskBoxes): box_l1_weight · Σ|Δ| over the 4 coordinates +
 * box_giou_weight · (1 − GIoU), averaged over the real phrases (phraseMask [B, P]) whose target
 * is not empty; 0 when there is none. Returns a scalar the caller owns; runs in tf.tidy.
 */
export function boxLoss(boxes: tf.Tensor3D, targets: tf.Tensor4D, phraseMask: tf.Tensor2D, weights: Partial<BoxLossWeights> = {}): tf.Scalar {
  checkBoxShapes(boxes, targets, phraseMask);
  return tf.tidy('boxLoss', () => boxLossAgainst(boxes, maskBoxes(targets), phraseMask, weights));
}

function checkBoxShapes(boxes: tf.Tensor3D, targets: tf.Tensor4D, phraseMask: tf.Tensor2D): void {
  const [b, p] = phraseMask.shape;
  if (boxes.rank !== 3 || boxes.shape[0] !== b || boxes.shape[1] !== p || boxes.shape[2] !== 4)
    throw new Error(`boxLoss: boxes must be [${b}, ${p}, 4] like phraseMask [${phraseMask.shape}], got [${boxes.shape}]`);
  if (targets.rank !== 4 || targets.shape[0] !== b || targets.shape[3] !== p)
    throw new Error(`boxLoss: targets [${targets.shape}] do not match phraseMask [${phraseMask.shape}]; expected [${b}, H, W, ${p}]`);
}

/** boxLoss against target boxes already taken from the masks (maskBoxes): deep supervision takes them once for every layer. */
function boxLossAgainst(
  boxes: tf.Tensor3D,
  { boxes: target, present }: { boxes: tf.Tensor3D; present: tf.Tensor2D },
  phraseMask: tf.Tensor2D,
  weights: Partial<BoxLossWeights>,
): tf.Scalar {
  const { box_l1_weight, box_giou_weight } = { ...DEFAULT_BOX_LOSS_WEIGHTS, ...weights };
  const l1 = tf.sum(tf.abs(tf.sub(boxes, target)), 2); // [B, P]
  const a = corners(boxes);
  const t = corners(target);
  const area = (c: typeof a) => tf.mul(tf.sub(c.x1, c.x0), tf.sub(c.y1, c.y0));
  const inter = tf.mul(tf.relu(tf.sub(tf.minimum(a.x1, t.x1), tf.maximum(a.x0, t.x0))), tf.relu(tf.sub(tf.minimum(a.y1, t.y1), tf.maximum(a.y0, t.y0)))); // [B, P]
  const union = tf.sub(tf.add(area(a), area(t)), inter);
  const enclosing = tf.mul(tf.sub(tf.maximum(a.x1, t.x1), tf.minimum(a.x0, t.x0)), tf.sub(tf.maximum(a.y1, t.y1), tf.minimum(a.y0, t.y0)));
  const eps = 1e-7;
  const giou = tf.sub(tf.div(inter, tf.add(union, eps)), tf.div(tf.sub(enclosing, union), tf.add(enclosing, eps))); // [B, P]
  const loss = tf.add(tf.mul(l1, box_l1_weight), tf.mul(tf.sub(1, giou), box_giou_weight)); // [B, P]
  const counted = tf.mul(tf.cast(tf.greater(phraseMask, 0), 'float32'), present); // [B, P]
  const kept = tf.where(tf.greater(counted, 0), loss, tf.zerosLike(loss)); // padding and empty targets: exactly 0, value and gradient
  return tf.div(tf.sum(kept), tf.maximum(tf.sum(counted), 1)) as tf.Scalar;
}

/**
 * Deep supervision: Σ_l layerWeights[l] · maskLoss(predictions[l], …) over every decoder
 * prediction (Mask2Former weights its aux losses equally: layerWeights defaults to all 1), plus
 * Σ_l layerWeights[l] · boxLoss(boxes[l], …) when `boxes` (one per prediction) are given; with
 * `points`, each layer's mask loss at its own sampled points.
 */
export function deepSupervisionLoss(
  predictions: readonly tf.Tensor4D[],
  targets: tf.Tensor4D,
  phraseMask: tf.Tensor2D,
  weights: Partial<MaskLossWeights & BoxLossWeights> & { layer_weights?: readonly number[] } = {},
  boxes?: readonly tf.Tensor3D[],
  points?: PointSampling,
): tf.Scalar {
  if (predictions.length === 0) throw new Error('deepSupervisionLoss: no predictions');
  const lw = weights.layer_weights ?? predictions.map(() => 1);
  if (lw.length !== predictions.length) throw new Error(`deepSupervisionLoss: ${lw.length} layer_weights for ${predictions.length} predictions`);
  if (boxes && boxes.length !== predictions.length)
    throw new Error(`deepSupervisionLoss: ${boxes.length} box predictions for ${predictions.length} mask predictions`);
  return tf.tidy('deepSupervisionLoss', () => {
    const masks = predictions.map((p, l) => tf.mul(maskLoss(p, targets, phraseMask, weights, points), lw[l])); // each layer its own points, as Mask2Former
    const targetBoxes = boxes?.length ? maskBoxes(targets) : undefined; // once for every layer
    const boxTerms = targetBoxes
      ? (boxes ?? []).map((b, l) => {
          checkBoxShapes(b, targets, phraseMask);
          return tf.mul(boxLossAgainst(b, targetBoxes, phraseMask, weights), lw[l]);
        })
      : [];
    return [...masks, ...boxTerms].reduce((a, b) => tf.add(a, b)) as tf.Scalar;
  });
}

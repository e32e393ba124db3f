// Mask losses of DESIGN.md §1 part 5: sigmoid BCE + Dice per phrase (Mask2Former's
// sigmoid_ce_loss and dice_loss, mask2former/modeling/criterion.py), averaged over the real
// phrases only, and summed over the decoder's predictions (deep supervision). No Hungarian
// matching: phrase i's prediction is compared with phrase i's target. Deviation: Mask2Former
// samples K points by uncertainty; here every target pixel counts. With the decoder's box_head,
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

/** Weights of the box loss's terms (MaskDINO's 5 and 2 against its mask weights 5 and 5, scaled to the mask weights 1 and 1 here). */
export interface BoxLossWeights {
  box_l1_weight: number;
  box_giou_weight: number;
}

export const DEFAULT_BOX_LOSS_WEIGHTS: Readonly<BoxLossWeights> = Object.freeze({ box_l1_weight: 1, box_giou_weight: 0.4 });

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
 * bce_weight · BCE + dice_weight · Dice, averaged over the real phrases of the batch.
 * logits [B, h, w, P]; targets [B, H, W, P] in {0, 1}; phraseMask [B, P] (1 = real). When (h, w)
 * ≠ (H, W) the logits are bilinearly resized to the targets (torch F.interpolate,
 * align_corners=False) before the loss, as Mask2Former upsamples predictions to the target.
 * Padding phrases contribute exactly 0 to the value and to the gradient. A batch with no real
 * phrase has loss 0. Returns a scalar the caller owns; runs in tf.tidy.
 */
export function maskLoss(logits: tf.Tensor4D, targets: tf.Tensor4D, phraseMask: tf.Tensor2D, weights: Partial<MaskLossWeights> = {}): tf.Scalar {
  checkShapes('maskLoss', logits, targets, phraseMask);
  const { bce_weight, dice_weight } = { ...DEFAULT_MASK_LOSS_WEIGHTS, ...weights };
  return tf.tidy('maskLoss', () => {
    const [, h, w] = targets.shape;
    const x = logits.shape[1] === h && logits.shape[2] === w ? logits : resize(logits, [h, w], 'bilinear');
    const { bce, dice } = perPhrase(x, targets);
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
 * Σ_l layerWeights[l] · boxLoss(boxes[l], …) when `boxes` (one per prediction) are given.
 */
export function deepSupervisionLoss(
  predictions: readonly tf.Tensor4D[],
  targets: tf.Tensor4D,
  phraseMask: tf.Tensor2D,
  weights: Partial<MaskLossWeights & BoxLossWeights> & { layer_weights?: readonly number[] } = {},
  boxes?: readonly tf.Tensor3D[],
): tf.Scalar {
  if (predictions.length === 0) throw new Error('deepSupervisionLoss: no predictions');
  const lw = weights.layer_weights ?? predictions.map(() => 1);
  if (lw.length !== predictions.length) throw new Error(`deepSupervisionLoss: ${lw.length} layer_weights for ${predictions.length} predictions`);
  if (boxes && boxes.length !== predictions.length)
    throw new Error(`deepSupervisionLoss: ${boxes.length} box predictions for ${predictions.length} mask predictions`);
  return tf.tidy('deepSupervisionLoss', () => {
    const masks = predictions.map((p, l) => tf.mul(maskLoss(p, targets, phraseMask, weights), lw[l]));
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

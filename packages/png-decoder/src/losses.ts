// Mask losses of DESIGN.md §1 part 5: sigmoid BCE + Dice per phrase (Mask2Former's
// sigmoid_ce_loss and dice_loss, mask2former/modeling/criterion.py), averaged over the real
// phrases only, and summed over the decoder's predictions (deep supervision). No Hungarian
// matching: phrase i's prediction is compared with phrase i's target. Deviation: Mask2Former
// samples K points by uncertainty; here every target pixel counts.
import * as tf from '@tensorflow/tfjs-core';
import { resize } from '@png/core';

/** Weights of the two terms (DESIGN.md: BCE:Dice = 1:1). */
export interface MaskLossWeights {
  bce_weight: number;
  dice_weight: number;
}

export const DEFAULT_MASK_LOSS_WEIGHTS: Readonly<MaskLossWeights> = Object.freeze({ bce_weight: 1, dice_weight: 1 });

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
 * Deep supervision: Σ_l layerWeights[l] · maskLoss(predictions[l], …) over every decoder
 * prediction (Mask2Former weights its aux losses equally: layerWeights defaults to all 1).
 */
export function deepSupervisionLoss(
  predictions: readonly tf.Tensor4D[],
  targets: tf.Tensor4D,
  phraseMask: tf.Tensor2D,
  weights: Partial<MaskLossWeights> & { layer_weights?: readonly number[] } = {},
): tf.Scalar {
  if (predictions.length === 0) throw new Error('deepSupervisionLoss: no predictions');
  const lw = weights.layer_weights ?? predictions.map(() => 1);
  if (lw.length !== predictions.length) throw new Error(`deepSupervisionLoss: ${lw.length} layer_weights for ${predictions.length} predictions`);
  return tf.tidy(
    'deepSupervisionLoss',
    () => predictions.map((p, l) => tf.mul(maskLoss(p, targets, phraseMask, weights), lw[l])).reduce((a, b) => tf.add(a, b)) as tf.Scalar,
  );
}

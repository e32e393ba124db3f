/**
 * Per-phrase mask IoU with the official float32 semantics (`compute_mask_IoU`, spec §2.1):
 * I = Σ P⊙T, U = Σ (P + T − P⊙T), IoU = I / U in float32; U = 0 (both empty) gives NaN.
 */

/**
 * A row-major H×W mask. `Uint8Array` is binary (any non-zero byte is foreground, i.e. 1);
 * `Float32Array` is soft (values used as they are, like the official float tensors).
 */
export type Mask = Uint8Array | Float32Array;

/**
 * IoU of a predicted and a ground-truth mask of the same length, returned as the exact float32
 * value (as a double), like `tensor.item()` in the official code.
 *
 * Binary × binary: I and U are exact integers, IoU = fround(I / U).
 * Any soft operand: every elementwise op (`p*t`, `p+t`, then `−`) is rounded to float32, the sums
 * are accumulated in float64 and rounded to float32 once (torch's GPU reduction order cannot be
 * reproduced; this is the correctly rounded sum whenever the float64 sum is exact), then
 * IoU = fround(I / U).
 *
 * @throws if the masks differ in length.
 */
export function maskIoU(pred: Mask, gt: Mask): number {
  if (pred.length !== gt.length) {
    throw new Error(`maskIoU: prediction has ${pred.length} pixels but ground truth has ${gt.length}; resize the prediction to the ground-truth size`);
  }
  if (pred instanceof Uint8Array && gt instanceof Uint8Array) return binaryIoU(pred, gt);
  return softIoU(pred, gt);
}

function binaryIoU(pred: Uint8Array, gt: Uint8Array): number {
  let intersection = 0;
  let union = 0;
  for (let k = 0; k < pred.length; k++) {
    const p = pred[k] !== 0;
    const t = gt[k] !== 0;
    if (p && t) intersection++;
    if (p || t) union++;
  }
  return Math.fround(intersection / union);
}

function softIoU(pred: Mask, gt: Mask): number {
  const binaryValue = (v: number) => (v !== 0 ? 1 : 0);
  const readPred = pred instanceof Uint8Array ? binaryValue : (v: number) => v;
  const readGt = gt instanceof Uint8Array ? binaryValue : (v: number) => v;
  let intersection = 0;
  let union = 0;
  for (let k = 0; k < pred.length; k++) {
    const p = readPred(pred[k]);
    const t = readGt(gt[k]);
    const pt = Math.fround(p * t);
    intersection += pt;
    union += Math.fround(Math.fround(p + t) - pt);
  }
  return Math.fround(Math.fround(intersection) / Math.fround(union));
}

/**
 * Letterboxing for the model and its inverse: an image of any H×W is scaled so that its longer
 * side is the target side S, centred on an S×S canvas, and mapped to [-1, 1]; masks follow the
 * same transform (nearest at pixel centres), and predicted maps come back to the original H×W (crop the padding,
 * torch-exact bilinear resize, threshold).
 */
import * as tf from '@tensorflow/tfjs-core';
import { resize } from '@png/core';
import type { RgbImage } from './dataset';

/** How an H×W image was placed on the S×S canvas. */
export interface LetterboxTransform {
  /** Canvas side S. */
  target: number;
  /** S / max(H, W). */
  scale: number;
  /** Size of the scaled image on the canvas: round(H·scale) × round(W·scale) (at least 1). */
  contentHeight: number;
  contentWidth: number;
  /** Rows and columns of padding above and left of the image (the rest is below and right). */
  padTop: number;
  padLeft: number;
  /** Original size. */
  height: number;
  width: number;
}

/**
 * The transform that fits an H×W image on an S×S canvas.
 * @throws if `target` is not a positive multiple of 8 or the size is not positive integers.
 */
export function letterboxTransform(height: number, width: number, target: number): LetterboxTransform {
  if (!Number.isInteger(target) || target < 8 || target % 8 !== 0)
    throw new Error(`letterbox: target must be a positive multiple of 8 (the model's stride), got ${target}`);
  if (!Number.isInteger(height) || !Number.isInteger(width) || height < 1 || width < 1)
    throw new Error(`letterbox: image size must be positive integers, got ${height}×${width} (H×W)`);
  const scale = target / Math.max(height, width);
  const contentHeight = Math.max(1, Math.min(target, Math.round(height * scale)));
  const contentWidth = Math.max(1, Math.min(target, Math.round(width * scale)));
  return { target, scale, contentHeight, contentWidth, padTop: (target - contentHeight) >> 1, padLeft: (target - contentWidth) >> 1, height, width };
}

/** Zero-pads [1, h, w, C] content onto the S×S canvas of `t`. */
function padToCanvas(x: tf.Tensor4D, t: LetterboxTransform): tf.Tensor4D {
  const bottom = t.target - t.contentHeight - t.padTop;
  const right = t.target - t.contentWidth - t.padLeft;
  return tf.pad(x, [
    [0, 0],
    [t.padTop, bottom],
    [t.padLeft, right],
    [0, 0],
  ]);
}

/** An RGB image as it is, as a model input: [1, H, W, 3] float32 NHWC in [-1, 1] (pixel / 127.5 − 1). The caller owns the tensor. */
export function imageTensor(image: RgbImage): tf.Tensor4D {
  const { height, width, data } = image;
  if (data.length !== height * width * 3)
    throw new Error(`imageTensor: image data has ${data.length} bytes, expected ${height}×${width}×3 = ${height * width * 3} (RGB)`);
  return tf.tidy(() => tf.sub(tf.div(tf.tensor4d(Float32Array.from(data), [1, height, width, 3]), 127.5), 1) as tf.Tensor4D);
}

/**
 * The model input of an RGB image: [1, S, S, 3] float32 NHWC in [-1, 1] (pixel / 127.5 − 1),
 * bilinear-resized (torch `F.interpolate`, align_corners=False) and centred, padding 0 (mid grey).
 * The caller owns the tensor.
 */
export function letterbox(image: RgbImage, target: number): { tensor: tf.Tensor4D; transform: LetterboxTransform } {
  const { height, width, data } = image;
  if (data.length !== height * width * 3)
    throw new Error(`letterbox: image data has ${data.length} bytes, expected ${height}×${width}×3 = ${height * width * 3} (RGB)`);
  const transform = letterboxTransform(height, width, target);
  const tensor = tf.tidy(() => padToCanvas(resize(imageTensor(image), [transform.contentHeight, transform.contentWidth], 'bilinear'), transform));
  return { tensor, transform };
}

/**
 * Phrase masks (each H·W, row-major, non-zero = inside) on the model's canvas: [1, S, S, P]
 * float32 with 0/1 values, zero padding. Resized by nearest sampling at pixel centres (torch's
 * 'nearest-exact': source = ⌊(i + ½)·in/out⌋), which lines up with the half-pixel-centre bilinear
 * of {@link unletterbox}; torch's legacy 'nearest' would shift masks by up to a pixel. The caller
 * owns the tensor.
 */
export function masksToTarget(masks: readonly Uint8Array[], transform: LetterboxTransform): tf.Tensor4D {
  const { height, width, target, contentHeight, contentWidth, padTop, padLeft } = transform;
  const p = masks.length;
  masks.forEach((mask, j) => {
    if (mask.length !== height * width) throw new Error(`masksToTarget: mask ${j} has ${mask.length} pixels, expected ${height}×${width} = ${height * width}`);
  });
  const rows = Int32Array.from({ length: contentHeight }, (_, i) => Math.min(height - 1, Math.floor(((i + 0.5) * height) / contentHeight)));
  const cols = Int32Array.from({ length: contentWidth }, (_, i) => Math.min(width - 1, Math.floor(((i + 0.5) * width) / contentWidth)));
  const canvas = new Float32Array(target * target * p);
  for (let y = 0; y < contentHeight; y++) {
    for (let x = 0; x < contentWidth; x++) {
      const source = rows[y] * width + cols[x];
      const at = ((y + padTop) * target + x + padLeft) * p;
      for (let j = 0; j < p; j++) if (masks[j][source] !== 0) canvas[at + j] = 1;
    }
  }
  return tf.tensor4d(canvas, [1, target, target, p]);
}

/**
 * Per phrase, a binary mask (row-major) at the ORIGINAL H×W from maps on the canvas,
 * [1, S', S', P] (logits by default; pass `threshold: 0.5` for probabilities or 0/1 masks). Maps
 * at another side S' are first bilinear-resized to S; then the padding is cropped, the content is
 * bilinear-resized to H×W (@png/core `resize`, torch-exact) and a pixel is in the mask iff its
 * value is > `threshold`. Does not dispose `maps`.
 */
export async function unletterbox(maps: tf.Tensor4D, transform: LetterboxTransform, options: { threshold?: number } = {}): Promise<Uint8Array[]> {
  const [batch, h, w, p] = maps.shape;
  if (maps.rank !== 4 || batch !== 1 || h !== w) throw new Error(`unletterbox: expected maps [1, S', S', P] (square canvas), got [${maps.shape.join(', ')}]`);
  const threshold = options.threshold ?? 0;
  const t = transform;
  const binary = tf.tidy(() => {
    const canvas = h === t.target ? maps : resize(maps, [t.target, t.target], 'bilinear');
    const content = tf.slice(canvas, [0, t.padTop, t.padLeft, 0], [1, t.contentHeight, t.contentWidth, p]);
    return tf.cast(tf.greater(resize(content, [t.height, t.width], 'bilinear'), threshold), 'int32');
  });
  const values = await binary.data();
  binary.dispose();
  return Array.from({ length: p }, (_, j) => {
    const mask = new Uint8Array(t.height * t.width);
    for (let k = 0; k < mask.length; k++) mask[k] = values[k * p + j];
    return mask;
  });
}

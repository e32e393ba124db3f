import * as tf from '@tensorflow/tfjs-core';
import { seededNormal } from '@png/core';
import type { AutoencoderKL } from '@png/diffusion-backbone';

/** Settings of {@link autoencoderKLLoss}. */
export interface AutoencoderKLLossOptions {
  /** Weight of the KL term against the reconstruction term (LDM's kl_weight: 1e-6). */
  readonly klWeight: number;
  /** Seed of the posterior draw (one per step keeps training deterministic). */
  readonly seed: number;
}

/**
 * The VAE objective of latent diffusion (LDM's `LPIPSWithDiscriminator` without its perceptual
 * and adversarial terms): encode, draw z ~ q(z|x), decode, and
 *
 *     loss = mean |x − x̂| + klWeight · KL(q(z|x) ‖ N(0, I)) / (H·W·C)
 *
 * i.e. LDM's per-sample sums divided by the pixel count, so the loss reads as a mean absolute
 * error. `images` [B, H, W, C] in [-1, 1]; the VAE must be built with parts 'all'. Differentiable
 * with respect to the VAE's variables; returns a scalar the caller owns.
 */
export function autoencoderKLLoss(vae: AutoencoderKL, images: tf.Tensor4D, options: AutoencoderKLLossOptions): tf.Scalar {
  return tf.tidy(() => {
    const { mean, logvar, std } = vae.encode(images); // each [B, h, w, c]
    const z = tf.add(mean, tf.mul(std, seededNormal(mean.shape, options.seed))) as tf.Tensor4D;
    const reconstruction = tf.mean(tf.abs(tf.sub(images, vae.decode(z))));
    // KL(N(μ, σ²) ‖ N(0, 1)) = ½ Σ (μ² + σ² − 1 − log σ²), per sample
    const kl = tf.mul(0.5, tf.sum(tf.sub(tf.add(tf.square(mean), tf.exp(logvar)), tf.add(1, logvar))));
    const perPixel = images.shape[0] * images.shape[1] * images.shape[2] * images.shape[3];
    return tf.add(reconstruction, tf.mul(options.klWeight / perPixel, kl)) as tf.Scalar;
  });
}

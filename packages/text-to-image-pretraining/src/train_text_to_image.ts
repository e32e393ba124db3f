import * as tf from '@tensorflow/tfjs-core';
import type { CLIPTextModel, DDPMScheduler, UNet2DConditionModel } from '@png/diffusion-backbone';

/** One batch of the text-to-image objective (see {@link textToImageLoss}). */
export interface TextToImageBatch {
  /** Clean latents x₀ [B, h, w, C] (the VAE's sample × scaling_factor). */
  readonly latents: tf.Tensor4D;
  /** Token ids [B, 77] of the captions (the empty caption for classifier-free-guidance dropout). */
  readonly inputIds: tf.Tensor2D;
  /** One training timestep per sample, integers in [0, num_train_timesteps). */
  readonly timesteps: readonly number[];
  /** Standard normal noise ε, the latents' shape. */
  readonly noise: tf.Tensor4D;
}

/**
 * The objective of diffusers' `train_text_to_image.py`: noise the latents to xₜ with the DDPM
 * forward process, predict with the UNet conditioned on the text encoder's last hidden state, and
 * take the mean squared error to the scheduler's target (ε, or v for v-prediction). Gradients
 * reach the UNet and, when its variables are trained too, the text encoder. A scalar the caller owns.
 */
export function textToImageLoss(
  models: { unet: UNet2DConditionModel; textEncoder: CLIPTextModel; scheduler: DDPMScheduler },
  batch: TextToImageBatch,
): tf.Scalar {
  const { unet, textEncoder, scheduler } = models;
  return tf.tidy(() => {
    const noisy = scheduler.addNoise(batch.latents, batch.noise, batch.timesteps);
    const context = textEncoder.forward(batch.inputIds).lastHiddenState; // [B, 77, D]
    const prediction = unet.forward(noisy, batch.timesteps, context).sample;
    return tf.losses.meanSquaredError(scheduler.target(batch.latents, batch.noise, batch.timesteps), prediction) as tf.Scalar;
  });
}

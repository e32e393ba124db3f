import * as tf from '@tensorflow/tfjs-core';
import type { TextEncoding } from '@png/core';
import { CLIPTextModel } from './clip/modeling_clip';
import { CLIPTokenizer } from './clip/tokenization_clip';
import type { ComponentOptions } from './component_files';
import { AutoencoderKL, type AutoencoderKLParts } from './models/autoencoder_kl';
import { UNet2DConditionModel } from './models/unet_2d_condition';

export interface DiffusionBackboneOptions extends ComponentOptions {
  /** VAE parts to load: grounding only encodes ('encoder', the default); sampling needs 'all'. */
  readonly vaeParts?: AutoencoderKLParts;
}

/**
 * The frozen Stable Diffusion components a grounding model reads images and captions with: the
 * UNet, the VAE, the CLIP text encoder and its tokenizer, loaded from one diffusers pipeline
 * folder (`unet/`, `vae/`, `text_encoder/`, `tokenizer/`).
 */
export class DiffusionBackbone {
  private constructor(
    readonly unet: UNet2DConditionModel,
    readonly vae: AutoencoderKL,
    readonly textEncoder: CLIPTextModel,
    readonly tokenizer: CLIPTokenizer,
  ) {
    const width = textEncoder.config.hidden_size;
    if (unet.config.cross_attention_dim !== width) {
      throw new Error(`DiffusionBackbone: the UNet's cross_attention_dim (${unet.config.cross_attention_dim}) differs from the text encoder's hidden_size (${width}); unet/ and text_encoder/ come from different models`);
    }
    if (unet.config.in_channels !== vae.config.latent_channels) {
      throw new Error(`DiffusionBackbone: the UNet reads ${unet.config.in_channels} channels but the VAE makes ${vae.config.latent_channels}; unet/ and vae/ come from different models`);
    }
  }

  /** A backbone from components built or loaded separately (checked for consistency). It owns them from now on. */
  static fromComponents(components: { unet: UNet2DConditionModel; vae: AutoencoderKL; textEncoder: CLIPTextModel; tokenizer: CLIPTokenizer }): DiffusionBackbone {
    return new DiffusionBackbone(components.unet, components.vae, components.textEncoder, components.tokenizer);
  }

  /** Loads `<dir>/{unet,vae,text_encoder,tokenizer}`. Everything is frozen. */
  static async fromPretrained(dir: string, options: DiffusionBackboneOptions = {}): Promise<DiffusionBackbone> {
    const fs = await import('node:fs');
    const path = await import('node:path');
    const missing = ['unet', 'vae', 'text_encoder', 'tokenizer'].filter((c) => !fs.existsSync(path.join(dir, c)));
    if (missing.length) {
      throw new Error(`${dir}: not a diffusers pipeline folder; missing ${missing.map((m) => `${m}/`).join(', ')} (expected unet/, vae/, text_encoder/, tokenizer/)`);
    }
    const loaded: Array<{ dispose(): void }> = [];
    const keep = <T extends { dispose(): void }>(m: T): T => (loaded.push(m), m);
    try {
      const unet = keep(await UNet2DConditionModel.fromPretrained(path.join(dir, 'unet'), options));
      const vae = keep(await AutoencoderKL.fromPretrained(path.join(dir, 'vae'), { variant: options.variant, parts: options.vaeParts ?? 'encoder' }));
      const textEncoder = keep(await CLIPTextModel.fromPretrained(path.join(dir, 'text_encoder'), options));
      const tokenizer = await CLIPTokenizer.fromPretrained(path.join(dir, 'tokenizer'));
      return new DiffusionBackbone(unet, vae, textEncoder, tokenizer);
    } catch (e) {
      for (const m of loaded) m.dispose();
      throw e;
    }
  }

  /** Image sides must be multiples of this: the VAE's and the UNet's downsampling together. */
  get imageMultiple(): number {
    return this.vae.downsampleFactor * this.unet.downsampleFactor;
  }

  /**
   * CLIP hidden states of captions, each padded/truncated to the tokenizer's length (77).
   * Caller owns the returned tensors.
   */
  encodeText(captions: readonly string[]): TextEncoding & { inputIds: tf.Tensor2D } {
    const { inputIds, attentionMask } = this.tokenizer.call(captions, { padding: 'max_length', truncation: true });
    return tf.tidy(() => {
      const ids = tf.tensor2d(inputIds, undefined, 'int32');
      const { lastHiddenState } = this.textEncoder.forward(ids);
      return { hiddenStates: lastHiddenState, attentionMask: tf.tensor2d(attentionMask, undefined, 'float32'), inputIds: ids };
    });
  }

  /** Images NHWC [B, H, W, 3] in [-1, 1] → latents (the VAE mean × scaling_factor). Caller owns the result. */
  encodeImages(images: tf.Tensor4D): tf.Tensor4D {
    return this.vae.latents(images);
  }

  /** Frees every weight of every component. */
  dispose(): void {
    this.unet.dispose();
    this.vae.dispose();
    this.textEncoder.dispose();
  }
}

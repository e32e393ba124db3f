// PngDecoder: Mask2Former's MultiScaleMaskedTransformerDecoder (mask2former/modeling/
// transformer_decoder/mask2former_transformer_decoder.py) with the narrative's phrases as queries
// (DESIGN.md §1 part 5). Behaviour ported, not code. Deviations: NHWC; queries are the fused phrase
// features (no query_feat; query position from a Linear of the phrases, see config.query_pos);
// padding phrases are masked as self-attention keys; no class head (PNG masks are per phrase);
// mask logits [B, H, W, P] by one matMul; the attention mask is thresholded on the logits
// (σ(m) < 0.5 ⟺ m < 0) with tf.step, whose gradient is 0 (Mask2Former's `.detach()`).
import * as tf from '@tensorflow/tfjs-core';
import {
  Conv2d,
  Embedding,
  LayerNorm,
  Linear,
  MASKED_LOGIT,
  WeightScope,
  keyMaskBias,
  openModule,
  openModuleFiles,
  saveModule,
  type FeatureMap,
  type ModuleFiles,
  ParameterModule,
  positionEmbeddingSine,
  resize,
} from '@png/core';
import { resolvePngDecoderConfig, type PngDecoderConfig } from './config';
import { CrossAttentionLayer, FFNLayer, MLP, SelfAttentionLayer } from './layers';

/** Inputs of PngDecoder.forward (an MLMA output fits as is). Never disposed by the decoder. */
export interface PngDecoderInputs {
  /** Pixel levels, coarsest first, [B, H_l, W_l, in_channels]; the first num_feature_levels are used. */
  readonly pixels: readonly FeatureMap[];
  /** [B, H, W, mask_dim], the map mask logits are predicted on (MLMA: its finest level's or skip level's stride), any resolution. */
  readonly maskFeatures: tf.Tensor4D;
  /** Phrase queries [B, P, hidden_dim]. */
  readonly phrases: tf.Tensor3D;
  /** [B, P], 1 = real phrase. */
  readonly phraseMask: tf.Tensor2D;
}

/** Outputs of PngDecoder.forward; the caller owns every tensor. */
export type PngDecoderOutput = {
  /**
   * Mask logits [B, H, W, P] (the resolution of maskFeatures) after the initial queries and after
   * every layer: num_layers + 1 entries, the last is the final prediction (Mask2Former's
   * pred_masks; the others are its aux_outputs). Padding phrases' logits are meaningless.
   */
  readonly predictions: tf.Tensor4D[];
  /** With box_head: each prediction's boxes [B, P, 4], σ-normalised (cx, cy, w, h) in [0, 1] of the mask-feature frame (DETR's pred_boxes). */
  readonly boxes?: tf.Tensor3D[];
  /** The final queries after decoder_norm, [B, P, hidden_dim]. */
  readonly phrases: tf.Tensor3D;
};

/**
 * Phrase-query masked-attention Transformer decoder. Build with `create(config, {seed})` or
 * `fromPretrained(dir)`; every weight is a trainable tf.Variable. Checkpoint keys follow
 * Mask2Former: `transformer_{cross_attention,self_attention,ffn}_layers.<i>.*`, `decoder_norm`,
 * `mask_embed.layers.<j>`, `level_embed.weight`, `input_proj.<l>` (only when in_channels ≠
 * hidden_dim), plus `query_pos_proj` (query_pos 'linear') and DETR's `bbox_embed.layers.<j>` (box_head).
 */
export class PngDecoder extends ParameterModule {
  readonly config: Readonly<PngDecoderConfig>;
  readonly transformer_cross_attention_layers: CrossAttentionLayer[] = [];
  readonly transformer_self_attention_layers: SelfAttentionLayer[] = [];
  readonly transformer_ffn_layers: FFNLayer[] = [];
  readonly decoder_norm: LayerNorm;
  readonly mask_embed: MLP;
  readonly level_embed: Embedding;
  readonly input_proj: Conv2d[] = [];
  readonly query_pos_proj?: Linear;
  readonly bbox_embed?: MLP;

  private constructor(scope: WeightScope, config: Readonly<PngDecoderConfig>) {
    super();
    const c = config;
    this.config = c;
    for (let i = 0; i < c.num_layers; i++) {
      this.transformer_self_attention_layers.push(
        new SelfAttentionLayer(scope.pp('transformer_self_attention_layers').pp(i), c.hidden_dim, c.num_heads, c.pre_norm),
      );
      this.transformer_cross_attention_layers.push(
        new CrossAttentionLayer(scope.pp('transformer_cross_attention_layers').pp(i), c.hidden_dim, c.num_heads, c.pre_norm),
      );
      this.transformer_ffn_layers.push(new FFNLayer(scope.pp('transformer_ffn_layers').pp(i), c.hidden_dim, c.dim_feedforward, c.pre_norm));
    }
    this.decoder_norm = new LayerNorm(scope.pp('decoder_norm'), c.hidden_dim, 1e-5);
    this.mask_embed = new MLP(scope.pp('mask_embed'), c.hidden_dim, c.hidden_dim, c.mask_dim, 3);
    this.level_embed = new Embedding(scope.pp('level_embed'), c.num_feature_levels, c.hidden_dim);
    if (c.in_channels !== c.hidden_dim) {
      for (let l = 0; l < c.num_feature_levels; l++) this.input_proj.push(new Conv2d(scope.pp('input_proj').pp(l), c.in_channels, c.hidden_dim, 1));
    }
    if (c.query_pos === 'linear') this.query_pos_proj = new Linear(scope.pp('query_pos_proj'), c.hidden_dim, c.hidden_dim);
    if (c.box_head) this.bbox_embed = new MLP(scope.pp('bbox_embed'), c.hidden_dim, c.hidden_dim, 4, 3);
  }

  /** A fresh decoder (seeded init; trainable). The config is validated before any weight exists. */
  static create(config: Partial<PngDecoderConfig> | Record<string, unknown> = {}, options: { seed?: number } = {}): PngDecoder {
    const resolved = resolvePngDecoderConfig(config);
    return PngDecoder.build(WeightScope.fresh({ seed: options.seed ?? 0, trainable: true }), resolved);
  }

  /** Loads a folder written by `save` (config.json + model.safetensors); strict about keys and shapes. */
  static async fromPretrained(dir: string): Promise<PngDecoder> {
    const { config, source } = await openModule(dir);
    try {
      return PngDecoder.build(WeightScope.fromSource(source, { trainable: true }), resolvePngDecoderConfig(config));
    } finally {
      source.close();
    }
  }

  /** As fromPretrained, from the contents of the folder's files (browsers); `name` (where they came from) prefixes errors. */
  static fromFiles(files: ModuleFiles, name = 'decoder'): PngDecoder {
    const { config, source } = openModuleFiles(files, name);
    return PngDecoder.build(WeightScope.fromSource(source, { trainable: true }), resolvePngDecoderConfig(config));
  }

  private static build(scope: WeightScope, config: Readonly<PngDecoderConfig>): PngDecoder {
    const { module, params } = scope.build((s) => new PngDecoder(s, config));
    module.adopt(params);
    return module;
  }

  /** Writes `<dir>/config.json` and `<dir>/model.safetensors` (torch layout, F32). */
  async save(dir: string): Promise<void> {
    await saveModule(dir, this.config, this.parameters, { format: 'pt', module: 'PngDecoder' });
  }

  /**
   * Runs the decoder. Layer i attends to memory level i mod num_feature_levels (coarsest first),
   * masked by the previous prediction. Runs in tf.tidy; the caller owns the outputs; inputs are
   * not disposed. Padding phrases do not influence real phrases' predictions.
   */
  forward(inputs: PngDecoderInputs): PngDecoderOutput {
    this.assertAlive();
    this.checkInputs(inputs);
    return tf.tidy('PngDecoder.forward', () => {
      const c = this.config;
      const L = c.num_feature_levels;
      const mask = tf.cast(inputs.phraseMask, 'float32');
      const keyBias = keyMaskBias(mask); // [B, 1, 1, P]

      // memory: flattened levels + level_embed, sine positions (Mask2Former: src, pos, size_list)
      const src: tf.Tensor3D[] = [];
      const pos: tf.Tensor3D[] = [];
      const sizes: Array<[number, number]> = [];
      for (let l = 0; l < L; l++) {
        let x = inputs.pixels[l].tensor;
        if (this.input_proj.length) x = this.input_proj[l].forward(x);
        const [b, h, w, d] = x.shape;
        sizes.push([h, w]);
        pos.push(positionEmbeddingSine(h, w, d)); // [1, HW, D]
        const level = tf.reshape(tf.slice(this.level_embed.weight, [l, 0], [1, d]), [1, 1, d]); // [1, 1, D]
        src.push(tf.add(tf.reshape(x, [b, h * w, d]), level) as tf.Tensor3D); // [B, HW, D]
      }

      const queryPos = this.query_pos_proj ? this.query_pos_proj.forward(inputs.phrases) : undefined; // [B, P, D]
      const maskFeatures = c.mask_positions === 'sine' ? withGridPositions(inputs.maskFeatures) : inputs.maskFeatures;
      let output = inputs.phrases;
      const predictions: tf.Tensor4D[] = [];
      const boxes: tf.Tensor3D[] = [];
      let head = this.predictionHeads(output, maskFeatures, c.num_layers > 0 ? sizes[0] : undefined);
      predictions.push(head.mask);
      if (head.boxes) boxes.push(head.boxes);
      for (let i = 0; i < c.num_layers; i++) {
        const level = i % L;
        output = this.transformer_cross_attention_layers[i].forward(output, src[level], head.attnBias, pos[level], queryPos);
        output = this.transformer_self_attention_layers[i].forward(output, keyBias, queryPos);
        output = this.transformer_ffn_layers[i].forward(output);
        head = this.predictionHeads(output, maskFeatures, i + 1 < c.num_layers ? sizes[(i + 1) % L] : undefined);
        predictions.push(head.mask);
        if (head.boxes) boxes.push(head.boxes);
      }
      return { predictions, ...(this.bbox_embed ? { boxes } : {}), phrases: this.decoder_norm.forward(output) as tf.Tensor3D };
    });
  }

  /**
   * Mask2Former's forward_prediction_heads: mask logits of the queries, with box_head their boxes
   * (DETR: σ(bbox_embed(·))), and, when `attnSize` is given, the additive attention bias
   * [B, 1, P, h·w] for the next cross-attention.
   */
  private predictionHeads(
    output: tf.Tensor3D,
    maskFeatures: tf.Tensor4D,
    attnSize?: [number, number],
  ): { mask: tf.Tensor4D; boxes?: tf.Tensor3D; attnBias?: tf.Tensor } {
    const decoded = this.decoder_norm.forward(output); // [B, P, D]
    const embed = this.mask_embed.forward(decoded); // [B, P, C]
    const [b, h, w, ch] = maskFeatures.shape;
    const p = output.shape[1];
    const flat = tf.matMul(tf.reshape(maskFeatures, [b, h * w, ch]), embed as tf.Tensor3D, false, true); // [B, HW, P]
    const mask = tf.reshape(flat, [b, h, w, p]) as tf.Tensor4D; // [B, H, W, P]
    const boxes = this.bbox_embed ? (tf.sigmoid(this.bbox_embed.forward(decoded)) as tf.Tensor3D) : undefined; // [B, P, 4]
    if (!attnSize || !this.config.mask_attention) return { mask, boxes };
    const [ah, aw] = attnSize;
    const resized = resize(mask, attnSize, 'bilinear'); // [B, ah, aw, P]
    // masked where σ(m) < 0.5 ⟺ m < 0; step() has a zero gradient (the prediction is detached)
    const masked = tf.transpose(tf.reshape(tf.step(tf.neg(resized)), [b, ah * aw, p]), [0, 2, 1]); // [B, P, HW]
    // a fully masked row attends everywhere instead (Mask2Former: attn_mask[all masked] = False)
    const open = tf.sub(1, tf.min(masked, 2, true)); // [B, P, 1]
    return { mask, boxes, attnBias: tf.reshape(tf.mul(tf.mul(masked, open), MASKED_LOGIT), [b, 1, p, ah * aw]) }; // [B, 1, P, HW]
  }

  private checkInputs({ pixels, maskFeatures, phrases, phraseMask }: PngDecoderInputs): void {
    const c = this.config;
    const where = 'PngDecoder.forward';
    if (phrases.rank !== 3 || phrases.shape[2] !== c.hidden_dim)
      throw new Error(`${where}: phrases must be [B, P, ${c.hidden_dim}] (hidden_dim), got [${phrases.shape}]`);
    const [b, p] = phrases.shape;
    if (p === 0 || p > c.max_phrases) throw new Error(`${where}: ${p} phrases; expected 1 to max_phrases (${c.max_phrases}) per narrative`);
    if (phraseMask.rank !== 2 || phraseMask.shape[0] !== b || phraseMask.shape[1] !== p)
      throw new Error(`${where}: phraseMask must be [${b}, ${p}] like phrases [${phrases.shape}], got [${phraseMask.shape}]`);
    if (pixels.length < c.num_feature_levels)
      throw new Error(`${where}: expected at least num_feature_levels (${c.num_feature_levels}) pixel levels, got ${pixels.length}`);
    pixels.slice(0, c.num_feature_levels).forEach((f, l) => {
      const s = f.tensor.shape;
      if (f.tensor.rank !== 4 || s[0] !== b || s[3] !== c.in_channels)
        throw new Error(`${where}: pixels[${l}] must be NHWC [${b}, H, W, ${c.in_channels}] (in_channels), got [${s}]`);
    });
    const m = maskFeatures.shape;
    if (maskFeatures.rank !== 4 || m[0] !== b || m[3] !== c.mask_dim)
      throw new Error(`${where}: maskFeatures must be NHWC [${b}, H, W, ${c.mask_dim}] (mask_dim), got [${m}]`);
  }
}

/** features [B, H, W, C] + PositionEmbeddingSine of the H×W grid at width C. */
function withGridPositions(features: tf.Tensor4D): tf.Tensor4D {
  const [, h, w, c] = features.shape;
  return tf.add(features, tf.reshape(positionEmbeddingSine(h, w, c), [1, h, w, c])) as tf.Tensor4D; // [1, HW, C] → [1, H, W, C]
}

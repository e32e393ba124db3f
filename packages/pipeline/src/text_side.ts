/**
 * The grounder's trainable text side, between the frozen CLIP features and the parts that read
 * them. CLIP's text encoder is causal, so a phrase pooled from its tokens knows only the words to
 * its left; `sentence_context` adds what the rest of its sentence says ("a green square | on the
 * far right"), `caption_attention` lets the phrases read the whole caption. The frozen UNet's prompt
 * goes through VPD's residual text adapter with `text_adapter` (Zhao et al., ICCV 2023,
 * "Unleashing Text-to-Image Diffusion Models for Visual Perception": tokens + γ ⊙ MLP(tokens),
 * γ per channel from 1e-4).
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  LayerNorm,
  Linear,
  ParameterModule,
  WeightScope,
  check,
  gelu,
  isFiniteNumber,
  isNonNegativeInt,
  isPositiveInt,
  keyMaskBias,
  mergeHeads,
  openModuleFiles,
  resolveConfig,
  saveModule,
  scaledDotProductAttention,
  splitHeads,
  type CaptionTokens,
  type ModuleFiles,
} from '@png/core';

/** The text side's config.json. */
export interface TextSideConfig {
  /** Width of the text features (the UNet's cross_attention_dim; filled in by the grounder). */
  readonly text_dim: number;
  /**
   * Each phrase + proj(LN(the mean state of the other tokens of its sentence)) (proj as
   * output_init says): the clause that tells look-alikes apart ("the green square | on the far
   * right") reaches the phrase as a pooled input, not as an attention pattern to be learnt first.
   * Needs phrase features encoded with `sentence` (the grounder does).
   */
  readonly sentence_context: boolean;
  /**
   * One transformer layer in which the pooled phrases attend to every caption token state
   * (pre-norm cross-attention, then a feed-forward, each residual with output projections as
   * output_init says).
   */
  readonly caption_attention: boolean;
  /** Heads of that cross-attention; must divide text_dim. */
  readonly num_heads: number;
  /**
   * R > 0 adds a learned bias per head to that cross-attention's logits by the token's distance
   * from the phrase (T5-style relative positions: 0 inside the phrase's span, −1…−R before it,
   * 1…R after it, clipped at ±R; zero at initialisation), so that a phrase can learn to read the
   * words next to it, after it too ("a circle | on the far right"). 0: no bias (the layer sees
   * positions only through CLIP's states).
   */
  readonly relative_positions: number;
  /** Hidden width of that layer's feed-forward. */
  readonly dim_feedforward: number;
  /**
   * How the output projections of sentence_context (proj) and caption_attention (to_out, fc2)
   * start: 'zeros' (each branch closed, the phrases exactly as pooled at initialisation, as a
   * residual branch added to a pretrained model starts) or 'default' (PyTorch's Linear init: what
   * the clause and the caption say reaches the phrases from the first step; everything after the
   * text side is trained from scratch, so nothing pretrained needs protecting from it).
   */
  readonly output_init: 'zeros' | 'default';
  /** VPD's TextAdapter on the tokens of the UNet's prompt: x + γ ⊙ fc(x), fc = Linear → GELU → Linear of width text_dim. */
  readonly text_adapter: boolean;
  /** Initial γ of every channel (VPD: 1e-4; 0 starts the adapter closed). */
  readonly text_adapter_gamma_init: number;
  readonly norm_eps: number;
}

export const DEFAULT_TEXT_SIDE_CONFIG: TextSideConfig = Object.freeze({
  text_dim: 768,
  sentence_context: false,
  caption_attention: false,
  num_heads: 8,
  relative_positions: 0,
  dim_feedforward: 1024,
  output_init: 'zeros',
  text_adapter: false,
  text_adapter_gamma_init: 1e-4,
  norm_eps: 1e-5,
});

export function resolveTextSideConfig(user: Partial<TextSideConfig> | Record<string, unknown> = {}): TextSideConfig {
  return resolveConfig('TextSideConfig', DEFAULT_TEXT_SIDE_CONFIG, user, (c) => {
    check(isPositiveInt(c.text_dim), 'TextSideConfig', 'text_dim', 'a positive integer', c.text_dim);
    check(isPositiveInt(c.num_heads) && c.text_dim % c.num_heads === 0, 'TextSideConfig', 'num_heads', `a divisor of text_dim (${c.text_dim})`, c.num_heads);
    check(isNonNegativeInt(c.relative_positions), 'TextSideConfig', 'relative_positions', 'a non-negative integer (0: none)', c.relative_positions);
    check(isPositiveInt(c.dim_feedforward), 'TextSideConfig', 'dim_feedforward', 'a positive integer', c.dim_feedforward);
    check(['zeros', 'default'].includes(c.output_init), 'TextSideConfig', 'output_init', "'zeros' or 'default'", c.output_init);
    check(isFiniteNumber(c.text_adapter_gamma_init), 'TextSideConfig', 'text_adapter_gamma_init', 'a finite number', c.text_adapter_gamma_init);
    check(isFiniteNumber(c.norm_eps) && c.norm_eps > 0, 'TextSideConfig', 'norm_eps', 'a positive number', c.norm_eps);
  });
}

/** phrases + proj(LN(sentence)) on real phrases; proj starts at 0 with `zeros`. */
class SentenceContext {
  readonly norm: LayerNorm;
  readonly proj: Linear;

  constructor(scope: WeightScope, dim: number, eps: number, zeros: boolean) {
    this.norm = new LayerNorm(scope.pp('norm'), dim, eps);
    this.proj = new Linear(scope.pp('proj'), dim, dim, { zeros });
  }

  /** phrases [B, P, D] with mask [B, P] and their sentences' mean states [B, P, D] → [B, P, D] */
  forward(phrases: tf.Tensor3D, mask: tf.Tensor2D, sentence: tf.Tensor3D): tf.Tensor3D {
    const read = this.proj.forward(this.norm.forward(sentence)); // [B, P, D]
    return tf.add(phrases, tf.mul(read, tf.expandDims(mask, 2))) as tf.Tensor3D; // padding phrases stay as they are
  }
}

/** phrases + to_out(MHA(LN(phrases), LN(caption))), then + fc2(GELU(fc1(LN(·)))); to_out and fc2 start at 0 with `zeros`. */
class CaptionAttentionLayer {
  readonly norm_q: LayerNorm;
  readonly norm_kv: LayerNorm;
  readonly to_q: Linear;
  readonly to_k: Linear;
  readonly to_v: Linear;
  readonly to_out: Linear;
  readonly norm_ff: LayerNorm;
  readonly fc1: Linear;
  readonly fc2: Linear;
  /** [2R + 1, H]: the bias of each distance bucket per head (R = relative_positions). */
  readonly relative_bias?: tf.Tensor2D;

  constructor(
    scope: WeightScope,
    dim: number,
    private readonly heads: number,
    feedforward: number,
    eps: number,
    private readonly maxDistance: number,
    zeros: boolean,
  ) {
    this.norm_q = new LayerNorm(scope.pp('norm_q'), dim, eps);
    this.norm_kv = new LayerNorm(scope.pp('norm_kv'), dim, eps);
    this.to_q = new Linear(scope.pp('to_q'), dim, dim);
    this.to_k = new Linear(scope.pp('to_k'), dim, dim);
    this.to_v = new Linear(scope.pp('to_v'), dim, dim);
    this.to_out = new Linear(scope.pp('to_out'), dim, dim, { zeros });
    this.norm_ff = new LayerNorm(scope.pp('norm_ff'), dim, eps);
    this.fc1 = new Linear(scope.pp('fc1'), dim, feedforward);
    this.fc2 = new Linear(scope.pp('fc2'), feedforward, dim, { zeros });
    if (maxDistance > 0) this.relative_bias = scope.param('relative_bias', [2 * maxDistance + 1, heads], { init: { constant: 0 } }) as tf.Tensor2D;
  }

  /** The relative-position bias [B, H, P, T] of phrases spanning rows spans [B, P, 2] of a T-token caption. */
  private positionBias(bias: tf.Tensor2D, spans: tf.Tensor3D, t: number): tf.Tensor4D {
    const r = this.maxDistance;
    const rows = tf.reshape(tf.range(0, t), [1, 1, t]); // [1, 1, T]
    const [first, last] = tf.split(spans, 2, 2); // [B, P, 1] each
    const distance = tf.sub(tf.relu(tf.sub(rows, last)), tf.relu(tf.sub(first, rows))); // [B, P, T]: −k before the span, +k after, 0 inside
    const bucket = tf.cast(tf.add(tf.clipByValue(distance, -r, r), r), 'int32'); // [B, P, T] in [0, 2R]
    const [b, p] = spans.shape;
    const perHead = tf.matMul(tf.reshape(tf.oneHot(bucket, 2 * r + 1), [b * p * t, 2 * r + 1]), bias); // [B·P·T, 2R+1] × [2R+1, H] → [B·P·T, H]
    return tf.transpose(tf.reshape(perHead, [b, p, t, this.heads]), [0, 3, 1, 2]); // [B, P, T, H] → [B, H, P, T]
  }

  /** phrases [B, P, D] with mask [B, P] read caption [B, T, D] (key mask [B, T]) → [B, P, D]; padding phrases stay as they are. */
  forward(phrases: tf.Tensor3D, phraseMask: tf.Tensor2D, caption: CaptionTokens): tf.Tensor3D {
    const real = tf.expandDims(phraseMask, 2); // [B, P, 1]
    const memory = this.norm_kv.forward(caption.tensor);
    const q = splitHeads(this.to_q.forward(this.norm_q.forward(phrases)), this.heads); // [B, H, P, D/H]
    const k = splitHeads(this.to_k.forward(memory), this.heads); // [B, H, T, D/H]
    const v = splitHeads(this.to_v.forward(memory), this.heads);
    const masked = keyMaskBias(caption.mask); // [B, 1, 1, T]
    const bias = this.relative_bias ? tf.add(masked, this.positionBias(this.relative_bias, caption.spans, caption.tensor.shape[1])) : masked; // [B, H, P, T]
    const attended = this.to_out.forward(mergeHeads(scaledDotProductAttention(q, k, v, { bias }))); // [B, P, D]
    const x = tf.add(phrases, tf.mul(attended, real)); // [B, P, D]
    const fed = this.fc2.forward(gelu(this.fc1.forward(this.norm_ff.forward(x)))); // [B, P, D]
    return tf.add(x, tf.mul(fed, real)) as tf.Tensor3D;
  }
}

/** VPD's TextAdapter: tokens + γ ⊙ fc(tokens), fc = Linear → GELU → Linear (keys `fc.0`, `fc.2` as VPD's nn.Sequential), γ [D]. */
class TextAdapter {
  readonly fc0: Linear;
  readonly fc2: Linear;
  readonly gamma: tf.Tensor1D;

  constructor(scope: WeightScope, dim: number, gammaInit: number) {
    this.fc0 = new Linear(scope.pp('fc').pp(0), dim, dim);
    this.fc2 = new Linear(scope.pp('fc').pp(2), dim, dim);
    this.gamma = scope.param('gamma', [dim], { init: { constant: gammaInit } }) as tf.Tensor1D;
  }

  /** [B, N, D] → [B, N, D] */
  forward(tokens: tf.Tensor3D): tf.Tensor3D {
    return tf.add(tokens, tf.mul(this.gamma, this.fc2.forward(gelu(this.fc0.forward(tokens))))) as tf.Tensor3D;
  }
}

/**
 * The trainable text side (see the file's comment). Checkpoint keys: `sentence_context.{norm,
 * proj}.*`, `caption_attention.{norm_q,
 * norm_kv, to_q, to_k, to_v, to_out, norm_ff, fc1, fc2}.*`, `caption_attention.relative_bias` (with
 * relative_positions) and `text_adapter.{fc.0, fc.2}.*`,
 * `text_adapter.gamma`, each only when its part is on.
 */
export class TextSide extends ParameterModule {
  private constructor(
    readonly config: TextSideConfig,
    private readonly sentenceContext?: SentenceContext,
    private readonly captionAttention?: CaptionAttentionLayer,
    private readonly textAdapter?: TextAdapter,
  ) {
    super();
  }

  /** Whether a text side with `config` has anything to train (else the grounder has none). */
  static isEnabled(config: Partial<TextSideConfig>): boolean {
    return config.sentence_context === true || config.caption_attention === true || config.text_adapter === true;
  }

  /** A fresh (trainable) text side; the config is validated before any weight exists. */
  static create(config: Partial<TextSideConfig> | Record<string, unknown>, options: { seed?: number } = {}): TextSide {
    return TextSide.build(WeightScope.fresh({ seed: options.seed ?? 0, trainable: true }), resolveTextSideConfig(config));
  }

  /** Loads the contents of a folder written by `save`; `name` (where they came from) prefixes errors. */
  static fromFiles(files: ModuleFiles, name = 'text'): TextSide {
    const { config, source } = openModuleFiles(files, name);
    return TextSide.build(WeightScope.fromSource(source, { trainable: true }), resolveTextSideConfig(config));
  }

  private static build(scope: WeightScope, c: TextSideConfig): TextSide {
    const { module, params } = scope.build(
      (s) =>
        new TextSide(
          c,
          c.sentence_context ? new SentenceContext(s.pp('sentence_context'), c.text_dim, c.norm_eps, c.output_init === 'zeros') : undefined,
          c.caption_attention
            ? new CaptionAttentionLayer(
                s.pp('caption_attention'),
                c.text_dim,
                c.num_heads,
                c.dim_feedforward,
                c.norm_eps,
                c.relative_positions,
                c.output_init === 'zeros',
              )
            : undefined,
          c.text_adapter ? new TextAdapter(s.pp('text_adapter'), c.text_dim, c.text_adapter_gamma_init) : undefined,
        ),
    );
    return module.adopt(params);
  }

  /** Writes `<dir>/config.json` and `<dir>/model.safetensors`, atomically. */
  async save(dir: string): Promise<void> {
    await saveModule(dir, this.config, this.parameters, { format: 'pt', module: 'TextSide' });
  }

  /** The phrases [B, P, D] (mask [B, P]) after reading their sentences' mean states [B, P, D] (with `sentence_context`; else as given). Caller owns the result. */
  readSentence(phrases: tf.Tensor3D, mask: tf.Tensor2D, sentence: tf.Tensor3D | undefined): tf.Tensor3D {
    this.assertAlive();
    const context = this.sentenceContext;
    if (!context) return phrases;
    if (!sentence)
      throw new Error(
        "TextSide: sentence_context reads each phrase's sentence, and these phrase features have none; encode them with encodePhrases(…, {sentence: true}) (PngGrounder.encodePhrases does)",
      );
    if (sentence.shape.join() !== phrases.shape.join())
      throw new Error(`TextSide: sentence states [${sentence.shape}] do not match the phrases [${phrases.shape}]; encode both in one encodePhrases call`);
    return tf.tidy(() => context.forward(phrases, mask, sentence));
  }

  /** The phrases [B, P, D] (mask [B, P]) after reading `caption` (with `caption_attention`; else as given). Caller owns the result. */
  readCaption(phrases: tf.Tensor3D, mask: tf.Tensor2D, caption: CaptionTokens | undefined): tf.Tensor3D {
    this.assertAlive();
    if (!this.captionAttention) return phrases;
    if (!caption)
      throw new Error(
        'TextSide: caption_attention reads the caption token states, and these phrase features have none; encode them with encodePhrases(…, {caption: true}) (PngGrounder.encodePhrases does)',
      );
    const layer = this.captionAttention;
    return tf.tidy(() => layer.forward(phrases, mask, caption));
  }

  /** Tokens of the UNet's prompt [B, N, D] through the text adapter (with `text_adapter`; else as given). Caller owns the result. */
  adaptPrompt(tokens: tf.Tensor3D): tf.Tensor3D {
    this.assertAlive();
    const adapter = this.textAdapter;
    return adapter ? tf.tidy(() => adapter.forward(tokens)) : tokens;
  }
}

import * as tf from '@tensorflow/tfjs-core';
import {
  Embedding,
  LayerNorm,
  Linear,
  WeightScope,
  activation,
  causalBias,
  keyMaskBias,
  mergeHeads,
  saveModule,
  scaledDotProductAttention,
  splitHeads,
  ParameterModule,
  type ModuleFiles,
} from '@png/core';
import { componentWeightsFile, openComponentFiles, openWeights, readConfigJson, type ComponentFilesOptions, type ComponentOptions } from '../component_files';
import { clipTextConfigFromJson, type CLIPTextConfig } from './configuration_clip';

export interface CLIPTextModelForwardOptions {
  /** [B, L], 1 = real token, 0 = padding (masked as keys, on top of the causal mask). SD v1.x passes none. */
  readonly attentionMask?: tf.Tensor2D;
  /** Also return the embedding output and every layer's output (before `final_layer_norm`). */
  readonly outputHiddenStates?: boolean;
}

export type CLIPTextModelOutput = {
  /** [B, L, D], after `final_layer_norm`: what SD v1.x feeds the UNet's cross-attention. */
  readonly lastHiddenState: tf.Tensor3D;
  /** [B, D], `lastHiddenState` at each row's end-of-text token. */
  readonly poolerOutput: tf.Tensor2D;
  /** num_hidden_layers + 1 tensors [B, L, D], with `outputHiddenStates`. */
  readonly hiddenStates?: tf.Tensor3D[];
};

/** Token embedding + learned absolute position embedding. */
class CLIPTextEmbeddings {
  readonly token_embedding: Embedding;
  readonly position_embedding: Embedding;

  constructor(scope: WeightScope, config: CLIPTextConfig) {
    this.token_embedding = new Embedding(scope.pp('token_embedding'), config.vocab_size, config.hidden_size);
    this.position_embedding = new Embedding(scope.pp('position_embedding'), config.max_position_embeddings, config.hidden_size);
  }

  /** int32 [B, L] → [B, L, D]; positions 0 … L−1. */
  forward(inputIds: tf.Tensor2D): tf.Tensor3D {
    const positions = tf.range(0, inputIds.shape[1], 1, 'int32'); // [L]
    return tf.add(this.token_embedding.forward(inputIds), this.position_embedding.forward(positions)) as tf.Tensor3D; // [B, L, D] + [L, D]
  }
}

/** Multi-head self-attention with q/k/v/out projections. */
class CLIPAttention {
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly out_proj: Linear;
  private readonly heads: number;

  constructor(scope: WeightScope, config: CLIPTextConfig) {
    const d = config.hidden_size;
    this.heads = config.num_attention_heads;
    this.q_proj = new Linear(scope.pp('q_proj'), d, d);
    this.k_proj = new Linear(scope.pp('k_proj'), d, d);
    this.v_proj = new Linear(scope.pp('v_proj'), d, d);
    this.out_proj = new Linear(scope.pp('out_proj'), d, d);
  }

  /** [B, L, D] with an additive bias broadcastable to [B, H, L, L] → [B, L, D]. */
  forward(x: tf.Tensor3D, bias: tf.Tensor): tf.Tensor3D {
    const q = splitHeads(this.q_proj.forward(x), this.heads); // [B, H, L, d]
    const k = splitHeads(this.k_proj.forward(x), this.heads); // [B, H, L, d]
    const v = splitHeads(this.v_proj.forward(x), this.heads); // [B, H, L, d]
    const out = mergeHeads(scaledDotProductAttention(q, k, v, { bias })); // [B, L, D]
    return this.out_proj.forward(out) as tf.Tensor3D;
  }
}

/** fc1 → activation → fc2. */
class CLIPMLP {
  readonly fc1: Linear;
  readonly fc2: Linear;
  private readonly act: (x: tf.Tensor) => tf.Tensor;

  constructor(scope: WeightScope, config: CLIPTextConfig) {
    this.fc1 = new Linear(scope.pp('fc1'), config.hidden_size, config.intermediate_size);
    this.fc2 = new Linear(scope.pp('fc2'), config.intermediate_size, config.hidden_size);
    this.act = activation(config.hidden_act);
  }

  forward(x: tf.Tensor3D): tf.Tensor3D {
    return this.fc2.forward(this.act(this.fc1.forward(x))) as tf.Tensor3D; // [B, L, I] → [B, L, D]
  }
}

/** Pre-LayerNorm transformer block: x + attn(ln1(x)), then x + mlp(ln2(x)). */
class CLIPEncoderLayer {
  readonly layer_norm1: LayerNorm;
  readonly self_attn: CLIPAttention;
  readonly layer_norm2: LayerNorm;
  readonly mlp: CLIPMLP;

  constructor(scope: WeightScope, config: CLIPTextConfig) {
    this.layer_norm1 = new LayerNorm(scope.pp('layer_norm1'), config.hidden_size, config.layer_norm_eps);
    this.self_attn = new CLIPAttention(scope.pp('self_attn'), config);
    this.layer_norm2 = new LayerNorm(scope.pp('layer_norm2'), config.hidden_size, config.layer_norm_eps);
    this.mlp = new CLIPMLP(scope.pp('mlp'), config);
  }

  forward(x: tf.Tensor3D, bias: tf.Tensor): tf.Tensor3D {
    const h = tf.add(x, this.self_attn.forward(this.layer_norm1.forward(x) as tf.Tensor3D, bias)) as tf.Tensor3D;
    return tf.add(h, this.mlp.forward(this.layer_norm2.forward(h) as tf.Tensor3D)) as tf.Tensor3D;
  }
}

/** transformers `CLIPTextTransformer`: embeddings, `encoder.layers.N`, `final_layer_norm`, pooling. */
class CLIPTextTransformer {
  readonly embeddings: CLIPTextEmbeddings;
  readonly layers: CLIPEncoderLayer[];
  readonly final_layer_norm: LayerNorm;

  constructor(
    scope: WeightScope,
    private readonly config: CLIPTextConfig,
  ) {
    this.embeddings = new CLIPTextEmbeddings(scope.pp('embeddings'), config);
    const layers = scope.pp('encoder').pp('layers');
    this.layers = Array.from({ length: config.num_hidden_layers }, (_, i) => new CLIPEncoderLayer(layers.pp(i), config));
    this.final_layer_norm = new LayerNorm(scope.pp('final_layer_norm'), config.hidden_size, config.layer_norm_eps);
  }

  forward(inputIds: tf.Tensor2D, attentionMask: tf.Tensor2D | undefined, outputHiddenStates: boolean): CLIPTextModelOutput {
    const [b, l] = inputIds.shape;
    let bias: tf.Tensor = causalBias(l); // [1, 1, L, L]
    if (attentionMask) bias = tf.add(bias, keyMaskBias(attentionMask)); // [B, 1, L, L]
    let h = this.embeddings.forward(inputIds); // [B, L, D]
    const hiddenStates = [h];
    for (const layer of this.layers) {
      h = layer.forward(h, bias);
      hiddenStates.push(h);
    }
    const last = this.final_layer_norm.forward(h) as tf.Tensor3D; // [B, L, D]
    // transformers 4.33: legacy configs (eos_token_id 2) pool at the largest id, i.e. the first
    // <|endoftext|> of CLIP's vocabulary; others at the first eos_token_id (position 0 if none).
    // torch's argmax takes the first of tied maxima, GPU backends any of them: rank ties by position.
    const key = this.config.eos_token_id === 2 ? tf.cast(inputIds, 'float32') : tf.cast(tf.equal(inputIds, this.config.eos_token_id), 'float32'); // [B, L]
    const eosPosition = tf.argMax(tf.sub(tf.mul(key, l), tf.range(0, l, 1, 'float32')), 1); // [B]; ids·L < 2^24, exact in float32
    const rows = tf.add(tf.range(0, b * l, l, 'int32'), eosPosition); // [B], flat index b·L + position
    const pooled = tf.gather(tf.reshape(last, [b * l, -1]), rows) as tf.Tensor2D; // [B·L, D] → [B, D]
    return outputHiddenStates ? { lastHiddenState: last, poolerOutput: pooled, hiddenStates } : { lastHiddenState: last, poolerOutput: pooled };
  }
}

/**
 * transformers `CLIPTextModel` (the text tower of CLIP; SD v1.x's `text_encoder`). Weights keep
 * transformers' names (`text_model.encoder.layers.0.self_attn.q_proj.weight`, …); a
 * checkpoint's `text_model.embeddings.position_ids` buffer is ignored. Frozen: weights are
 * tf.Tensor unless built from a trainable scope. `dispose()` frees them.
 */
export class CLIPTextModel extends ParameterModule {
  private constructor(
    readonly config: CLIPTextConfig,
    private readonly textModel: CLIPTextTransformer,
  ) {
    super();
  }

  /** Loads `<dir>/config.json` and `<dir>/model[.<variant>].safetensors` (a transformers or diffusers `text_encoder/` folder). Node only. */
  static async fromPretrained(dir: string, options: ComponentOptions = {}): Promise<CLIPTextModel> {
    const config = clipTextConfigFromJson(await readConfigJson(dir), `${dir}/config.json`);
    const source = await openWeights(dir, 'model', options);
    try {
      return CLIPTextModel.fromScope(WeightScope.fromSource(source, { ignore: [/(^|\.)position_ids$/] }), config);
    } finally {
      source.close();
    }
  }

  /** As fromPretrained, from the contents of the folder's files (browsers: see DiffusionBackbone.fromUrl). */
  static fromFiles(files: ModuleFiles, options: ComponentFilesOptions = {}): CLIPTextModel {
    const { config, source } = openComponentFiles(files, 'model', 'text_encoder', options);
    return CLIPTextModel.fromScope(
      WeightScope.fromSource(source, { ignore: [/(^|\.)position_ids$/] }),
      clipTextConfigFromJson(config, `${options.name ?? 'text_encoder'}/config.json`),
    );
  }

  /**
   * Builds the model from a root weight scope: a checkpoint (`WeightScope.fromSource`) or fresh
   * random weights (`WeightScope.fresh()`). `config` is validated first.
   */
  static fromScope(scope: WeightScope, config: CLIPTextConfig): CLIPTextModel {
    const checked = clipTextConfigFromJson(config as unknown as Record<string, unknown>);
    const { module, params } = scope.build((s) => new CLIPTextTransformer(s.pp('text_model'), checked));
    return new CLIPTextModel(checked, module).adopt(params);
  }

  /** Writes `dir` as a transformers `text_encoder/` folder (config.json + model.safetensors). */
  async save(dir: string): Promise<void> {
    this.assertAlive();
    await saveModule(
      dir,
      { architectures: ['CLIPTextModel'], model_type: 'clip_text_model', ...this.config },
      this.parameters,
      { format: 'pt' },
      componentWeightsFile('model'),
    );
  }

  /**
   * Encodes token ids, int32 [B, L] with L ≤ max_position_embeddings (77), under the causal
   * mask. Runs in tf.tidy; the caller owns (and disposes) the returned tensors.
   */
  forward(inputIds: tf.Tensor2D, options: CLIPTextModelForwardOptions = {}): CLIPTextModelOutput {
    this.assertAlive();
    const maxLength = this.config.max_position_embeddings;
    if (
      !(inputIds instanceof tf.Tensor) ||
      inputIds.rank !== 2 ||
      inputIds.dtype !== 'int32' ||
      inputIds.shape[0] < 1 ||
      inputIds.shape[1] < 1 ||
      inputIds.shape[1] > maxLength
    ) {
      const got = inputIds instanceof tf.Tensor ? `${inputIds.dtype} [${inputIds.shape}]` : String(inputIds);
      throw new Error(
        `CLIPTextModel.forward: inputIds must be an int32 tensor [B, L] with 1 ≤ L ≤ ${maxLength} (max_position_embeddings), got ${got}; tokenize with truncation (or chunk long texts)`,
      );
    }
    const mask = options.attentionMask;
    if (mask !== undefined && (!(mask instanceof tf.Tensor) || mask.rank !== 2 || mask.shape[0] !== inputIds.shape[0] || mask.shape[1] !== inputIds.shape[1])) {
      const got = mask instanceof tf.Tensor ? `[${mask.shape}]` : String(mask);
      throw new Error(`CLIPTextModel.forward: attentionMask must be [B, L] = [${inputIds.shape}] like inputIds, got ${got}`);
    }
    return tf.tidy(() => this.textModel.forward(inputIds, mask, options.outputHiddenStates ?? false));
  }
}

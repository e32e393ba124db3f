import * as tf from '@tensorflow/tfjs-core';
import {
  ForwardContext,
  ParameterModule,
  WeightScope,
  contextKey,
  openModule,
  openModuleFiles,
  positionEmbeddingSine,
  saveModule,
  type CaptionTokens,
  type ModuleFiles,
  type PhraseFeatures,
} from '@png/core';
import { AttnProcessor, type AttentionProcessor, type UNet2DConditionModel } from '@png/diffusion-backbone';
import { resolveEipaConfig, type EipaConfig } from './config';
import { GatedCrossAttention } from './gated_cross_attention';
import { GatedSelfAttention } from './gated_self_attention';
import { PhraseExtractor } from './phrase_extractor';

/** The phrase state EIPA threads through one UNet forward: [B, P, D], updated by every extract. */
const PHRASES = contextKey<tf.Tensor3D>('eipa/phrases');
/** The phrase mask of that forward: [B, P], 1 = real phrase. */
const PHRASE_MASK = contextKey<tf.Tensor2D>('eipa/phrase_mask');
/** Probes of one forward (see EipaContextOptions). */
const ZERO_GATES = contextKey<true>('eipa/zero_gates');
const RECORD_STATES = contextKey<true>('eipa/record_states');
const REPLAY_STATES = contextKey<Readonly<Record<string, tf.Tensor3D>>>('eipa/replay_states');
/** Caption tokens the cross-attention reads before the phrase slots, [B, T, D], and their mask [B, T] (absent: the prompt is the phrases alone). */
const CAPTION = contextKey<tf.Tensor3D>('eipa/caption');
const CAPTION_MASK = contextKey<tf.Tensor2D>('eipa/caption_mask');
/** The forward's latent grid [h, w] (absent: square). */
const LATENT_SIZE = contextKey<readonly [number, number]>('eipa/latent_size');
/** Where the phrase state after an up block or an adapted block and an adapted block's inject attention land in the UNet's `outputs` (read them with EipaAttachment). */
const phraseStateKey = (level: string): string => `eipa/phrases/${level}`;
const blockStateKey = (blockPath: string): string => `eipa/block_phrases/${blockPath}`;
const attentionKey = (blockPath: string): string => `eipa/attention/${blockPath}`;

/** The adapter of one transformer block. */
export interface PhraseAdapterBlock {
  readonly path: string;
  readonly channels: number;
  readonly extract?: PhraseExtractor;
  /** A cross-attention after the block, or a GLIGEN self-attention after its self-attention (`inject_position`). */
  readonly inject?: GatedCrossAttention | GatedSelfAttention;
}

/** Mean |tanh(gate)| over the adapted blocks (each block's gate averaged over its channels first), per kind; null where that kind has no gate. */
export interface EipaGateMagnitudes {
  readonly extract: number | null;
  readonly inject: number | null;
}

/**
 * EIPA, the Extractive-Injective Phrase Adapter: a trainable bypass beside a frozen UNet. At each
 * adapted transformer block it extracts (phrases attend to the block's image tokens, updating the
 * phrase state; optionally also phrase self-attention and an FFN) and injects (image tokens attend
 * to the updated phrases, added to the UNet stream through a zero-initialised tanh gate; after
 * the block, or after its self-attention as GLIGEN does). With `dynamic_prompt` the
 * cross-attention of every transformer block reads the current phrase state in the prompt's
 * phrase slots (the whole prompt, or the slots after the caption tokens given to `context`).
 * Weights are named `<block path>.extract.*` and `<block path>.inject.*`. Attach it with
 * `attachEipa(unet, adapter)`.
 */
export class PhraseAdapter extends ParameterModule {
  private constructor(
    readonly config: EipaConfig,
    readonly phraseDim: number,
    readonly blocks: readonly PhraseAdapterBlock[],
  ) {
    super();
  }

  /** A fresh (trainable) adapter for `unet`. */
  static create(unet: UNet2DConditionModel, config: Partial<EipaConfig> = {}, options: { seed?: number } = {}): PhraseAdapter {
    return PhraseAdapter.build(WeightScope.fresh({ seed: options.seed ?? 0, trainable: true }), unet, resolveEipaConfig(config));
  }

  /** Loads an adapter saved with `save(dir)` for this `unet` (strict: another config is an error naming the tensor). */
  static async fromPretrained(dir: string, unet: UNet2DConditionModel): Promise<PhraseAdapter> {
    const { config, source } = await openModule(dir);
    try {
      return PhraseAdapter.build(WeightScope.fromSource(source, { trainable: true }), unet, resolveEipaConfig(config));
    } finally {
      source.close();
    }
  }

  /** As fromPretrained, from the contents of the folder's files (browsers); `name` (where they came from) prefixes errors. */
  static fromFiles(files: ModuleFiles, unet: UNet2DConditionModel, name = 'eipa'): PhraseAdapter {
    const { config, source } = openModuleFiles(files, name);
    return PhraseAdapter.build(WeightScope.fromSource(source, { trainable: true }), unet, resolveEipaConfig(config));
  }

  private static build(scope: WeightScope, unet: UNet2DConditionModel, config: EipaConfig): PhraseAdapter {
    const available = unet.transformerBlocks(); // each has a cross-attention (attn2)
    const paths = config.block_paths ?? available.map((b) => b.path);
    const specs = paths.map((path) => {
      const spec = available.find((b) => b.path === path);
      if (!spec) throw new Error(`Error in EipaConfig.block_paths: '${path}' is not a transformer block of this UNet (e.g. '${available[0]?.path}')`);
      return spec;
    });
    const phraseDim = unet.config.cross_attention_dim;
    const c = { ...config, block_paths: paths };
    const odd = specs.find((b) => b.channels % 2 !== 0);
    if (c.position_encoding === 'sine' && odd)
      throw new Error(
        `Error in EipaConfig.position_encoding: 'sine' splits a block's channels into y and x halves, and block '${odd.path}' has ${odd.channels}; use 'none' or leave that block out of block_paths`,
      );
    const { module: blocks, params } = scope.build((s) =>
      specs.map(({ path, channels }): PhraseAdapterBlock => {
        const block = s.pp(path);
        const [r, heads, eps] = [c.bottleneck_dim, c.num_heads, c.norm_eps];
        const extractGate = { kind: c.extract_gate, init: c.gate_init };
        const injectGate = { kind: c.inject_gate, init: c.gate_init };
        const extract = c.extract
          ? new PhraseExtractor(block.pp('extract'), phraseDim, channels, {
              bottleneck: r,
              heads,
              gate: extractGate,
              selfAttention: c.extract_self_attention,
              ffnDim: c.extract_ffn_dim,
              eps,
            })
          : undefined;
        let inject: GatedCrossAttention | GatedSelfAttention | undefined;
        if (c.inject && c.inject_position === 'after_block')
          inject = new GatedCrossAttention(block.pp('inject'), channels, phraseDim, r, heads, injectGate, eps);
        if (c.inject && c.inject_position === 'after_self_attention')
          inject = new GatedSelfAttention(block.pp('inject'), channels, r, heads, injectGate, eps, phraseDim);
        return { path, channels, extract, inject };
      }),
    );
    return new PhraseAdapter(Object.freeze(c), phraseDim, blocks).adopt(params);
  }

  /**
   * How far the adapter has left static prompting: the mean |tanh(gate)| of its extract and
   * inject gates (0 at the default init). Reads the gates back from the backend (asynchronously:
   * WebGPU in Node has no synchronous reads).
   */
  async gateMagnitudes(): Promise<EipaGateMagnitudes> {
    const mean = async (gates: Array<tf.Tensor | undefined>): Promise<number | null> => {
      const present = gates.filter((g): g is tf.Tensor => g !== undefined);
      if (present.length === 0) return null;
      const value = tf.tidy(() => tf.mean(tf.stack(present.map((g) => tf.mean(tf.abs(tf.tanh(g)))))));
      try {
        return (await value.data())[0];
      } finally {
        value.dispose();
      }
    };
    return { extract: await mean(this.blocks.map((b) => b.extract?.gate)), inject: await mean(this.blocks.map((b) => b.inject?.gate)) };
  }

  /** Saves config.json (with the resolved block paths) and model.safetensors, atomically. */
  async save(dir: string): Promise<void> {
    await saveModule(dir, this.config, this.parameters);
  }
}

const attached = new WeakMap<UNet2DConditionModel, PhraseAdapter>();

/** The prompt of a dynamic cross-attention: the current phrase state in the phrase slots, after the caption tokens if the context has them. */
function dynamicPrompt(context: ForwardContext): { encoderHiddenStates: tf.Tensor3D; encoderAttentionMask: tf.Tensor2D } {
  const phrases = context.require(PHRASES);
  const mask = context.require(PHRASE_MASK);
  const caption = context.get(CAPTION);
  if (!caption) return { encoderHiddenStates: phrases, encoderAttentionMask: mask };
  return {
    encoderHiddenStates: tf.concat([caption, phrases], 1) as tf.Tensor3D, // [B, T + P, D]
    encoderAttentionMask: tf.concat([context.require(CAPTION_MASK), mask], 1) as tf.Tensor2D, // [B, T + P]
  };
}

/**
 * The token grid [h, w] of a block with n image tokens in a forward over a latent grid (the
 * UNet's stride-2 convolutions halve it, rounding up); without one the grid is square.
 */
function tokenGrid(n: number, latentSize: readonly [number, number] | undefined, path: string): [number, number] {
  if (!latentSize) {
    const side = Math.round(Math.sqrt(n));
    if (side * side !== n)
      throw new Error(
        `EIPA: block '${path}' has ${n} image tokens, not a square grid; pass the latent size to attachment.context(phrases, { latentSize: [h, w] })`,
      );
    return [side, side];
  }
  let [h, w] = latentSize;
  while (h * w > n && (h > 1 || w > 1)) [h, w] = [Math.ceil(h / 2), Math.ceil(w / 2)];
  if (h * w !== n) throw new Error(`EIPA: block '${path}' has ${n} image tokens, which no halving of the latent grid [${latentSize}] gives`);
  return [h, w];
}

/** Options of {@link attachEipa}. */
export interface EipaAttachOptions {
  /**
   * The up blocks after which the phrase state is recorded, coarsest first (default: every up
   * block, as FeatureTaps taps them); pass `taps.levels` to align the states with a FeatureTaps.
   */
  readonly levels?: readonly string[];
  /** Also record each adapted block's inject attention [B, HW, P] (for visualisation). */
  readonly recordAttention?: boolean;
}

/**
 * Options of one adapted forward's context: test-time probes (checks that dynamic prompting is
 * what it claims; without any, a forward is the adapter's own) and the prompt's caption tokens.
 */
export interface EipaContextOptions {
  /**
   * Every EIPA update is dropped, as if each gate (and the implicit gate 1 of an ungated update)
   * were 0: the phrase state stays the initial phrases and nothing is injected, so the UNet reads
   * the phrases as static prompting does, with the same weights everywhere else.
   */
  readonly zeroGates?: boolean;
  /** Record the phrase state after each adapted block's extract (read them with `blockStates`). */
  readonly recordStates?: boolean;
  /**
   * Phrase states by adapted block path (`blockStates` of another forward over the same phrases,
   * e.g. of another image): each block takes its state from here instead of extracting it from
   * this forward's image tokens; everything downstream (cross-attention, inject, the recorded
   * levels) reads the replayed state.
   */
  readonly replayStates?: Readonly<Record<string, tf.Tensor3D>>;
  /**
   * Not a probe: tokens the UNet's prompt holds before the phrase slots (the UNet is then called
   * with [caption; phrases], e.g. PngGrounder's `context: 'both'`); with `dynamic_prompt` they
   * stay and the phrase slots read the current phrase state.
   */
  readonly caption?: CaptionTokens;
  /** Not a probe: the forward's latent grid [h, w], which `position_encoding: 'sine'` needs when it is not square. */
  readonly latentSize?: readonly [number, number];
}

/**
 * An adapter attached to a UNet (see {@link attachEipa}): makes the context an adapted forward
 * needs and reads what EIPA recorded in that forward's `outputs`.
 */
export interface EipaAttachment {
  readonly adapter: PhraseAdapter;
  /** The up blocks whose phrase state `phraseStates` returns, in this order. */
  readonly levels: readonly string[];
  /**
   * The per-forward context that carries the initial phrase state (and any probe) into an adapted
   * UNet forward; `options.caption` for a prompt with caption tokens before the phrase slots.
   */
  context(phrases: PhraseFeatures, options?: EipaContextOptions): ForwardContext;
  /**
   * The phrase state after each of `levels` in the forward that returned `outputs` and started
   * from `phrases` (with its context): [B, P, D] each, with the mask of `phrases`. The tensors are
   * those of `outputs` and `phrases.mask`: dispose those, not these.
   */
  phraseStates(outputs: Readonly<Record<string, tf.Tensor>>, phrases: PhraseFeatures): PhraseFeatures[];
  /** Per extracting block path, its phrase state [B, P, D] in a forward with `recordStates` (the tensors of `outputs`). */
  blockStates(outputs: Readonly<Record<string, tf.Tensor>>): Record<string, tf.Tensor3D>;
  /** Per adapted block path, its inject attention [B, HW, P] in the forward that returned `outputs` (with `recordAttention`; else empty). */
  attention(outputs: Readonly<Record<string, tf.Tensor>>): Record<string, tf.Tensor3D>;
  /** Restores the UNet exactly; a second call does nothing. */
  detach(): void;
}

/**
 * Attaches `adapter` to `unet` through its processors and block hooks only; the attachment's
 * `detach()` restores the UNet exactly. A forward then needs the context from
 * `attachment.context(phrases)`, and `attachment.phraseStates(outputs, phrases)` hands back the
 * phrase state after each of `options.levels` (and `attachment.attention(outputs)`, with
 * `recordAttention`, each adapted block's inject attention). An inject after self-attention hooks
 * the block's `fuser` point (between its self- and cross-attention).
 */
export function attachEipa(unet: UNet2DConditionModel, adapter: PhraseAdapter, options: EipaAttachOptions = {}): EipaAttachment {
  if (attached.has(unet)) throw new Error('attachEipa: this UNet already has an EIPA adapter attached; detach it first');
  const channels = new Map(unet.transformerBlocks().map((b) => [b.path, b.channels]));
  for (const block of adapter.blocks) {
    if (channels.get(block.path) !== block.channels) {
      throw new Error(
        `attachEipa: the adapter was built for another UNet (block '${block.path}' has ${channels.get(block.path) ?? 'no'} channels here, ${block.channels} in the adapter)`,
      );
    }
  }
  const upBlocks = Object.keys(unet.upBlockShapes());
  const levels = options.levels ?? upBlocks;
  for (const level of levels)
    if (!upBlocks.includes(level)) throw new Error(`attachEipa: level '${level}' is not an up block of this UNet (${upBlocks.join(', ')})`);
  const removers: Array<() => void> = [];
  const previous = unet.attnProcessors();

  if (adapter.config.dynamic_prompt) {
    const dynamic: Record<string, AttentionProcessor> = { ...previous };
    for (const key of Object.keys(previous).filter((k) => k.endsWith('.attn2.processor'))) {
      const inner = previous[key] ?? AttnProcessor;
      dynamic[key] = (attn, hidden, args) => inner(attn, hidden, { ...args, ...dynamicPrompt(args.context) });
    }
    unet.setAttnProcessor(dynamic);
    removers.push(() => unet.setAttnProcessor(previous));
  }

  const afterSelfAttention = adapter.config.inject_position === 'after_self_attention';
  /** The sine positions of a block's image tokens [B, N, C] as [1, N, C], or none. */
  const positionsOf = (block: PhraseAdapterBlock, tokens: tf.Tensor3D, ctx: ForwardContext): tf.Tensor3D | undefined => {
    if (adapter.config.position_encoding === 'none') return undefined;
    const [h, w] = tokenGrid(tokens.shape[1], ctx.get(LATENT_SIZE), block.path);
    return positionEmbeddingSine(h, w, block.channels); // [1, h·w, C]
  };
  /** image tokens ← the current phrase state, through the block's inject. */
  const inject = (block: PhraseAdapterBlock, tokens: tf.Tensor3D, ctx: ForwardContext): tf.Tensor3D => {
    if (!block.inject) throw new Error(`EIPA: block '${block.path}' has no inject module; only blocks built with one are hooked`);
    const positions = positionsOf(block, tokens, ctx);
    const { out, attention } =
      block.inject instanceof GatedSelfAttention
        ? block.inject.forward(tokens, ctx.require(PHRASES), ctx.require(PHRASE_MASK), positions)
        : block.inject.forward(tokens, ctx.require(PHRASES), ctx.require(PHRASE_MASK), { queries: positions });
    if (options.recordAttention) ctx.outputs[attentionKey(block.path)] = attention;
    return out;
  };
  for (const block of adapter.blocks) {
    if (block.extract || (block.inject && !afterSelfAttention)) {
      removers.push(
        unet.addBlockHook(block.path, {
          postForward: (path, tokens, ctx) => {
            if (ctx.has(ZERO_GATES)) return tokens;
            if (block.extract) {
              const replay = ctx.get(REPLAY_STATES); // checked by context(): a state for every extracting block
              const image = tokens as tf.Tensor3D; // [B, N, C]
              const state = replay
                ? replay[path]
                : block.extract.forward(ctx.require(PHRASES), image, ctx.require(PHRASE_MASK), positionsOf(block, image, ctx)); // phrases ← image tokens
              ctx.set(PHRASES, state);
              if (ctx.has(RECORD_STATES)) ctx.outputs[blockStateKey(path)] = state;
            }
            return block.inject && !afterSelfAttention ? inject(block, tokens as tf.Tensor3D, ctx) : tokens;
          },
        }),
      );
    }
    if (block.inject && afterSelfAttention) {
      removers.push(
        unet.addBlockHook(`${block.path}.fuser`, {
          postForward: (_path, tokens, ctx) => (ctx.has(ZERO_GATES) ? tokens : inject(block, tokens as tf.Tensor3D, ctx)),
        }),
      );
    }
  }

  removers.push(
    unet.addBlockHook((path) => levels.includes(path), {
      postForward: (level, _output, ctx) => {
        ctx.outputs[phraseStateKey(level)] = ctx.require(PHRASES);
      },
    }),
  );
  attached.set(unet, adapter);
  return {
    adapter,
    levels: [...levels],
    context(phrases, probes = {}) {
      const [b, p, d] = phrases.tensor.shape;
      if (d !== adapter.phraseDim)
        throw new Error(`PhraseAdapter: phrase features are [${phrases.tensor.shape}], expected width ${adapter.phraseDim} (the UNet's cross_attention_dim)`);
      if (phrases.mask.shape[0] !== b || phrases.mask.shape[1] !== p)
        throw new Error(`PhraseAdapter: phrase mask [${phrases.mask.shape}] does not match the phrases [${b}, ${p}]`);
      const context = new ForwardContext().set(PHRASES, phrases.tensor).set(PHRASE_MASK, phrases.mask);
      if (probes.zeroGates) context.set(ZERO_GATES, true);
      if (probes.recordStates) context.set(RECORD_STATES, true);
      if (probes.latentSize) context.set(LATENT_SIZE, probes.latentSize);
      if (probes.replayStates) {
        for (const block of adapter.blocks.filter((bl) => bl.extract)) {
          const state = probes.replayStates[block.path];
          if (!state)
            throw new Error(
              `EipaAttachment.context: replayStates has no phrase state of block '${block.path}'; pass blockStates(outputs) of a forward made with recordStates`,
            );
          if (state.shape.join() !== phrases.tensor.shape.join())
            throw new Error(
              `EipaAttachment.context: the replayed phrase state of '${block.path}' is [${state.shape}], the phrases [${phrases.tensor.shape}]; replay states of the same phrases`,
            );
        }
        context.set(REPLAY_STATES, probes.replayStates);
      }
      const caption = probes.caption;
      if (!caption) return context;
      const [cb, t, cd] = caption.tensor.shape;
      if (cb !== b || cd !== d || caption.mask.shape[0] !== b || caption.mask.shape[1] !== t) {
        throw new Error(
          `PhraseAdapter: caption tokens [${caption.tensor.shape}] with mask [${caption.mask.shape}] do not match the phrases [${phrases.tensor.shape}]; expected [${b}, T, ${d}] and [${b}, T]`,
        );
      }
      return context.set(CAPTION, caption.tensor).set(CAPTION_MASK, caption.mask);
    },
    phraseStates(outputs, phrases) {
      return levels.map((level) => {
        const state = outputs[phraseStateKey(level)];
        if (!state)
          throw new Error(
            `EipaAttachment: no phrase state of '${level}' in these outputs; were they produced by a forward of the adapted UNet with this attachment's context?`,
          );
        return { tensor: state as tf.Tensor3D, mask: phrases.mask };
      });
    },
    blockStates(outputs) {
      const states: Record<string, tf.Tensor3D> = {};
      for (const block of adapter.blocks.filter((b) => b.extract)) {
        const state = outputs[blockStateKey(block.path)];
        if (!state)
          throw new Error(
            `EipaAttachment.blockStates: no phrase state of block '${block.path}' in these outputs; make the forward's context with {recordStates: true}`,
          );
        states[block.path] = state as tf.Tensor3D;
      }
      return states;
    },
    attention(outputs) {
      const attention: Record<string, tf.Tensor3D> = {};
      for (const block of adapter.blocks) {
        const a = outputs[attentionKey(block.path)];
        if (a) attention[block.path] = a as tf.Tensor3D;
      }
      return attention;
    },
    detach() {
      if (removers.length === 0) return;
      for (const remove of removers.splice(0).reverse()) remove();
      attached.delete(unet);
    },
  };
}

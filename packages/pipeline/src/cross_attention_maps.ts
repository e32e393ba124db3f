/**
 * How well a frozen text-to-image backbone's own cross-attention localises phrases, before any
 * training: noise an image's latents, run one UNet forward conditioned on its caption while
 * recording the cross-attention probabilities, pool them per phrase into a map over the image,
 * threshold the map and score it against the phrase's ground-truth mask (IoU).
 */
import * as tf from '@tensorflow/tfjs-core';
import { batchMatMul, resize, seededNormal } from '@png/core';
import {
  AttnProcessor,
  DDPMScheduler,
  phrasePoolingMatrix,
  tokenizeNarratives,
  type AttentionProcessor,
  type DiffusionBackbone,
  type UNet2DConditionModel,
  type UNet2DConditionOutput,
  type UNetForwardOptions,
} from '@png/diffusion-backbone';
import { PngDataset, imageTensor, letterbox, unletterbox, type LetterboxTransform, type PngSample, type RgbImage, type SkippedRecord } from '@png/png-data';
import { maskIoU } from '@png/png-metrics';
import { DEFAULT_TRAINING_SETTINGS } from './benchmark_training';
import { noGroundedRecordError } from './benchmark_samples';

/** One UNet forward's output and the cross-attention probabilities it went through. */
export interface CrossAttentionRecording extends UNet2DConditionOutput {
  /**
   * Per cross-attention module, by path (`down_blocks.0.attentions.0.transformer_blocks.0.attn2`),
   * its attention probabilities averaged over heads: [B, h, w, M] over the M context tokens.
   */
  readonly crossAttention: Record<string, tf.Tensor4D>;
}

/**
 * `unet.forward(…)` with every cross-attention processor replaced, for this forward only, by one
 * that computes what AttnProcessor computes (the output is bit-identical) and also records its
 * probabilities averaged over heads. The processors in place before are restored afterwards, also
 * when the forward throws. Cross-attention must run the default AttnProcessor (an adapter's
 * processor, e.g. EIPA's dynamic prompt, is an error: detach it first). Caller owns the tensors.
 */
export function recordCrossAttention(
  unet: UNet2DConditionModel,
  sample: tf.Tensor4D,
  timestep: number | readonly number[] | tf.Tensor1D,
  encoderHiddenStates: tf.Tensor3D,
  options: UNetForwardOptions = {},
): CrossAttentionRecording {
  const previous = unet.attnProcessors();
  const crossAttention: Record<string, tf.Tensor4D> = {};
  const recording =
    (key: string, original: AttentionProcessor): AttentionProcessor =>
    (attn, hiddenStates, args) => {
      if (!attn.isCrossAttention) return original(attn, hiddenStates, args);
      if (original !== AttnProcessor)
        throw new Error(`recordCrossAttention: ${key} is not the default AttnProcessor (is an adapter attached?); detach it before recording`);
      const { encoderHiddenStates: tokens, encoderAttentionMask: mask, spatial } = args;
      if (!tokens || !spatial) throw new Error(`recordCrossAttention: ${attn.path} was called without context tokens or spatial size`);
      // AttnProcessor on a UNet cross-attention (no group norm, residual or output rescale), keeping the probabilities
      const { out, probs } = attn.attendWithProbs(
        attn.to_q.forward(hiddenStates) as tf.Tensor3D,
        attn.to_k.forward(tokens) as tf.Tensor3D,
        attn.to_v.forward(tokens) as tf.Tensor3D,
        mask,
      ); // probs [B, H, N, M]
      const [b, , , m] = probs.shape;
      crossAttention[attn.path] = tf.keep(tf.reshape(tf.mean(probs, 1), [b, spatial[0], spatial[1], m])); // [B, h, w, M]
      return attn.to_out.forward(out) as tf.Tensor3D; // [B, N, C]
    };
  unet.setAttnProcessor(Object.fromEntries(Object.entries(previous).map(([key, original]) => [key, recording(key, original)])));
  try {
    return { ...unet.forward(sample, timestep, encoderHiddenStates, options), crossAttention };
  } catch (e) {
    tf.dispose(Object.values(crossAttention));
    throw e;
  } finally {
    unet.setAttnProcessor(previous);
  }
}

export interface PhraseAttentionMapOptions {
  /** Diffusion timestep the latents are noised to (default 200). */
  readonly timestep?: number;
  /** Sample i of a call is noised with standard normal noise drawn with seed `seed + i` (default 0). */
  readonly seed?: number;
}

/** What {@link phraseAttentionMaps} returns; the caller owns `maps`. */
export interface PhraseAttentionMaps {
  /** Per sample, [P, H, W] in [0, 1]: each phrase's map rescaled from [min, max] to [0, 1] (all 0 for a truncated phrase). */
  readonly maps: tf.Tensor3D[];
  /** Per sample, the indices of its phrases left out because tokens of theirs fall beyond the text encoder's context. */
  readonly truncated: number[][];
}

/**
 * Where the backbone's cross-attention puts each phrase. The images' latents are noised to
 * `timestep` (DDPM forward process on the backbone's noise schedule) and run through the UNet
 * conditioned on their caption's CLIP hidden states (truncated to 77 tokens, as SD's pipeline
 * does). A phrase's map is the mean, over the tokens its character span covers, of the
 * head-averaged attention probabilities, bilinear-resized from each cross-attention layer to H×W,
 * averaged over layers and rescaled from its [min, max] to [0, 1]. Phrases with tokens beyond the truncation are left
 * out (`truncated`). images [B, H, W, 3] in [-1, 1] (H, W multiples of `backbone.imageMultiple`);
 * per caption, the character spans [start, end) of its phrases (`PngSample.narrative.phrases`).
 * Does not dispose `images`.
 */
export function phraseAttentionMaps(
  backbone: DiffusionBackbone,
  images: tf.Tensor4D,
  captions: readonly string[],
  phraseSpans: ReadonlyArray<ReadonlyArray<readonly [number, number]>>,
  options: PhraseAttentionMapOptions = {},
): PhraseAttentionMaps {
  if (captions.length === 0) throw new Error('phraseAttentionMaps: no captions; pass one caption and its phrase spans per image');
  const [b, height, width, channels] = images.shape;
  if (images.rank !== 4 || channels !== 3) throw new Error(`phraseAttentionMaps: images must be [B, H, W, 3], got [${images.shape}]`);
  if (b !== captions.length || phraseSpans.length !== captions.length) {
    throw new Error(`phraseAttentionMaps: ${b} images, ${captions.length} captions and ${phraseSpans.length} phrase-span lists; pass one of each per sample`);
  }
  const multiple = backbone.imageMultiple;
  if (height % multiple !== 0 || width % multiple !== 0)
    throw new Error(`phraseAttentionMaps: images are ${height}×${width} (H×W); both sides must be multiples of ${multiple} (the backbone's downsampling)`);
  const tokenized = tokenizeNarratives(
    backbone.tokenizer,
    captions.map((caption, i) => ({ caption, phrases: phraseSpans[i] })),
    Infinity,
  );
  const timestep = options.timestep ?? 200;
  const seed = options.seed ?? 0;

  // Phrase j of sample i pools its tokens' positions among the M context positions. The first
  // window of the chunked caption holds the same tokens at the same positions as the truncated
  // encoding; a phrase with a token in a later window is cut off by the truncation (no column).
  const contextLength = backbone.tokenizer.modelMaxLength;
  const p = Math.max(...phraseSpans.map((spans) => spans.length));
  const truncated = tokenized.map(({ phrases }) => phrases.flatMap((tokens, j) => (tokens.some((t) => t.window > 0) ? [j] : [])));
  const columns = tokenized.map(({ phrases }, i) => phrases.map((tokens, j) => (truncated[i].includes(j) ? [] : tokens.map((t) => t.position))));

  const scheduler = new DDPMScheduler(backbone.schedulerConfig);
  const { noisy, hiddenStates } = tf.tidy(() => {
    const latents = backbone.encodeImages(images); // [B, h, w, C]
    const [, h, w, c] = latents.shape;
    const noise = tf.concat(
      captions.map((_, i) => seededNormal([1, h, w, c], seed + i)),
      0,
    ) as tf.Tensor4D; // [B, h, w, C]
    return { noisy: scheduler.addNoise(latents, noise, new Array<number>(b).fill(timestep)), hiddenStates: backbone.encodeText(captions).hiddenStates };
  });
  let recording: CrossAttentionRecording;
  try {
    recording = recordCrossAttention(backbone.unet, noisy, timestep, hiddenStates);
  } finally {
    tf.dispose([noisy, hiddenStates]);
  }
  tf.dispose([recording.sample, recording.outputs]);
  const layers = Object.values(recording.crossAttention);
  const pool = tf.tidy(() => tf.transpose(tf.reshape(phrasePoolingMatrix(columns, p, contextLength), [b, p, contextLength]), [0, 2, 1]) as tf.Tensor3D); // [B·P, M] → [B, M, P]
  let sum = tf.zeros([b, height, width, p]) as tf.Tensor4D;
  try {
    for (const probs of layers) {
      // Pooling over tokens and resizing are both linear: pool at the layer's resolution, then resize.
      const next = tf.tidy(() => {
        const [, h, w, m] = probs.shape;
        const phraseProbs = batchMatMul(tf.reshape(probs, [b, h * w, m]) as tf.Tensor3D, pool); // [B, h·w, P]
        return tf.add(sum, resize(tf.reshape(phraseProbs, [b, h, w, p]) as tf.Tensor4D, [height, width], 'bilinear')) as tf.Tensor4D; // [B, H, W, P]
      });
      tf.dispose([sum, probs]);
      sum = next;
    }
    const maps = tf.tidy(() => {
      const normalised = minMaxNormalise(sum, [1, 2]); // [B, H, W, P]; also cancels the layer mean's 1/L
      const byPhrase = tf.transpose(normalised, [0, 3, 1, 2]); // [B, P, H, W]
      return phraseSpans.map(
        (spans, i) => tf.reshape(tf.slice(byPhrase, [i, 0, 0, 0], [1, spans.length, height, width]), [spans.length, height, width]) as tf.Tensor3D,
      ); // [P_i, H, W]
    });
    return { maps, truncated };
  } finally {
    tf.dispose([pool, sum, ...layers]);
  }
}

/**
 * The IoU of each phrase map with its ground-truth mask, at the image's original size. A pixel is
 * in a phrase's predicted mask when its value is above min + `threshold` · (max − min) of its map. maps [P, h, w]
 * are the image's model input (`transform` absent: h·w is the masks' size) or its letterboxed
 * canvas (cropped and bilinear-resized back, as the grounder's predictions are). `masks`: one
 * binary H·W mask per phrase (`PngSample.phrases[j].mask`). Does not dispose `maps`.
 */
export async function phraseMapIoUs(
  maps: tf.Tensor3D,
  masks: readonly Uint8Array[],
  options: { transform?: LetterboxTransform; threshold?: number } = {},
): Promise<number[]> {
  const [p, h, w] = maps.shape;
  const { transform, threshold = 0.5 } = options;
  if (masks.length !== p) throw new Error(`phraseMapIoUs: ${p} maps but ${masks.length} ground-truth masks`);
  const pixels = transform ? transform.height * transform.width : h * w;
  masks.forEach((mask, j) => {
    if (mask.length !== pixels)
      throw new Error(
        `phraseMapIoUs: mask ${j} has ${mask.length} pixels, expected ${pixels} (the image's ${transform ? `${transform.height}×${transform.width}` : `${h}×${w}`})`,
      );
  });
  const normalised = tf.tidy(() => minMaxNormalise(maps, [1, 2])); // [P, h, w], each map in [0, 1]
  let predicted: Uint8Array[];
  try {
    if (transform) {
      const canvas = tf.tidy(() => tf.expandDims(tf.transpose(normalised, [1, 2, 0]), 0) as tf.Tensor4D); // [1, S, S, P]
      predicted = await unletterbox(canvas, transform, { threshold });
      canvas.dispose();
    } else {
      const above = tf.greater(normalised, threshold); // [P, h, w] bool
      const values = (await above.data()) as Uint8Array;
      above.dispose();
      predicted = masks.map((_, j) => values.subarray(j * pixels, (j + 1) * pixels));
    }
  } finally {
    normalised.dispose();
  }
  return predicted.map((mask, j) => maskIoU(mask, masks[j]));
}

/** Mean IoU or phrase count, overall and by the benchmark's things / stuff split. */
export interface ThingStuffValues {
  readonly overall: number;
  readonly things: number;
  readonly stuff: number;
}

export interface CrossAttentionIoUOptions extends PhraseAttentionMapOptions {
  /** Default 'val2017'. */
  readonly split?: string;
  /** Score only the first `limit` records with grounded phrases. */
  readonly limit?: number;
  /** A pixel is in a phrase's predicted mask when its map value is above min + threshold · (max − min) (default 0.5). */
  readonly threshold?: number;
  /**
   * Canvas side that images whose sides are not multiples of `backbone.imageMultiple` are
   * letterboxed to (default: the training default, DEFAULT_TRAINING_SETTINGS.image_size).
   */
  readonly imageSize?: number;
  /** Samples per UNet forward (default 4). */
  readonly batchSize?: number;
  /** Called after each forward with the number of samples scored so far. */
  readonly onProgress?: (samples: number) => void;
}

export interface CrossAttentionIoUResult {
  /** Mean IoU over the scored phrases of each group (NaN for a group without phrases). */
  readonly meanIoU: ThingStuffValues;
  /** Phrases scored per group. */
  readonly phrases: ThingStuffValues;
  /** Phrases not scored because tokens of theirs fall beyond the text encoder's 77 tokens. */
  readonly skipped: number;
  /** Bad records of the split, left out (each with its index and the field at fault). */
  readonly skippedRecords: readonly SkippedRecord[];
}

/**
 * The mean IoU between the backbone's cross-attention map of every grounded phrase of a PNG
 * benchmark split (see {@link phraseAttentionMaps}) and the phrase's ground-truth mask (the union
 * of its segments), overall and for things and stuff. An image goes in at its stored size when
 * both sides are multiples of `backbone.imageMultiple`; otherwise it is letterboxed to `imageSize`
 * as in training and the maps are scored back at the original size. Records are streamed and
 * scored `batchSize` at a time; the k-th scored record is noised with seed `seed + k`, whatever
 * the batch size.
 */
export async function crossAttentionIoU(
  backbone: DiffusionBackbone,
  dataDir: string,
  options: CrossAttentionIoUOptions = {},
): Promise<CrossAttentionIoUResult> {
  const split = options.split ?? 'val2017';
  const batchSize = options.batchSize ?? 4;
  const imageSize = options.imageSize ?? DEFAULT_TRAINING_SETTINGS.image_size;
  const seed = options.seed ?? 0;
  const multiple = backbone.imageMultiple;
  if (options.limit !== undefined && !(Number.isInteger(options.limit) && options.limit > 0))
    throw new Error(`crossAttentionIoU: limit must be a positive integer, got ${options.limit}`);
  if (!(Number.isInteger(batchSize) && batchSize > 0)) throw new Error(`crossAttentionIoU: batchSize must be a positive integer, got ${batchSize}`);
  if (!(Number.isInteger(imageSize) && imageSize > 0 && imageSize % multiple === 0))
    throw new Error(`crossAttentionIoU: imageSize must be a positive multiple of ${multiple} (the backbone's downsampling), got ${imageSize}`);
  const threshold = options.threshold ?? 0.5;
  if (!(threshold >= 0 && threshold < 1)) throw new Error(`crossAttentionIoU: threshold must be in [0, 1) (a fraction of each map's range), got ${threshold}`);

  const storedSize = (image: RgbImage) => image.height % multiple === 0 && image.width % multiple === 0;
  const inputSize = (image: RgbImage) => (storedSize(image) ? `${image.height}×${image.width}` : `${imageSize}×${imageSize}`);
  const sums = { overall: 0, things: 0, stuff: 0 };
  const counts = { overall: 0, things: 0, stuff: 0 };
  let skipped = 0;
  let scored = 0;
  const score = async (batch: readonly PngSample[]): Promise<void> => {
    const transforms: Array<LetterboxTransform | undefined> = [];
    const images = tf.tidy(() => {
      const inputs = batch.map((s) => modelInput(s.image, storedSize(s.image) ? undefined : imageSize));
      transforms.push(...inputs.map((x) => x.transform));
      return tf.concat(
        inputs.map((x) => x.tensor),
        0,
      ) as tf.Tensor4D; // [B, H, W, 3]
    });
    let attention: PhraseAttentionMaps;
    try {
      attention = phraseAttentionMaps(
        backbone,
        images,
        batch.map((s) => s.narrative.caption),
        batch.map((s) => s.narrative.phrases),
        { timestep: options.timestep, seed: seed + scored },
      );
    } finally {
      images.dispose();
    }
    try {
      for (const [i, sample] of batch.entries()) {
        const ious = await phraseMapIoUs(
          attention.maps[i],
          sample.phrases.map((phrase) => phrase.mask),
          { transform: transforms[i], threshold },
        );
        sample.phrases.forEach((phrase, j) => {
          if (attention.truncated[i].includes(j)) {
            skipped++;
            return;
          }
          for (const group of ['overall', phrase.isThing ? 'things' : 'stuff'] as const) {
            sums[group] += ious[j];
            counts[group]++;
          }
        });
      }
    } finally {
      tf.dispose(attention.maps);
    }
    scored += batch.length;
    options.onProgress?.(scored);
  };

  const dataset = await PngDataset.open(dataDir, split, { onBadRecord: 'skip' });
  let batch: PngSample[] = [];
  let grounded = 0;
  for await (const sample of dataset.records()) {
    if (sample.phrases.length === 0) continue;
    // a forward takes images of one size
    if (batch.length === batchSize || (batch.length > 0 && inputSize(batch[0].image) !== inputSize(sample.image))) {
      await score(batch);
      batch = [];
    }
    batch.push(sample);
    if (++grounded === options.limit) break;
  }
  if (batch.length > 0) await score(batch);
  if (grounded === 0) throw noGroundedRecordError(dataDir, split, dataset.skipped, dataset.dropped);
  const mean = (group: keyof ThingStuffValues) => sums[group] / counts[group];
  return {
    meanIoU: { overall: mean('overall'), things: mean('things'), stuff: mean('stuff') },
    phrases: counts,
    skipped,
    skippedRecords: [...dataset.skipped],
  };
}

/** An image as a model input [1, H, W, 3] in [-1, 1]: as stored, or letterboxed to `canvas` (with its transform). */
function modelInput(image: RgbImage, canvas: number | undefined): { tensor: tf.Tensor4D; transform?: LetterboxTransform } {
  if (canvas !== undefined) return letterbox(image, canvas);
  return { tensor: imageTensor(image) };
}

/** x rescaled over `axes` from its [min, max] to [0, 1] (a constant map becomes 0). Call inside tf.tidy. */
function minMaxNormalise<T extends tf.Tensor>(x: T, axes: number[]): T {
  const min = tf.min(x, axes, true);
  return tf.divNoNan(tf.sub(x, min), tf.sub(tf.max(x, axes, true), min)) as T;
}

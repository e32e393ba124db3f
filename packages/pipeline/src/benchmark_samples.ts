/**
 * PNG benchmark samples as model inputs: letterboxed images, their frozen VAE latents and CLIP
 * phrase features (computed once: the backbone never changes) and the phrase masks on the canvas.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { CaptionTokens, FeatureMap, PhraseFeatures } from '@png/core';
import { encodePhrases, type Narrative } from '@png/diffusion-backbone';
import { PngDataset, letterbox, masksToTarget, type LetterboxTransform, type PngSample } from '@png/png-data';
import { describeDrops } from '@png/png-metrics';
import { phraseEncoding, type PngGrounder } from './png_grounder';

/**
 * Records of a split that have at least one grounded phrase, in file order (at most `limit`), with
 * the bad records skipped and the records the official pre-processing drops.
 */
export async function readGroundedSamples(
  root: string,
  split: string,
  options: { limit?: number; onBadRecord?: 'skip' | 'throw' } = {},
): Promise<{ samples: PngSample[]; skipped: PngDataset['skipped']; dropped: PngDataset['dropped'] }> {
  const dataset = await PngDataset.open(root, split, { onBadRecord: options.onBadRecord ?? 'skip' });
  const samples: PngSample[] = [];
  for await (const sample of dataset.records()) {
    if (sample.phrases.length === 0) continue;
    samples.push(sample);
    if (options.limit !== undefined && samples.length >= options.limit) break;
  }
  if (samples.length === 0) throw noGroundedRecordError(root, split, dataset.skipped, dataset.dropped);
  return { samples, skipped: dataset.skipped, dropped: dataset.dropped };
}

/** The error for a split none of whose records has a grounded phrase, with the first bad record skipped and the first dropped. */
export function noGroundedRecordError(root: string, split: string, skipped: PngDataset['skipped'], dropped: PngDataset['dropped'] = []): Error {
  const notes = [
    ...(skipped.length ? [`${skipped.length} bad records skipped; first: ${skipped[0].reason}`] : []),
    ...(dropped.length ? [`${describeDrops(dropped)}; first: ${dropped[0].message}`] : []),
  ];
  return new Error(`${root}: split ${split} has no record with a grounded phrase${notes.length ? ` (${notes.join('; ')})` : ''}`);
}

/** The model-side view of samples, all phrases padded to `maxPhrases`. Owns its tensors. */
export interface EncodedSamples {
  /** [N, S/f, S/f, C] frozen VAE latents of the letterboxed images. */
  readonly latents: tf.Tensor4D;
  /** [N, S/s, S/s, C_s] frozen VAE encoder maps of the grounder's skip levels (finer mask_stride), coarsest first; [] by default. */
  readonly skips: FeatureMap[];
  /** [N, maxPhrases, D] frozen phrase features and the [N, maxPhrases] mask (when the grounder reads them, the caption tokens [N, K·L, D], K the most windows of a caption). */
  readonly phrases: PhraseFeatures;
  /** [N, S, S, maxPhrases] phrase masks on the canvas (false for padding), bool: one byte a pixel (3,000 narratives at 96×96 and 10 phrases: 276 MB; 1.1 GB as float32). */
  readonly targets: tf.Tensor4D;
  /** Per sample, the number of phrases it was given (≤ maxPhrases). */
  readonly phraseCounts: number[];
  readonly transforms: LetterboxTransform[];
}

/**
 * Encodes `samples` (images letterboxed to `size`) through the grounder's frozen backbone
 * (`grounder.encodeImages`, `grounder.encodePhrases`'s encoder with its windows, and the caption
 * tokens when it reads them: `phraseEncoding(grounder.config)`), `chunk` at a time. A sample with
 * more than `maxPhrases` phrases keeps its first `maxPhrases`; `truncated` counts the phrases left out.
 */
export function encodeSamples(
  grounder: PngGrounder,
  samples: readonly PngSample[],
  options: { size: number; maxPhrases: number; chunk?: number },
): EncodedSamples & { truncated: number } {
  const { size, maxPhrases } = options;
  const { backbone } = grounder;
  const chunk = options.chunk ?? 16;
  if (size % backbone.imageMultiple !== 0)
    throw new Error(`image size ${size} is not a multiple of ${backbone.imageMultiple} (the backbone's downsampling); choose a multiple of it`);
  const { windows, caption, sentence } = phraseEncoding(grounder.config);
  // every chunk's caption tokens padded to the most windows of any caption, so that they concatenate
  const captionWindows = caption ? Math.max(...samples.map((s) => backbone.tokenizer.chunk(s.narrative.caption, windows).windows.length)) : undefined;
  const parts: {
    latents: tf.Tensor4D[];
    skips: FeatureMap[][];
    phrases: tf.Tensor3D[];
    masks: tf.Tensor2D[];
    sentences: tf.Tensor3D[];
    targets: tf.Tensor4D[];
    captions: CaptionTokens[];
  } = {
    latents: [],
    skips: [],
    phrases: [],
    masks: [],
    sentences: [],
    targets: [],
    captions: [],
  };
  const transforms: LetterboxTransform[] = [];
  const phraseCounts: number[] = [];
  let truncated = 0;
  try {
    for (let start = 0; start < samples.length; start += chunk) {
      const group = samples.slice(start, start + chunk);
      const narratives: Narrative[] = group.map((s) => {
        truncated += Math.max(0, s.narrative.phrases.length - maxPhrases);
        return { caption: s.narrative.caption, phrases: s.narrative.phrases.slice(0, maxPhrases) };
      });
      tf.tidy(() => {
        const images = group.map((s) => {
          const { tensor, transform } = letterbox(s.image, size);
          transforms.push(transform);
          return tensor;
        });
        const { latents, skips } = grounder.encodeImages(tf.concat(images, 0) as tf.Tensor4D);
        parts.latents.push(tf.keep(latents));
        parts.skips.push(skips.map((s) => ({ ...s, tensor: tf.keep(s.tensor) })));
        const features = encodePhrases(backbone.tokenizer, backbone.textEncoder, narratives, {
          maxPhrases,
          padTo: maxPhrases,
          windows,
          caption,
          captionWindows,
          sentence,
        });
        parts.phrases.push(tf.keep(features.tensor));
        parts.masks.push(tf.keep(features.mask));
        if (features.sentence) parts.sentences.push(tf.keep(features.sentence));
        const c = features.caption;
        if (c) parts.captions.push({ tensor: tf.keep(c.tensor), mask: tf.keep(c.mask), spans: tf.keep(c.spans) });
        const targets = group.map((s, i) => {
          const masks = s.phrases.slice(0, maxPhrases).map((p) => p.mask);
          phraseCounts.push(masks.length);
          const t = masksToTarget(masks, transforms[start + i]); // [1, S, S, p]
          return tf.pad(t, [
            [0, 0],
            [0, 0],
            [0, 0],
            [0, maxPhrases - masks.length],
          ]);
        });
        parts.targets.push(tf.keep(tf.cast(tf.concat(targets, 0), 'bool') as tf.Tensor4D));
      });
    }
    const out = tf.tidy(() => ({
      latents: tf.concat(parts.latents, 0) as tf.Tensor4D,
      skips: (parts.skips[0] ?? []).map((level, i) => ({
        ...level,
        tensor: tf.concat(
          parts.skips.map((chunkSkips) => chunkSkips[i].tensor),
          0,
        ) as tf.Tensor4D,
      })),
      phrases: {
        tensor: tf.concat(parts.phrases, 0) as tf.Tensor3D,
        mask: tf.concat(parts.masks, 0) as tf.Tensor2D,
        ...(parts.sentences.length ? { sentence: tf.concat(parts.sentences, 0) as tf.Tensor3D } : {}),
        ...(parts.captions.length
          ? {
              caption: {
                tensor: tf.concat(
                  parts.captions.map((c) => c.tensor),
                  0,
                ) as tf.Tensor3D,
                mask: tf.concat(
                  parts.captions.map((c) => c.mask),
                  0,
                ) as tf.Tensor2D,
                spans: tf.concat(
                  parts.captions.map((c) => c.spans),
                  0,
                ) as tf.Tensor3D,
              },
            }
          : {}),
      },
      targets: tf.concat(parts.targets, 0) as tf.Tensor4D,
    }));
    return { ...out, phraseCounts, transforms, truncated };
  } finally {
    tf.dispose([parts.latents, parts.skips, parts.phrases, parts.masks, parts.sentences, parts.targets, parts.captions]);
  }
}

/** The samples at `indices`, their phrases cut to the batch's largest real count. Caller owns. */
export function gatherBatch(
  encoded: EncodedSamples,
  indices: readonly number[],
): { latents: tf.Tensor4D; skips: FeatureMap[]; phrases: PhraseFeatures; targets: tf.Tensor4D } {
  const p = Math.max(...indices.map((i) => encoded.phraseCounts[i]));
  return tf.tidy(() => {
    const at = tf.tensor1d([...indices], 'int32');
    const phrases = tf.gather(encoded.phrases.tensor, at); // [B, maxPhrases, D]
    const mask = tf.gather(encoded.phrases.mask, at); // [B, maxPhrases]
    const targets = tf.gather(encoded.targets, at); // [B, S, S, maxPhrases]
    const { caption, sentence } = encoded.phrases;
    return {
      latents: tf.gather(encoded.latents, at) as tf.Tensor4D,
      skips: encoded.skips.map((s) => ({ ...s, tensor: tf.gather(s.tensor, at) as tf.Tensor4D })),
      phrases: {
        tensor: tf.slice(phrases, [0, 0, 0], [-1, p, -1]) as tf.Tensor3D,
        mask: tf.slice(mask, [0, 0], [-1, p]) as tf.Tensor2D,
        ...(sentence ? { sentence: tf.slice(tf.gather(sentence, at), [0, 0, 0], [-1, p, -1]) as tf.Tensor3D } : {}), // [B, maxPhrases, D] → [B, p, D]
        ...(caption
          ? {
              caption: {
                tensor: tf.gather(caption.tensor, at) as tf.Tensor3D, // [B, K·L, D]
                mask: tf.gather(caption.mask, at) as tf.Tensor2D, // [B, K·L]
                spans: tf.slice(tf.gather(caption.spans, at), [0, 0, 0], [-1, p, -1]) as tf.Tensor3D, // [B, maxPhrases, 2] → [B, p, 2]
              },
            }
          : {}),
      },
      targets: tf.cast(tf.slice(targets, [0, 0, 0, 0], [-1, -1, -1, p]), 'float32') as tf.Tensor4D, // [B, S, S, maxPhrases] → [B, S, S, p], 0/1
    };
  });
}

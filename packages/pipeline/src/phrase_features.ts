import * as tf from '@tensorflow/tfjs-core';
import type { PhraseFeatures } from '@png/core';
import type { CLIPTextModel, CLIPTokenizer } from '@png/diffusion-backbone';

/** A narrative and the character spans [start, end) of its noun phrases in the caption. */
export interface Narrative {
  readonly caption: string;
  readonly phrases: ReadonlyArray<readonly [number, number]>;
}

/** Checks a batch of narratives; errors name the narrative and phrase at fault. */
export function validateNarratives(narratives: readonly Narrative[], maxPhrases: number): void {
  if (narratives.length === 0) throw new Error('no narratives: pass at least one {caption, phrases}');
  narratives.forEach((n, i) => {
    if (typeof n.caption !== 'string' || n.caption.trim() === '') throw new Error(`narrative ${i}: the caption is empty; a narrative needs text to ground`);
    if (!Array.isArray(n.phrases) || n.phrases.length === 0) throw new Error(`narrative ${i}: 0 phrases; give at least one noun-phrase span`);
    if (n.phrases.length > maxPhrases) throw new Error(`narrative ${i}: ${n.phrases.length} phrases, above the configured maximum of ${maxPhrases} (max_phrases)`);
    n.phrases.forEach(([start, end], j) => {
      if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && end > start && end <= n.caption.length)) {
        throw new Error(`narrative ${i}, phrase ${j}: span [${start}, ${end}) is not a non-empty range inside the ${n.caption.length}-character caption`);
      }
      if (n.caption.slice(start, end).trim() === '') throw new Error(`narrative ${i}, phrase ${j}: span [${start}, ${end}) holds only white space`);
    });
  });
}

/**
 * Phrase features: each phrase is the mean of the CLIP hidden states of the tokens its character
 * span covers. Captions longer than 75 tokens are encoded in windows (CLIPTokenizer.chunk), so a
 * phrase anywhere in a long narrative gets its contextual features. Returns [B, P, D] with
 * P = the largest phrase count of the batch (or `padTo`) and the [B, P] mask; caller owns them.
 */
export function encodePhrases(tokenizer: CLIPTokenizer, textEncoder: CLIPTextModel, narratives: readonly Narrative[], options: { maxPhrases: number; padTo?: number }): PhraseFeatures {
  validateNarratives(narratives, options.maxPhrases);
  const p = options.padTo ?? Math.max(...narratives.map((n) => n.phrases.length));
  const chunks = narratives.map((n) => tokenizer.chunk(n.caption));
  const windows = chunks.flatMap((c) => c.windows);
  const firstWindow: number[] = [];
  chunks.reduce((offset, c) => (firstWindow.push(offset), offset + c.windows.length), 0);
  const tokens = narratives.map((n, i) =>
    n.phrases.map(([start, end], j) => {
      const positions = chunks[i].tokenOfChar(start, end);
      if (positions.length === 0) throw new Error(`narrative ${i}, phrase ${j}: span [${start}, ${end}) ("${n.caption.slice(start, end)}") covers no token`);
      return positions.map(({ window, position }) => (firstWindow[i] + window) * tokenizer.modelMaxLength + position);
    }),
  );
  return tf.tidy(() => {
    const { lastHiddenState } = textEncoder.forward(tf.tensor2d(windows, undefined, 'int32')); // [W, L, D]
    const d = lastHiddenState.shape[2];
    const flat = tf.reshape(lastHiddenState, [-1, d]); // [W·L, D]
    // A [B·P, W·L] pooling matrix averages each phrase's tokens; padding rows are zero.
    const pool = new Float32Array(narratives.length * p * flat.shape[0]);
    tokens.forEach((phrases, i) =>
      phrases.forEach((ids, j) => {
        for (const t of ids) pool[(i * p + j) * flat.shape[0] + t] = 1 / ids.length;
      }),
    );
    const pooled = tf.matMul(tf.tensor2d(pool, [narratives.length * p, flat.shape[0]]), flat); // [B·P, D]
    const mask = narratives.map((n) => Array.from({ length: p }, (_, j) => (j < n.phrases.length ? 1 : 0)));
    return { tensor: tf.reshape(pooled, [narratives.length, p, d]) as tf.Tensor3D, mask: tf.tensor2d(mask, [narratives.length, p], 'float32') };
  });
}

/**
 * Which narratives the official pre-processing keeps, and which caption words each utterance
 * stands for (spec §1.5; PNG's `data/pre_process.py`, PPMN's `utils/pre_process.py`).
 *
 * The official code never looks for an utterance in the caption. It tokenises the caption with
 * BERT's basic tokeniser, tokenises every utterance the same way and gives the utterances the
 * caption's words in order, by count. For the first `n't` of an utterance it tokenises the text
 * before and after it separately and puts the two words `'` and `t` in between, which is how
 * Localized Narratives' "ca n't" counts as the caption's "can't". If the counts differ the
 * narrative is dropped. So case, accents, spacing and spacing around punctuation may differ between
 * an utterance and the caption; the words of an utterance are the caption words at its positions.
 */
import { basicTokenize, type BasicToken } from './basic_tokenizer';

/** Why the official pre-processing leaves a narrative out. */
export type NarrativeDropReason = 'empty caption' | 'word count mismatch';

/** Every {@link NarrativeDropReason}, in the order reports list them. */
export const NARRATIVE_DROP_REASONS: readonly NarrativeDropReason[] = ['empty caption', 'word count mismatch'];

/** A narrative the official pre-processing drops, and the words that decided it. */
export interface NarrativeDrop {
  readonly reason: NarrativeDropReason;
  /** What differs, for a person: word counts and the first utterance whose words differ. */
  readonly detail: string;
}

/**
 * The caption span of every utterance, or why the narrative is dropped. A span is [start, end) in
 * UTF-16 offsets, from the first to the end of the last caption word given to the utterance
 * (an utterance with no word gets the empty span where its words would start).
 */
export type UtteranceAlignment =
  | { readonly spans: [number, number][]; readonly drop?: undefined }
  | { readonly spans?: undefined; readonly drop: NarrativeDrop };

/**
 * Gives the utterances the caption's words in order, as the official pre-processing does.
 * Drops the narrative where it would: an empty caption (no word; the official code drops it for
 * the count, or, if every utterance is empty too, for having no grounded word), or word counts
 * that differ.
 */
export function alignUtterances(caption: string, utterances: readonly string[]): UtteranceAlignment {
  const captionWords = basicTokenize(caption);
  if (captionWords.length === 0) return { drop: { reason: 'empty caption', detail: `the caption ${JSON.stringify(caption)} has no word` } };
  const words = utterances.map(utteranceWords);
  const total = words.reduce((sum, w) => sum + w.length, 0);
  if (total !== captionWords.length) {
    return { drop: { reason: 'word count mismatch', detail: describeMismatch(captionWords, utterances, words, total) } };
  }
  let next = 0;
  const spans = words.map((w): [number, number] => {
    const at = next < captionWords.length ? captionWords[next].start : caption.length;
    next += w.length;
    return w.length === 0 ? [at, at] : [at, captionWords[next - 1].end];
  });
  return { spans };
}

/** The words the official code counts for one utterance: BERT basic words, with the first `n't` split off as `'` and `t`. */
function utteranceWords(utterance: string): string[] {
  // Python finds "n't" in the lower-cased text and cuts the original text at that code-point
  // index; lower-casing changes the length of "İ" (one code point, two when lower-cased), so
  // cut at code points of the lower-cased text as Python does.
  const lowered = utterance.toLowerCase();
  const at = lowered.indexOf("n't");
  if (at < 0) return basicTokenize(utterance).map((t) => t.text);
  const cut = [...lowered.slice(0, at)].length;
  const codePoints = [...utterance];
  const before = basicTokenize(codePoints.slice(0, cut).join('')).map((t) => t.text);
  const after = basicTokenize(codePoints.slice(cut + 3).join('')).map((t) => t.text);
  return [...before, "'", 't', ...after];
}

/** Word counts, and the first utterance whose words are not the caption's at the same positions. */
function describeMismatch(captionWords: readonly BasicToken[], utterances: readonly string[], words: readonly string[][], total: number): string {
  const counts = `the caption has ${captionWords.length} words (BERT basic tokenisation) and its utterances ${total}`;
  let next = 0;
  for (const [k, w] of words.entries()) {
    const theirs = captionWords.slice(next, next + w.length).map((t) => t.text);
    // Before a split-off "n't" the utterance has "ca"/"do" where the caption has "can"/"don".
    const same = w.length === theirs.length && w.every((word, i) => word === theirs[i] || (w[i + 1] === "'" && w[i + 2] === 't' && theirs[i] === `${word}n`));
    if (!same)
      return `${counts}; they part at utterance ${k} ${JSON.stringify(utterances[k])}: words ${JSON.stringify(w)}, the caption has ${JSON.stringify(theirs)} there`;
    next += w.length;
  }
  return `${counts}; the caption's words from word ${next} on (${JSON.stringify(captionWords.slice(next).map((t) => t.text))}) are in no utterance`;
}

/** The number of narratives per drop reason (every reason present, 0 if none). */
export function countDrops(drops: readonly { readonly reason: NarrativeDropReason }[]): Record<NarrativeDropReason, number> {
  const counts = Object.fromEntries(NARRATIVE_DROP_REASONS.map((r) => [r, 0])) as Record<NarrativeDropReason, number>;
  for (const { reason } of drops) counts[reason]++;
  return counts;
}

/**
 * One line for people, e.g. `3 narratives dropped as the official pre-processing drops them (not
 * evaluated): 2 word count mismatch, 1 empty caption`; '' if there are none.
 */
export function describeDrops(drops: readonly { readonly reason: NarrativeDropReason }[]): string {
  if (drops.length === 0) return '';
  const counts = countDrops(drops);
  const parts = NARRATIVE_DROP_REASONS.filter((r) => counts[r] > 0).map((r) => `${counts[r]} ${r}`);
  return `${drops.length} narrative${drops.length > 1 ? 's' : ''} dropped as the official pre-processing drops them (not evaluated): ${parts.join(', ')}`;
}

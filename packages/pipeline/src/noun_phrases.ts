/**
 * Noun phrases of a free-form narrative (Localized-Narratives style), as character spans of the
 * caption: the `phrases` of a `Narrative` (@png/diffusion-backbone) for a caption without annotated chunks.
 *
 * compromise tags the words (part of speech, exact character offsets); a small grammar over those
 * tags then builds the phrases, because compromise's own noun chunks join coordinated phrases
 * ("the grass and a person") and take pronouns in ("this picture we"). A phrase is
 *
 *     determiner* modifier* noun+        ("the grass", "two yellow rings", "a man's hat")
 *
 * where determiners are articles, demonstratives and possessive pronouns ("his dog"), modifiers
 * are numbers, adjectives and possessive nouns, and the nouns exclude pronouns. Words joined by a
 * hyphen are one word ("a black-and-white dog"); punctuation between two words ends a phrase.
 * Then:
 * - "a group of white triangles": a quantity noun (group, bunch, pair, row, …) takes the phrase
 *   after its "of" into its own, as the synthetic benchmark's narratives chunk it;
 * - compromise's tags are corrected where narratives trip them: prepositions are never part of a
 *   phrase ("a ring in front"); a plain verb right after an article or modifier is the head noun
 *   ("a green ring", "white rings in"); a noun-tagged "-ing" word before a determiner or modifier
 *   is a verb unless it opens its phrase after a determiner or modifier ("a woman holding a cup" →
 *   "a woman", "a cup"; but "the building"); and in a clause without a verb, a plural noun that
 *   ends a phrase right after a singular one is the clause's verb ("a tangerine rhombus bobs on the
 *   water" → "a tangerine rhombus"; "the apple trees grow" keeps "the apple trees");
 * - dropped: the image itself ("this picture", "the image": the/this + picture, image, photo, …;
 *   "a picture on the wall" stays) and positions in the frame ("the left side", "the front",
 *   "the bottom right corner": phrases made only of position words after their determiners;
 *   "a black top" stays). "the background" and "the foreground" stay: they are regions of the image.
 */
import nlp from 'compromise';

/** Head nouns that name the photograph itself when they follow "the" or "this". */
const IMAGE_NOUNS = new Set(['picture', 'image', 'photo', 'photograph', 'pic', 'snapshot', 'screenshot']);
const IMAGE_DETERMINERS = new Set(['the', 'this']);
/** Words that name a place in the frame; a phrase made only of these (after determiners) is dropped. */
const POSITION_WORDS = new Set(['front', 'back', 'bottom', 'top', 'middle', 'center', 'centre', 'left', 'right', 'side', 'corner']);
/** Words compromise tags as nouns that point at nothing: deictic adverbs, "each other", indefinite pronouns. */
const NOT_NOUNS = new Set([
  'here',
  'there',
  'each',
  'other',
  'others',
  'someone',
  'somebody',
  'something',
  'anyone',
  'anybody',
  'anything',
  'everyone',
  'everybody',
  'everything',
  'nobody',
  'nothing',
  'none',
]);
/** Prepositions, which compromise sometimes tags as adjectives or nouns ("a ring near trees", "a ring in front"). */
const PREPOSITIONS = new Set([
  'in',
  'on',
  'at',
  'of',
  'to',
  'from',
  'with',
  'by',
  'into',
  'onto',
  'upon',
  'near',
  'behind',
  'beside',
  'between',
  'among',
  'above',
  'below',
  'under',
  'beneath',
  'underneath',
  'inside',
  'outside',
  'around',
  'along',
  'across',
  'over',
  'through',
  'against',
  'towards',
  'toward',
  'within',
  'without',
]);
const ARTICLES = new Set(['a', 'an', 'the']);
/** Quantity nouns whose "of" complement belongs to their phrase ("a group of people"). */
const QUANTITY_NOUNS = new Set([
  'group',
  'groups',
  'bunch',
  'bunches',
  'pair',
  'pairs',
  'couple',
  'lot',
  'lots',
  'number',
  'set',
  'sets',
  'row',
  'rows',
  'line',
  'lines',
  'pile',
  'piles',
  'stack',
  'stacks',
  'crowd',
  'herd',
  'flock',
  'bundle',
  'cluster',
  'collection',
]);

/** The fields of a term of compromise's `.json({ offset: true, terms: { offset: true } })` read here. */
interface TermJson {
  pre: string;
  post: string;
  normal: string;
  tags: string[];
  offset: { start: number; length: number };
}

/** `verb`: a plain present-tense verb, which is a mis-tagged noun right after an article or modifier. */
type WordKind = 'determiner' | 'modifier' | 'noun' | 'verb' | 'other';

/** A word of a sentence: one term, or terms joined by hyphens; [start, end) in the caption. */
interface Word {
  start: number;
  end: number;
  normal: string;
  kind: WordKind;
  pre: string;
  post: string;
  tags: ReadonlySet<string>;
}

/**
 * The character spans [start, end) of the noun phrases of `caption`, in caption order and
 * non-overlapping; each span starts and ends on a word, with its determiner, numbers and adjectives
 * ("two dogs", "the grass", "a small red circle") and without surrounding punctuation or spaces.
 * The rules are in the module comment.
 * @throws if the caption is empty or only white space.
 */
export function findNounPhrases(caption: string): [number, number][] {
  if (caption.trim() === '') throw new Error('findNounPhrases: the caption is empty; pass the narrative text whose noun phrases to find');
  const sentences: { terms: TermJson[] }[] = nlp(caption).json({ offset: true, terms: { offset: true } });
  const spans: [number, number][] = [];
  for (const sentence of sentences) {
    const words = toWords(sentence.terms);
    for (const [first, end] of mergeQuantities(words, phraseRanges(words)).map((range) => withoutClauseVerb(words, range))) {
      if (!isImageOrPosition(words.slice(first, end))) spans.push([words[first].start, words[end - 1].end]);
    }
  }
  return spans;
}

function toWords(terms: readonly TermJson[]): Word[] {
  const words: Word[] = [];
  let hyphenated = false;
  for (const term of terms) {
    const word: Word = {
      start: term.offset.start,
      end: term.offset.start + term.offset.length,
      normal: term.normal,
      kind: kindOf(term),
      pre: term.pre,
      post: term.post,
      tags: new Set(term.tags),
    };
    const previous = words[words.length - 1];
    if (hyphenated && term.pre === '') {
      // The group takes the kind of its last part: "black-and-white" is an adjective.
      words[words.length - 1] = { ...word, start: previous.start, normal: `${previous.normal}-${word.normal}`, pre: previous.pre };
    } else {
      words.push(word);
    }
    hyphenated = term.post === '-';
  }
  return words;
}

function kindOf(term: TermJson): WordKind {
  const tags = new Set(term.tags);
  // Implicit words of contractions ("there's" → there + is) have no characters of their own.
  if (term.offset.length === 0 || PREPOSITIONS.has(term.normal)) return 'other';
  if (tags.has('Pronoun')) return tags.has('Possessive') ? 'determiner' : 'other';
  if (tags.has('Determiner')) return 'determiner';
  if (tags.has('Possessive') || tags.has('Value') || tags.has('Adjective')) return 'modifier';
  if (tags.has('Noun')) return NOT_NOUNS.has(term.normal) ? 'other' : 'noun';
  const inflected = ['Copula', 'Modal', 'Auxiliary', 'Gerund', 'PastTense', 'Participle'].some((t) => tags.has(t));
  return tags.has('Verb') && !inflected ? 'verb' : 'other';
}

/** Whether two neighbouring words may share a phrase: only white space between them. */
function joinable(a: Word, b: Word): boolean {
  return /^\s*$/.test(a.post) && /^\s*$/.test(b.pre);
}

/** Word ranges [first, end) of the phrases of a sentence, left to right, each as long as it can be. */
function phraseRanges(words: readonly Word[]): [number, number][] {
  const ranges: [number, number][] = [];
  let i = 0;
  while (i < words.length) {
    const end = phraseEnd(words, i);
    if (end > i) {
      ranges.push([i, end]);
      i = end;
    } else {
      i++;
    }
  }
  return ranges;
}

/** The end of the phrase `determiner* modifier* noun+` that starts at word `i`, or `i` if none does. */
function phraseEnd(words: readonly Word[], i: number): number {
  let k = i;
  const continues = (kind: WordKind): boolean => k < words.length && words[k].kind === kind && (k === i || joinable(words[k - 1], words[k]));
  while (continues('determiner')) k++;
  while (continues('modifier')) k++;
  const head = k;
  // "a green ring", "white rings in": compromise tags these nouns as verbs after an adjective.
  if (k > i && continues('verb') && (words[k - 1].kind === 'modifier' || ARTICLES.has(words[k - 1].normal))) k++;
  // An -ing word opens a phrase only after its determiner or modifiers ("the building").
  while (continues('noun') && !(isVerbalIng(words, k) && (k > head || head === i))) k++;
  return k > head ? k : i;
}

/** "holding" in "a woman holding a cup": an -ing word right before a determiner or modifier. */
function isVerbalIng(words: readonly Word[], k: number): boolean {
  const next = words[k + 1];
  return words[k].normal.endsWith('ing') && next !== undefined && joinable(words[k], next) && (next.kind === 'determiner' || next.kind === 'modifier');
}

/**
 * The range without its last word when that word is the verb of a clause that has no other: a
 * plural noun right after a singular noun ("a rhombus bobs", "a person walks"), in a clause
 * (between punctuation and conjunctions) where no word is tagged a verb.
 */
function withoutClauseVerb(words: readonly Word[], [first, end]: [number, number]): [number, number] {
  const last = words[end - 1];
  const before = words[end - 2];
  if (end - first < 2 || !last.tags.has('Plural') || !before.tags.has('Singular') || before.kind !== 'noun') return [first, end];
  const boundary = (w: Word) => w.tags.has('Conjunction') || /[.,;:!?]/.test(w.post);
  let from = first;
  while (from > 0 && !boundary(words[from - 1])) from--;
  let to = end - 1;
  while (to < words.length - 1 && !boundary(words[to])) to++;
  const clause = words.slice(from, to + 1);
  return clause.some((w) => w !== last && w.tags.has('Verb')) ? [first, end] : [first, end - 1];
}

/** Joins "a group" + "of" + "white triangles" into one range. */
function mergeQuantities(words: readonly Word[], ranges: readonly [number, number][]): [number, number][] {
  const merged: [number, number][] = [];
  for (const [first, end] of ranges) {
    const previous = merged[merged.length - 1];
    const of = previous?.[1];
    if (
      of !== undefined &&
      first === of + 1 &&
      words[of].normal === 'of' &&
      QUANTITY_NOUNS.has(words[of - 1].normal) &&
      joinable(words[of - 1], words[of]) &&
      joinable(words[of], words[first])
    ) {
      previous[1] = end;
    } else {
      merged.push([first, end]);
    }
  }
  return merged;
}

function isImageOrPosition(phrase: readonly Word[]): boolean {
  const head = phrase[phrase.length - 1];
  if (IMAGE_NOUNS.has(head.normal) && IMAGE_DETERMINERS.has(phrase[0].normal)) return true;
  return phrase.every((w) => w.kind === 'determiner' || POSITION_WORDS.has(w.normal));
}

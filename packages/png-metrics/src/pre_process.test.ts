import { alignUtterances, countDrops, describeDrops } from './pre_process';

/** The caption text of every utterance's span. */
function aligned(caption: string, utterances: string[]): string[] {
  const { spans, drop } = alignUtterances(caption, utterances);
  if (!spans) throw new Error(`dropped: ${drop.detail}`);
  return spans.map(([start, end]) => caption.slice(start, end));
}

describe('alignUtterances (the official pre-processing: BERT basic word counts)', () => {
  test('the real record quoted in PPMN utils/pre_process.py: lower-cased utterances', () => {
    const caption = 'In this picture we can able to see a black bear on this tree.';
    const utterances = ['in this', 'picture', 'we can able to see a', 'black bear', 'on this', 'tree', '.'];
    expect(aligned(caption, utterances)).toEqual(['In this', 'picture', 'we can able to see a', 'black bear', 'on this', 'tree', '.']);
  });

  test('"n\'t" split off as in Localized Narratives', () => {
    expect(aligned("I can't see a dog, it isn't there.", ['I ca', "n't see", 'a dog', ', it is', "n't there ."])).toEqual([
      'I can',
      "'t see",
      'a dog',
      ', it isn',
      "'t there.",
    ]);
    expect(aligned("We can't see the dog.", ["We ca n't see", 'the dog', '.'])).toEqual(["We can't see", 'the dog', '.']);
    expect(aligned("We don't see the dogs.", ["We do n't", 'see', 'the dogs', '.'])).toEqual(["We don't", 'see', 'the dogs', '.']);
    expect(aligned("Don't look.", ["DON'T look."])).toEqual(["Don't look."]);
  });

  test('only the first "n\'t" of an utterance is split off (a second "ca n\'t" counts one word more)', () => {
    const { drop } = alignUtterances("I can't and can't.", ["I ca n't and ca n't ."]);
    expect(drop?.reason).toBe('word count mismatch');
    expect(aligned("I can't and can't.", ["I ca n't and", "ca n't ."])).toEqual(["I can't and", "can't."]);
  });

  test('spacing around punctuation, double spaces, case and accents', () => {
    expect(aligned('a man , a woman.', ['a man,', 'a woman', '.'])).toEqual(['a man ,', 'a woman', '.']);
    expect(aligned("a man's hat", ["a man ' s", 'hat'])).toEqual(["a man's", 'hat']);
    expect(aligned('two  dogs   on the\tgrass', ['two dogs', 'on the grass'])).toEqual(['two  dogs', 'on the\tgrass']);
    expect(aligned('A Café near a résumé.', ['a cafe', 'near', 'a RESUME', '.'])).toEqual(['A Café', 'near', 'a résumé', '.']);
  });

  test('spans start at the first and end at the last word: surrounding spaces are not in them', () => {
    const caption = '  the sky  above  ';
    const { spans } = alignUtterances(caption, [' the sky ', 'above']);
    expect(spans).toEqual([
      [2, 9],
      [11, 16],
    ]);
  });

  test('an utterance without words gets an empty span where its words would start', () => {
    const caption = 'the sky above';
    expect(alignUtterances(caption, ['the sky', '  ', 'above']).spans).toEqual([
      [0, 7],
      [8, 8],
      [8, 13],
    ]);
    expect(alignUtterances(caption, ['the sky above', '']).spans).toEqual([
      [0, 13],
      [13, 13],
    ]);
  });

  test('words are matched by position only, as the official code does (same count, other words)', () => {
    expect(aligned('a red car', ['a blue', 'bus'])).toEqual(['a red', 'car']);
  });

  test('a genuine mismatch drops the narrative, naming the utterance where the words part', () => {
    const caption = 'In this image I can see two dogs on the grass.';
    expect(alignUtterances(caption, ['In this image I can see', 'two dogs', 'on', 'the green grass', '.'])).toEqual({
      drop: {
        reason: 'word count mismatch',
        detail:
          'the caption has 12 words (BERT basic tokenisation) and its utterances 13; they part at utterance 3 "the green grass": words ["the","green","grass"], the caption has ["the","grass","."] there',
      },
    });
    expect(alignUtterances(caption, ['In this image I can see', 'two dogs', 'on the grass'])).toEqual({
      drop: {
        reason: 'word count mismatch',
        detail: 'the caption has 12 words (BERT basic tokenisation) and its utterances 11; the caption\'s words from word 11 on (["."]) are in no utterance',
      },
    });
    // "ca n't" is no mismatch, but the next utterance is.
    expect(alignUtterances("I can't see it.", ["I ca n't", 'see him', 'it .'])?.drop?.detail).toBe(
      'the caption has 7 words (BERT basic tokenisation) and its utterances 8; they part at utterance 1 "see him": words ["see","him"], the caption has ["see","it"] there',
    );
  });

  test('an empty caption is reported as an empty caption', () => {
    expect(alignUtterances('', ['two dogs'])).toEqual({ drop: { reason: 'empty caption', detail: 'the caption "" has no word' } });
    expect(alignUtterances(' \n', [])).toEqual({ drop: { reason: 'empty caption', detail: 'the caption " \\n" has no word' } });
  });

  test('cuts at "n\'t" where Python does: at the code point index of the lower-cased text ("İ" lower-cases to two)', () => {
    // Python: "İ don't".lower() is "i̇ don't", where "n't" starts at code point 5, so the original is
    // cut into "İ don" and "" (not "İ do" and "t"): ["i", "don"] + ["'", "t"], 4 words as in the
    // caption. Cutting the original at its own index 4 would give 5 words and drop the narrative.
    expect(aligned("İ don't", ["İ don't"])).toEqual(["İ don't"]);
  });

  test('describeDrops says how many, by reason', () => {
    expect(describeDrops([])).toBe('');
    expect(describeDrops([{ reason: 'word count mismatch' }])).toBe(
      '1 narrative dropped as the official pre-processing drops them (not evaluated): 1 word count mismatch',
    );
    expect(describeDrops([{ reason: 'word count mismatch' }, { reason: 'empty caption' }, { reason: 'word count mismatch' }])).toBe(
      '3 narratives dropped as the official pre-processing drops them (not evaluated): 1 empty caption, 2 word count mismatch',
    );
  });

  test('countDrops counts narratives per reason, every reason listed', () => {
    expect(countDrops([])).toEqual({ 'empty caption': 0, 'word count mismatch': 0 });
    expect(countDrops([{ reason: 'word count mismatch' }, { reason: 'empty caption' }, { reason: 'word count mismatch' }])).toEqual({
      'empty caption': 1,
      'word count mismatch': 2,
    });
  });
});

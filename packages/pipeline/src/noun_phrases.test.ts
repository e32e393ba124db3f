import { synthesizeScene } from '@png/png-data';
import { findNounPhrases } from './noun_phrases';

/** The phrase strings, after checking that the spans are ordered, disjoint and trimmed. */
function phrases(caption: string): string[] {
  const spans = findNounPhrases(caption);
  spans.forEach(([start, end], j) => {
    expect(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && end > start && end <= caption.length).toBe(true);
    if (j > 0) expect(start).toBeGreaterThanOrEqual(spans[j - 1][1]);
    expect(caption.slice(start, end)).toMatch(/^[\p{L}\p{N}].*[\p{L}\p{N}]$|^[\p{L}\p{N}]$/u);
  });
  return spans.map(([start, end]) => caption.slice(start, end));
}

describe('findNounPhrases', () => {
  it('finds the phrases of a narrative with their determiners, numbers and adjectives', () => {
    const caption = 'In this picture we can see two dogs on the grass and a person.';
    expect(findNounPhrases(caption)).toEqual([
      [27, 35],
      [39, 48],
      [53, 61],
    ]);
    expect(phrases(caption)).toEqual(['two dogs', 'the grass', 'a person']);
  });

  it('reads a caption of the synthetic benchmark, leaving out "here" and positions in the frame', () => {
    const caption =
      'Here we can see two yellow rings in the sky and three black diamonds along with a small purple diamond here. At the bottom we can see a lake around.';
    expect(phrases(caption)).toEqual(['two yellow rings', 'the sky', 'three black diamonds', 'a small purple diamond', 'a lake']);
    expect(phrases('In this image we can see a small red circle on the sand in the front. In the background of this image there is a blue sky.')).toEqual([
      'a small red circle',
      'the sand',
      'the background',
      'a blue sky',
    ]);
    expect(phrases('There is a group of white rings in front of the wall and an orange ring near trees on the left side.')).toEqual([
      'a group of white rings',
      'the wall',
      'an orange ring',
      'trees',
    ]);
  });

  it('leaves out pronouns and the image itself, but keeps a picture that is in the image', () => {
    expect(phrases('It is on the table, and they are smiling. We can see his dog and this photo.')).toEqual(['the table', 'his dog']);
    expect(phrases('The picture is taken from above. I think there is a picture on the wall.')).toEqual(['a picture', 'the wall']);
    expect(phrases('A woman in a black top is standing at the top of the stairs; in the bottom right corner there are some people.')).toEqual([
      'A woman',
      'a black top',
      'the stairs',
      'some people',
    ]);
  });

  it('splits a verb that compromise tags as a noun off the phrase before it', () => {
    expect(phrases('In this image I can see a woman holding a cup of coffee and a man riding a horse.')).toEqual([
      'a woman',
      'a cup',
      'coffee',
      'a man',
      'a horse',
    ]);
  });

  it('leaves the verb of a verbless clause, tagged as a plural noun, out of the phrase before it', () => {
    expect(phrases('a tangerine rhombus bobs on the water.')).toEqual(['a tangerine rhombus', 'the water']);
    expect(phrases('two dogs run on the grass and a person walks.')).toEqual(['two dogs', 'the grass', 'a person']);
    expect(phrases('the apple trees grow beside a fence.')).toEqual(['the apple trees', 'a fence']); // the clause has its verb
  });

  it('spans slice the caption exactly around hyphens, contractions, quotes, emoji and accents', () => {
    const caption = '  There\'s a black-and-white dog 😀 near "the café" and the women\'s shoes…\nTwo   big birds, apples';
    expect(phrases(caption)).toEqual(['a black-and-white dog', 'the café', "the women's shoes", 'Two   big birds', 'apples']);
  });

  it('finds every grounded noun chunk of synthetic narratives at its exact span', () => {
    let grounded = 0;
    for (let seed = 0; seed < 25; seed++) {
      for (const { caption, segments } of synthesizeScene(seed).narratives) {
        const found = new Set(findNounPhrases(caption).map(([start, end]) => `${start}:${end}`));
        let position = 0;
        for (const chunk of segments) {
          if (chunk.noun && chunk.segment_ids.length > 0) {
            grounded++;
            expect([chunk.utterance, found.has(`${position}:${position + chunk.utterance.length}`)]).toEqual([chunk.utterance, true]);
          }
          position += chunk.utterance.length + 1; // the caption joins the utterances with single spaces
        }
      }
    }
    expect(grounded).toBeGreaterThan(100);
  });

  it('returns no phrases for text without nouns and rejects an empty caption', () => {
    expect(findNounPhrases('We can see it here.')).toEqual([]);
    expect(() => findNounPhrases('')).toThrow('findNounPhrases: the caption is empty');
    expect(() => findNounPhrases(' \n\t ')).toThrow('the caption is empty');
  });
});

import { compressRleCounts, decodeRle, decompressRleCounts, encodeRle } from './rle';
import { seededRandom } from './test_support';

/*
 * Hand-made case, H = 5, W = 10 (row-major, '#' = 1):
 *   row 0: ........##
 *   row 1: ........#.
 *   row 2: ........#.
 *   row 3: ..........
 *   row 4: ..........
 * Column-major order: columns 0–7 are 40 zeros; column 8 is 1,1,1,0,0; column 9 is 1,0,0,0,0.
 * Runs: 40 zeros, 3 ones, 2 zeros, 1 one, 4 zeros → counts [40, 3, 2, 1, 4].
 * Compressed (values from the fourth run on are deltas to the run two before):
 *   40: low 5 bits 8, rest 1 → 8 | 0x20 (more) = 40 → chr(48 + 40) = 'X'; then 1 → '1'     → "X1"
 *   3 → '3'; 2 → '2'
 *   1 − 3 = −2: low 5 bits 30 (0x1e), rest −1 and 0x10 set → last group → chr(48 + 30) = 'N'
 *   4 − 2 = 2 → '2'
 * String: "X132N2".
 */
const HAND_MADE = {
  height: 5,
  width: 10,
  rows: ['........##', '........#.', '........#.', '..........', '..........'],
  counts: [40, 3, 2, 1, 4],
  string: 'X132N2',
};
const handMadeMask = Uint8Array.from(HAND_MADE.rows.join(''), (c) => (c === '#' ? 1 : 0));

describe('COCO RLE', () => {
  test('hand-made case: encode to both forms', () => {
    expect(encodeRle(handMadeMask, 5, 10, { compressed: false })).toEqual({ size: [5, 10], counts: HAND_MADE.counts });
    expect(encodeRle(handMadeMask, 5, 10)).toEqual({ size: [5, 10], counts: HAND_MADE.string });
    expect(compressRleCounts(HAND_MADE.counts)).toBe(HAND_MADE.string);
    expect(decompressRleCounts(HAND_MADE.string)).toEqual(HAND_MADE.counts);
  });

  test('hand-made case: decode both forms (column-major runs → row-major mask)', () => {
    expect(decodeRle({ size: [5, 10], counts: HAND_MADE.counts })).toEqual(handMadeMask);
    expect(decodeRle({ size: [5, 10], counts: HAND_MADE.string })).toEqual(handMadeMask);
  });

  test('a mask starting with a 1 gets an empty first run', () => {
    const mask = Uint8Array.from([1, 1, 0, 0]); // 2×2: row 0 = 1 1 → column-major 1,0,1,0
    expect(encodeRle(mask, 2, 2, { compressed: false }).counts).toEqual([0, 1, 1, 1, 1]);
    expect(decodeRle(encodeRle(mask, 2, 2))).toEqual(mask);
  });

  test('random round trips, both forms, with long runs and large deltas', () => {
    const random = seededRandom(1234);
    for (let trial = 0; trial < 200; trial++) {
      const height = 1 + Math.floor(random() * 40);
      const width = 1 + Math.floor(random() * 40);
      const density = random();
      const mask = Uint8Array.from({ length: height * width }, () => (random() < density ? 1 : 0));
      for (const compressed of [true, false]) {
        const rle = encodeRle(mask, height, width, { compressed });
        expect(decodeRle(JSON.parse(JSON.stringify(rle)))).toEqual(mask);
      }
    }
    const counts = [0, 1_000_000, 3, 2_000_000_000, 1, 5, 70_000, 0, 31, 16, 15, 17];
    expect(decompressRleCounts(compressRleCounts(counts))).toEqual(counts);
  });

  test('an empty image', () => {
    expect(encodeRle(new Uint8Array(0), 0, 7, { compressed: false }).counts).toEqual([0]);
    expect(decodeRle({ size: [0, 7], counts: '' })).toEqual(new Uint8Array(0));
  });

  test('malformed RLEs are clear errors', () => {
    expect(() => decodeRle({ size: [2, 2], counts: [1, 2] })).toThrow(/cover 3 pixels but size is 2×2 = 4/);
    expect(() => decodeRle({ size: [2, 2], counts: [3, 2] })).toThrow(/more than 2×2/);
    expect(() => decodeRle({ size: [2, 2], counts: [1, -1, 4] })).toThrow(/counts\[1\] = -1/);
    expect(() => decodeRle({ size: [2, 2], counts: '1~' })).toThrow(/invalid character "~" at position 1/);
    expect(() => decodeRle({ size: [2, 2], counts: 'X' })).toThrow(/ends in the middle of a value/);
    expect(() => decodeRle({ size: [2] as unknown as [number, number], counts: [] })).toThrow(/size must be \[height, width\]/);
    expect(() => encodeRle(new Uint8Array(3), 2, 2)).toThrow(/3 pixels but size is 2×2/);
  });
});

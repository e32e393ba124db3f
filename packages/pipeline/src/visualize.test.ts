import type { RgbImage } from '@png/png-data';
import { MIN_ATTENTION_OPACITY, PHRASE_COLORS, enlargeImage, phraseColor, renderAttentionMap, renderOverlay, tileImages, type Rgb } from './visualize';

function solid(height: number, width: number, rgb: Rgb): RgbImage {
  const data = new Uint8Array(height * width * 3);
  for (let k = 0; k < height * width; k++) data.set(rgb, 3 * k);
  return { data, height, width };
}

function pixel(image: RgbImage, y: number, x: number): number[] {
  const k = 3 * (y * image.width + x);
  return [...image.data.subarray(k, k + 3)];
}

/** The pixels of the region x ≥ x0, as "r,g,b" strings. */
function pixelsRightOf(image: RgbImage, x0: number): string[] {
  const out: string[] = [];
  for (let y = 0; y < image.height; y++) for (let x = x0; x < image.width; x++) out.push(pixel(image, y, x).join(','));
  return out;
}

const isInk = (rgb: string) => rgb.split(',').every((v) => Number(v) < 64);

/** A 0/1 mask of `height`×`width` set on rows [y0, y1) × columns [x0, x1). */
function box(height: number, width: number, y0: number, y1: number, x0: number, x1: number): Uint8Array {
  const mask = new Uint8Array(height * width);
  for (let y = y0; y < y1; y++) mask.fill(1, y * width + x0, y * width + x1);
  return mask;
}

// Legend geometry at text scale 1: 4 px padding, 9 px swatch, 4 px gap, 6 px per character, 13 px per row.
const legendWidth = (chars: number) => 4 + 9 + 4 + chars * 6 - 1 + 4;

describe('phraseColor', () => {
  it('has at least 12 distinct colours and cycles through them', () => {
    expect(PHRASE_COLORS.length).toBeGreaterThanOrEqual(12);
    for (let i = 0; i < PHRASE_COLORS.length; i++) {
      for (let j = i + 1; j < PHRASE_COLORS.length; j++) expect(Math.hypot(...PHRASE_COLORS[i].map((v, c) => v - PHRASE_COLORS[j][c]))).toBeGreaterThan(60);
    }
    expect(phraseColor(0)).toEqual(PHRASE_COLORS[0]);
    expect(phraseColor(PHRASE_COLORS.length + 3)).toEqual(phraseColor(3));
    expect(() => phraseColor(-1)).toThrow('phraseColor: index must be a non-negative integer');
  });
});

describe('renderOverlay', () => {
  const image = solid(5, 5, [10, 20, 30]);

  it('blends mask pixels, draws the contour in full colour, keeps other pixels, and adds a legend', () => {
    const out = renderOverlay(image, [{ label: 'a red circle', mask: box(5, 5, 1, 4, 1, 4) }], { alpha: 0.5, scale: 1 });
    const [r, g, b] = PHRASE_COLORS[0];
    expect(pixel(out, 2, 2)).toEqual([Math.round(0.5 * 10 + 0.5 * r), Math.round(0.5 * 20 + 0.5 * g), Math.round(0.5 * 30 + 0.5 * b)]);
    expect(pixel(out, 1, 1)).toEqual([r, g, b]);
    expect(pixel(out, 3, 2)).toEqual([r, g, b]);
    expect(pixel(out, 0, 0)).toEqual([10, 20, 30]);
    expect(pixel(out, 4, 2)).toEqual([10, 20, 30]);
    // One legend row (21 px) is taller than the 5-px image: the canvas grows, white below the image.
    expect([out.height, out.width]).toEqual([21, 5 + legendWidth('a red circle'.length)]);
    expect(pixel(out, 20, 0)).toEqual([255, 255, 255]);
    expect(pixel(out, 4 + 4, 5 + 4 + 4)).toEqual([r, g, b]); // the swatch
    expect(pixelsRightOf(out, 5 + 4 + 9 + 4).filter(isInk).length).toBeGreaterThan(20); // the label's text
  });

  it('fills overlaps with stripes of each covering phrase, never a mix, and draws no contour along the image border', () => {
    const alpha = 0.4;
    const big = solid(8, 8, [10, 20, 30]);
    const out = renderOverlay(
      big,
      [
        { label: 'everything', mask: new Uint8Array(64).fill(1) },
        { label: 'the centre', mask: box(8, 8, 1, 7, 1, 7) },
      ],
      { alpha, scale: 1 },
    );
    const fill = (colour: Rgb) => [10, 20, 30].map((v, c) => Math.round((1 - alpha) * v + alpha * colour[c]));
    const [c0, c1] = [phraseColor(0), phraseColor(1)];
    expect(pixel(out, 0, 0)).toEqual(fill(c0)); // one mask: its fill (no contour on the image border)
    expect(pixel(out, 1, 3)).toEqual([...c1]); // the centre's contour
    // inside both, 2-px diagonal stripes alternate the two fills: (x + y) = 4, 5 → phrase 0; 6, 7 → phrase 1
    expect([pixel(out, 2, 2), pixel(out, 2, 3), pixel(out, 3, 3), pixel(out, 3, 4)]).toEqual([fill(c0), fill(c0), fill(c1), fill(c1)]);
    const colours = new Set(Array.from({ length: 36 }, (_, k) => pixel(out, 1 + Math.floor(k / 6), 1 + (k % 6)).join(',')));
    expect([...colours].sort()).toEqual([fill(c0), fill(c1), [...c1]].map((c) => c.join(',')).sort()); // nothing outside the legend's colours
  });

  it('upscales by default so the short side is at least 256 px, with a 1-px contour', () => {
    const out = renderOverlay(image, [{ label: 'x', mask: box(5, 5, 1, 4, 1, 4) }]); // scale ⌈256 / 5⌉ = 52
    const panel = 5 * 52;
    expect([out.height, out.width]).toEqual([panel, panel + 2 * legendWidth(1)]); // text scale 2 above 256 px
    const c = [...phraseColor(0)];
    expect(pixel(out, 52, 52)).toEqual(c);
    expect(pixel(out, 52, 100)).toEqual(c);
    expect(pixel(out, 53, 53)).not.toEqual(c);
    expect(pixel(out, 51, 52)).toEqual([10, 20, 30]);
    expect(pixel(out, panel - 1, panel - 1)).toEqual([10, 20, 30]);
    expect(renderOverlay(solid(2, 600, [0, 0, 0]), []).width).toBe(3 * 600); // the long side stays ≤ 2048 px
  });

  it('writes non-ASCII as "?" and truncates long labels to 32 characters', () => {
    const width = (label: string) => renderOverlay(image, [{ label, mask: new Uint8Array(25) }], { scale: 1 }).width;
    expect(width('café 🙂')).toBe(5 + legendWidth(6));
    const legend = (label: string) => renderOverlay(image, [{ label, mask: new Uint8Array(25) }], { scale: 1 }).data;
    expect(legend('café 🙂')).toEqual(legend('caf? ?'));
    expect(legend('café 🙂')).not.toEqual(legend('cafe ?'));
    expect(width('x'.repeat(40))).toBe(5 + legendWidth(32));
    expect(width('x'.repeat(400))).toBe(5 + legendWidth(32));
  });

  it('rejects a mask of the wrong size, naming it and both sizes, and bad options', () => {
    expect(() =>
      renderOverlay(image, [
        { label: 'a', mask: new Uint8Array(25) },
        { label: 'the sky', mask: new Uint8Array(24) },
      ]),
    ).toThrow('renderOverlay: mask 1 ("the sky") has 24 bytes but the image is 5×5 = 25 pixels');
    expect(() => renderOverlay({ data: new Uint8Array(10), height: 2, width: 2 }, [])).toThrow(
      'renderOverlay: image: data must be a Uint8Array of 2×2×3 = 12 bytes',
    );
    expect(() => renderOverlay(image, [], { alpha: 1.5 })).toThrow('alpha must be in [0, 1]');
    expect(() => renderOverlay(image, [], { scale: 1.5 })).toThrow('scale must be a positive integer');
  });
});

describe('renderAttentionMap', () => {
  /** `colour` over white at `opacity`. */
  const over = (colour: Rgb, opacity: number) => colour.map((v) => Math.round((1 - opacity) * 255 + opacity * v));

  it('colours each pixel by its argmax phrase over white by its confidence, normalised per map, upscaled to size', () => {
    // [h·w, P] = [1·3, 2]: pixel 0 prefers phrase 0 (share 0.75: 0.25 above chance), pixel 1 phrase 1
    // (0.9: 0.4 above chance, the map's most decided pixel), pixel 2 has no attention.
    const out = renderAttentionMap(Float32Array.from([3, 1, 0.1, 0.9, 0, 0]), 1, 3, ['two dogs', 'the grass'], { size: 6 });
    const [c0, c1] = [phraseColor(0), phraseColor(1)];
    expect([out.height, out.width]).toEqual([4 + 2 * 13 + 4, 6 + legendWidth(9)]);
    const opacity0 = MIN_ATTENTION_OPACITY + (1 - MIN_ATTENTION_OPACITY) * (0.25 / 0.4);
    for (const y of [0, 1]) {
      expect([pixel(out, y, 0), pixel(out, y, 1)]).toEqual([over(c0, opacity0), over(c0, opacity0)]);
      expect([pixel(out, y, 2), pixel(out, y, 3)]).toEqual([[...c1], [...c1]]);
      expect(pixel(out, y, 5)).toEqual(over(c0, MIN_ATTENTION_OPACITY)); // no attention: undecided, phrase 0
    }
    expect(pixel(out, 2, 0)).toEqual([255, 255, 255]); // below the 2-px map
    expect(pixel(out, 4 + 13 + 4, 6 + 4 + 4)).toEqual([...c1]); // the second swatch
    expect(pixelsRightOf(out, 6 + 4 + 9 + 4).filter(isInk).length).toBeGreaterThan(20);
  });

  it('picks the first phrase on ties and gives the longer side size pixels by default', () => {
    const out = renderAttentionMap(Float32Array.from([0.5, 0.5, 0, 0, 1, 0]), 2, 1, ['a', 'b', 'c'], {});
    expect(out.height).toBe(128);
    expect(pixel(out, 0, 0)).toEqual(over(phraseColor(0), MIN_ATTENTION_OPACITY + (1 - MIN_ATTENTION_OPACITY) * (1 / 6 / (2 / 3))));
    expect(pixel(out, 127, 63)).toEqual([...phraseColor(1)]);
    expect(pixel(out, 0, 64)).toEqual([255, 255, 255]); // the legend starts at x = 64
  });

  it('reads flat attention at a glance: a slight preference is the full colour, no preference anywhere is white; legend: false leaves the legend out', () => {
    // four phrases, shares 0.26 / 0.28 against chance 0.25: normalised per map
    const flat = Float32Array.from([0.26, 0.24666, 0.24667, 0.24667, 0.24, 0.28, 0.24, 0.24]);
    const out = renderAttentionMap(flat, 1, 2, ['a', 'b', 'c', 'd'], { size: 2, legend: false });
    expect([out.height, out.width]).toEqual([1, 2]);
    expect(pixel(out, 0, 1)).toEqual([...phraseColor(1)]);
    expect(pixel(out, 0, 0)).toEqual(over(phraseColor(0), MIN_ATTENTION_OPACITY + (1 - MIN_ATTENTION_OPACITY) * (0.01 / 0.03)));
    const none = renderAttentionMap(Float32Array.from([0.5, 0.5, 0.5, 0.5]), 1, 2, ['a', 'b'], { size: 2, legend: false });
    expect([pixel(none, 0, 0), pixel(none, 0, 1)]).toEqual([
      [255, 255, 255],
      [255, 255, 255],
    ]);
  });

  it('rejects mismatched sizes and weights that are not probabilities', () => {
    expect(() => renderAttentionMap(new Float32Array(5), 1, 3, ['a', 'b'])).toThrow(
      'renderAttentionMap: attention has 5 values but [h·w, P] = [1·3, 2] needs 6',
    );
    expect(() => renderAttentionMap(Float32Array.from([1, -0.5]), 1, 1, ['a', 'b'])).toThrow('attention[1] (pixel 0, phrase 1) is -0.5');
    expect(() => renderAttentionMap(Float32Array.from([NaN]), 1, 1, ['a'])).toThrow('attention[0] (pixel 0, phrase 0) is NaN');
    expect(() => renderAttentionMap(new Float32Array(0), 1, 1, [])).toThrow('no labels');
    expect(() => renderAttentionMap(new Float32Array(1), 1, 1, ['a'], { size: 0 })).toThrow('size must be a positive integer');
  });
});

describe('tileImages', () => {
  it('lays the tiles out in a grid on white with their titles above them', () => {
    const red = solid(2, 3, [200, 0, 0]);
    const blue = solid(4, 2, [0, 0, 200]);
    const out = tileImages([{ image: red, title: 'layer 1' }, { image: blue, title: 'layer 2' }, { image: red }], { columns: 2, gap: 2 });
    // Cells are 3×4 with a 12-px title band; 2 columns, 2 rows.
    expect([out.height, out.width]).toEqual([2 + 2 * (12 + 4 + 2), 2 + 2 * (3 + 2)]);
    expect(pixel(out, 14, 2)).toEqual([200, 0, 0]);
    expect(pixel(out, 15, 4)).toEqual([200, 0, 0]);
    expect(pixel(out, 16, 2)).toEqual([255, 255, 255]); // below the 2-px-tall tile
    expect(pixel(out, 17, 8)).toEqual([0, 0, 200]);
    expect(pixel(out, 18 + 14, 2)).toEqual([200, 0, 0]);
    expect(pixel(out, 0, 0)).toEqual([255, 255, 255]);
    const titleBand = Array.from({ length: 12 * out.width }, (_, k) => pixel(out, 2 + Math.floor(k / out.width), k % out.width).join(','));
    expect(titleBand.filter(isInk).length).toBeGreaterThan(5);
  });

  it('draws one legend of the phrases to the right of the montage', () => {
    const out = tileImages([{ image: solid(30, 10, [0, 0, 0]) }, { image: solid(30, 10, [0, 0, 0]) }], { columns: 2, gap: 1, legend: ['a', 'bb'] });
    expect([out.height, out.width]).toEqual([4 + 2 * 13 + 4, 1 + 2 * 11 + legendWidth(2)]); // the legend is taller than the 32-px montage
    expect(pixel(out, 4 + 4, 23 + 4 + 4)).toEqual([...phraseColor(0)]); // the first swatch
    expect(pixel(out, 4 + 13 + 4, 23 + 4 + 4)).toEqual([...phraseColor(1)]);
  });

  it('uses ⌈√n⌉ columns, no title band without titles, and rejects bad input', () => {
    const out = tileImages(
      Array.from({ length: 5 }, () => ({ image: solid(1, 1, [0, 0, 0]) })),
      { gap: 1 },
    );
    expect([out.height, out.width]).toEqual([1 + 2 * 2, 1 + 3 * 2]);
    expect(() => tileImages([])).toThrow('tileImages: no tiles');
    expect(() => tileImages([{ image: solid(1, 1, [0, 0, 0]) }], { columns: 0 })).toThrow('columns must be a positive integer');
    expect(() => tileImages([{ image: solid(1, 1, [0, 0, 0]) }, { image: { data: new Uint8Array(2), height: 1, width: 1 } }])).toThrow(
      'tileImages: tile 1: data must be',
    );
  });
});

describe('enlargeImage', () => {
  it('repeats every pixel scale × scale times, and refuses a bad scale', () => {
    const image: RgbImage = { width: 2, height: 1, data: Uint8Array.from([1, 2, 3, 4, 5, 6]) };
    expect(enlargeImage(image, 1)).toBe(image);
    const big = enlargeImage(image, 2);
    expect([big.width, big.height]).toEqual([4, 2]);
    expect([...big.data]).toEqual([1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6, 1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6]);
    expect(() => enlargeImage(image, 0)).toThrow('enlargeImage: scale must be a positive integer, got 0');
    expect(() => enlargeImage({ width: 2, height: 1, data: new Uint8Array(3) }, 2)).toThrow('enlargeImage: data must be');
  });
});

/**
 * Figures of grounding results, in pure TypeScript on {@link RgbImage}s (no tf): predicted masks
 * over the image, the per-pixel phrase attention of the paper's Figure 5, and montages of either.
 * Labels are drawn with an embedded 5×9 bitmap font.
 */
import type { RgbImage } from '@png/png-data';

/** An RGB colour, each channel 0–255. */
export type Rgb = readonly [number, number, number];

/** Phrase colours in phrase order: distinct hues, each dark enough for a swatch on white. */
export const PHRASE_COLORS: readonly Rgb[] = [
  [228, 26, 58], // red
  [46, 160, 67], // green
  [31, 119, 230], // blue
  [250, 140, 20], // orange
  [140, 60, 200], // purple
  [0, 190, 210], // cyan
  [220, 40, 180], // magenta
  [150, 210, 40], // lime
  [150, 90, 40], // brown
  [240, 200, 0], // gold
  [0, 130, 120], // teal
  [30, 40, 140], // navy
  [255, 130, 170], // pink
  [110, 130, 0], // olive
  [130, 20, 40], // maroon
  [90, 110, 140], // slate
];

/** The colour of phrase `index`; the palette repeats after {@link PHRASE_COLORS}.length phrases. */
export function phraseColor(index: number): Rgb {
  if (!Number.isInteger(index) || index < 0) throw new Error(`phraseColor: index must be a non-negative integer (the phrase number), got ${index}`);
  return PHRASE_COLORS[index % PHRASE_COLORS.length];
}

/** One predicted (or ground-truth) mask of {@link renderOverlay}. */
export interface OverlayMask {
  label: string;
  /** [H·W] row-major, non-zero = inside; H×W is the image size. */
  mask: Uint8Array;
}

/** Options of {@link renderOverlay}. */
export interface OverlayOptions {
  /** Opacity of the mask colour's fill, 0–1; default 0.35 (the contour is always in the full colour). */
  alpha?: number;
  /**
   * Integer upscaling factor (nearest); default: the smallest that makes the short side ≥ 256 px,
   * unless that takes the long side past 2048 px.
   */
  scale?: number;
}

/** Options of {@link renderAttentionMap}. */
export interface AttentionMapOptions {
  /** Length in pixels of the map's longer side (nearest upscaling); default 128. */
  size?: number;
  /** Draw the legend to the right of the map; default true (false: panels of a figure with one legend, {@link TileOptions.legend}). */
  legend?: boolean;
}

/** One image of a {@link tileImages} montage. */
export interface Tile {
  image: RgbImage;
  title?: string;
}

/** Options of {@link tileImages}. */
export interface TileOptions {
  /** Tiles per row; default ⌈√n⌉. */
  columns?: number;
  /** White space between and around tiles, in pixels; default 8. */
  gap?: number;
  /** Phrase labels: one legend (a swatch in each phrase's colour and its label) to the right of the montage. */
  legend?: readonly string[];
}

const WHITE: Rgb = [255, 255, 255];
const INK: Rgb = [32, 32, 32];
/** Longest label a legend shows; longer ones end in "...". */
const MAX_LABEL_CHARS = 32;

/**
 * The image (upscaled by `scale`, nearest) with each mask drawn so that its legend colour stays
 * identifiable where masks overlap: a light fill `(1 − alpha)·pixel + alpha·colour` of one phrase
 * colour per pixel (where several masks cover a pixel, diagonal stripes of their colours, never a
 * mix of them), a 1-px contour in the full colour along the inside of each mask's border, and a
 * legend to the right: a swatch and the label per mask. Without masks it is the upscaled image alone.
 * @throws if a mask is not one byte per image pixel, naming the mask and both sizes.
 */
export function renderOverlay(image: RgbImage, masks: readonly OverlayMask[], options: OverlayOptions = {}): RgbImage {
  checkImage(image, 'renderOverlay: image');
  const { height: h, width: w } = image;
  masks.forEach(({ label, mask }, i) => {
    if (!(mask instanceof Uint8Array) || mask.length !== h * w) {
      const found = mask instanceof Uint8Array ? `${mask.length} bytes` : `a ${typeof mask}`;
      throw new Error(
        `renderOverlay: mask ${i} (${JSON.stringify(label)}) has ${found} but the image is ${h}×${w} = ${h * w} pixels; pass a Uint8Array of one byte per image pixel, row-major`,
      );
    }
  });
  const alpha = options.alpha ?? 0.35;
  if (!(alpha >= 0 && alpha <= 1)) throw new Error(`renderOverlay: alpha must be in [0, 1] (the mask opacity), got ${alpha}`);
  const scale = options.scale ?? Math.max(1, Math.min(Math.ceil(256 / Math.min(h, w)), Math.floor(2048 / Math.max(h, w))));
  if (!Number.isInteger(scale) || scale < 1) throw new Error(`renderOverlay: scale must be a positive integer (the upscaling factor), got ${scale}`);

  const panel = blank(h * scale, w * scale, WHITE);
  const stripe = Math.max(2, 2 * scale); // stripe width (output pixels, along a row) where masks overlap
  const covering: number[] = [];
  for (let y = 0; y < panel.height; y++) {
    for (let x = 0; x < panel.width; x++) {
      const k = Math.floor(y / scale) * w + Math.floor(x / scale);
      covering.length = 0;
      for (const [i, { mask }] of masks.entries()) if (mask[k]) covering.push(i);
      const colour = covering.length ? phraseColor(covering[Math.floor((x + y) / stripe) % covering.length]) : null;
      for (let c = 0; c < 3; c++) {
        const v = image.data[3 * k + c];
        panel.data[3 * (y * panel.width + x) + c] = colour ? Math.round((1 - alpha) * v + alpha * colour[c]) : v;
      }
    }
  }
  // Contours in output pixels: inside the mask with a 4-neighbour (within the image) outside it.
  const insideAt = (mask: Uint8Array, y: number, x: number): boolean => mask[Math.floor(y / scale) * w + Math.floor(x / scale)] !== 0;
  masks.forEach(({ mask }, i) => {
    const colour = phraseColor(i);
    for (let y = 0; y < panel.height; y++) {
      for (let x = 0; x < panel.width; x++) {
        if (!insideAt(mask, y, x)) continue;
        const edge =
          (y > 0 && !insideAt(mask, y - 1, x)) ||
          (y + 1 < panel.height && !insideAt(mask, y + 1, x)) ||
          (x > 0 && !insideAt(mask, y, x - 1)) ||
          (x + 1 < panel.width && !insideAt(mask, y, x + 1));
        if (edge) panel.data.set(colour, 3 * (y * panel.width + x));
      }
    }
  });
  return withLegend(
    panel,
    masks.map((m) => m.label),
  );
}

/**
 * The paper's Figure 5 view of phrase attention: each pixel takes the colour of its most-attended
 * phrase (argmax over P, the first on ties) at full saturation, over white by its confidence: the
 * top phrase's share of the pixel's attention above chance, `(max/sum − 1/P)`, normalised by the
 * largest such value in this map (so the map's most decided pixel is the full colour however flat
 * attention is overall); the least decided pixels keep {@link MIN_ATTENTION_OPACITY} of it, so
 * their hue stays readable, and a map with no preference anywhere (or all-zero pixels) is white.
 * Upscaled (nearest) so the longer side is `size` px, with a legend of the phrases to the right
 * unless `legend: false`.
 * @param attention [h·w, P] row-major, weights ≥ 0 (e.g. softmax probabilities); P = labels.length.
 * @throws if the sizes disagree or a weight is negative or not finite.
 */
export function renderAttentionMap(attention: Float32Array, h: number, w: number, labels: readonly string[], options: AttentionMapOptions = {}): RgbImage {
  if (!Number.isInteger(h) || !Number.isInteger(w) || h < 1 || w < 1)
    throw new Error(`renderAttentionMap: h and w must be positive integers (the map size), got ${h}×${w}`);
  const p = labels.length;
  if (p === 0) throw new Error('renderAttentionMap: no labels; pass one label per phrase (the P of the [h·w, P] attention)');
  if (attention.length !== h * w * p) {
    throw new Error(
      `renderAttentionMap: attention has ${attention.length} values but [h·w, P] = [${h}·${w}, ${p}] needs ${h * w * p}; pass one weight per pixel and phrase, one label per phrase`,
    );
  }
  const size = options.size ?? 128;
  if (!Number.isInteger(size) || size < 1) throw new Error(`renderAttentionMap: size must be a positive integer (pixels on the longer side), got ${size}`);

  const argmax = new Int32Array(h * w);
  const margin = new Float32Array(h * w); // top share above chance, ≥ 0
  for (let k = 0; k < h * w; k++) {
    let best = 0;
    let sum = 0;
    for (let j = 0; j < p; j++) {
      const v = attention[k * p + j];
      if (!(v >= 0 && v < Infinity))
        throw new Error(
          `renderAttentionMap: attention[${k * p + j}] (pixel ${k}, phrase ${j}) is ${v}; pass finite weights ≥ 0 (attention probabilities, not logits)`,
        );
      sum += v;
      if (v > attention[k * p + best]) best = j;
    }
    argmax[k] = best;
    margin[k] = sum > 0 ? Math.max(0, attention[k * p + best] / sum - 1 / p) : 0;
  }
  const top = margin.reduce((a, b) => Math.max(a, b), 0);
  const colours = new Uint8Array(h * w * 3); // [h, w, 3]
  for (let k = 0; k < h * w; k++) {
    const opacity = top > 0 ? MIN_ATTENTION_OPACITY + (1 - MIN_ATTENTION_OPACITY) * (margin[k] / top) : 0;
    const colour = phraseColor(argmax[k]);
    for (let c = 0; c < 3; c++) colours[3 * k + c] = Math.round((1 - opacity) * WHITE[c] + opacity * colour[c]);
  }
  const long = Math.max(h, w);
  const panel = blank(Math.max(1, Math.round((h * size) / long)), Math.max(1, Math.round((w * size) / long)), WHITE);
  for (let y = 0; y < panel.height; y++) {
    const sy = Math.floor((y * h) / panel.height);
    for (let x = 0; x < panel.width; x++) {
      const k = sy * w + Math.floor((x * w) / panel.width);
      panel.data.set(colours.subarray(3 * k, 3 * k + 3), 3 * (y * panel.width + x));
    }
  }
  return options.legend === false ? panel : withLegend(panel, labels);
}

/** Opacity of the phrase colour at a map's least decided pixels in {@link renderAttentionMap}. */
export const MIN_ATTENTION_OPACITY = 0.3;

/** `image` with every pixel repeated `scale` × `scale` times (nearest-pixel enlargement for viewing). */
export function enlargeImage(image: RgbImage, scale: number): RgbImage {
  checkImage(image, 'enlargeImage');
  if (!Number.isInteger(scale) || scale < 1) throw new Error(`enlargeImage: scale must be a positive integer, got ${scale}`);
  if (scale === 1) return image;
  const width = image.width * scale,
    height = image.height * scale;
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const row = Math.floor(y / scale) * image.width;
    for (let x = 0; x < width; x++) {
      const from = 3 * (row + Math.floor(x / scale));
      data.set(image.data.subarray(from, from + 3), 3 * (y * width + x));
    }
  }
  return { width, height, data };
}

/**
 * A grid montage on white, row by row, each tile in a cell the size of the largest tile with its
 * title (if any tile has one) above it, truncated to the cell width; with `legend`, one legend of
 * the phrases to the right of the montage.
 * @throws if there are no tiles, a tile is not a valid image, or an option is out of range.
 */
export function tileImages(tiles: readonly Tile[], options: TileOptions = {}): RgbImage {
  if (tiles.length === 0) throw new Error('tileImages: no tiles; pass at least one {image, title?}');
  for (const [i, t] of tiles.entries()) checkImage(t.image, `tileImages: tile ${i}`);
  const columns = options.columns ?? Math.ceil(Math.sqrt(tiles.length));
  if (!Number.isInteger(columns) || columns < 1) throw new Error(`tileImages: columns must be a positive integer, got ${columns}`);
  const gap = options.gap ?? 8;
  if (!Number.isInteger(gap) || gap < 0) throw new Error(`tileImages: gap must be a non-negative integer (pixels), got ${gap}`);

  const cellW = Math.max(...tiles.map((t) => t.image.width));
  const cellH = Math.max(...tiles.map((t) => t.image.height));
  const s = textScale(cellH);
  const titleH = tiles.some((t) => t.title !== undefined) ? (GLYPH_H + 3) * s : 0;
  const maxChars = Math.max(1, Math.floor((cellW + s) / (ADVANCE * s)));
  const used = Math.min(columns, tiles.length);
  const rows = Math.ceil(tiles.length / columns);
  const canvas = blank(gap + rows * (titleH + cellH + gap), gap + used * (cellW + gap), WHITE);
  tiles.forEach(({ image, title }, i) => {
    const x = gap + (i % columns) * (cellW + gap);
    const y = gap + Math.floor(i / columns) * (titleH + cellH + gap);
    if (title !== undefined) drawText(canvas, x, y, printable(title, maxChars), INK, s);
    paste(canvas, image, x, y + titleH);
  });
  return options.legend ? withLegend(canvas, options.legend) : canvas;
}

// ---------------------------------------------------------------------------------------------
// Canvas helpers

function checkImage(image: RgbImage, what: string): void {
  const { height: h, width: w, data } = image;
  if (!Number.isInteger(h) || !Number.isInteger(w) || h < 1 || w < 1) throw new Error(`${what}: height and width must be positive integers, got ${h}×${w}`);
  if (!(data instanceof Uint8Array) || data.length !== h * w * 3) {
    throw new Error(
      `${what}: data must be a Uint8Array of ${h}×${w}×3 = ${h * w * 3} bytes (RGB, row-major), got ${data instanceof Uint8Array ? data.length : typeof data}`,
    );
  }
}

/** A `height`×`width` image filled with `colour`. */
function blank(height: number, width: number, colour: Rgb): RgbImage {
  const data = new Uint8Array(height * width * 3);
  for (let k = 0; k < height * width; k++) data.set(colour, 3 * k);
  return { data, height, width };
}

/** Fills the rectangle at (x, y) of `w`×`h` pixels, clipped to the canvas. */
function fillRect(canvas: RgbImage, x: number, y: number, w: number, h: number, colour: Rgb): void {
  for (let yy = Math.max(0, y); yy < Math.min(canvas.height, y + h); yy++) {
    for (let xx = Math.max(0, x); xx < Math.min(canvas.width, x + w); xx++) canvas.data.set(colour, 3 * (yy * canvas.width + xx));
  }
}

/** Copies `image` onto `canvas` with its top-left corner at (x, y); it must fit. */
function paste(canvas: RgbImage, image: RgbImage, x: number, y: number): void {
  for (let row = 0; row < image.height; row++) {
    canvas.data.set(image.data.subarray(3 * row * image.width, 3 * (row + 1) * image.width), 3 * ((y + row) * canvas.width + x));
  }
}

/** Text magnification for a panel `pixels` tall (or wide): 1 below 256, 2 below 384, at most 3. */
function textScale(pixels: number): number {
  return Math.min(3, Math.max(1, Math.floor(pixels / 128)));
}

// Legend layout, in font pixels (× the text scale): padding, swatch side, swatch-to-text gap, row pitch.
const LEGEND_PAD = 4;
const SWATCH = 9;
const SWATCH_GAP = 4;
const ROW_PITCH = 13;

/** `panel` with a legend to its right (a swatch and the label per phrase), on white, grown taller if the legend needs it. */
function withLegend(panel: RgbImage, labels: readonly string[]): RgbImage {
  if (labels.length === 0) return panel;
  const s = textScale(panel.height);
  const texts = labels.map((l) => printable(l, MAX_LABEL_CHARS));
  const textW = Math.max(...texts.map((t) => t.length)) * ADVANCE - 1;
  const legendW = (2 * LEGEND_PAD + SWATCH + SWATCH_GAP) * s + Math.max(0, textW) * s;
  const legendH = (2 * LEGEND_PAD + texts.length * ROW_PITCH) * s;
  const canvas = blank(Math.max(panel.height, legendH), panel.width + legendW, WHITE);
  paste(canvas, panel, 0, 0);
  texts.forEach((text, i) => {
    const x = panel.width + LEGEND_PAD * s;
    const y = (LEGEND_PAD + i * ROW_PITCH) * s;
    fillRect(canvas, x, y, SWATCH * s, SWATCH * s, phraseColor(i));
    drawText(canvas, x + (SWATCH + SWATCH_GAP) * s, y, text, INK, s);
  });
  return canvas;
}

// ---------------------------------------------------------------------------------------------
// Bitmap font

const GLYPH_W = 5;
const GLYPH_H = 9;
/** Horizontal distance between neighbouring glyphs: the glyph and one blank column. */
const ADVANCE = GLYPH_W + 1;

/**
 * A 5×9 font for printable ASCII, glyph `code − 32` for codes 32–126. A glyph is up to 9 base-32
 * digits, one per pixel row from the top (rows 0–6 stand on the baseline, 7–8 hold descenders;
 * missing trailing rows are blank); in a digit, 16 is the leftmost of the 5 columns and 1 the rightmost.
 */
const FONT: readonly string[] = (
  ' 4444404 aaa aavavaa 4fke5u4 op248j3 cik8lid 448 2488842 8422248 04lel4 044v44 00000cc48 000e 00000cc 11248gg ehjlphe ' +
  '4c4444e eh1248v v2421he 26aiv22 vgu11he 68guhhe v124888 ehhehhe ehhf12c 0cc0cc 0cc0cc48 248g842 00v0v 8421248 eh12404 ' +
  'eh1dlle ehhvhhh uhhuhhu ehggghe sihhhis vgguggv vgguggg ehgnhhf hhhvhhh e44444e 72222ic hikokih ggggggv hrllhhh hhpljhh ' +
  'ehhhhhe uhhuggg ehhhlid uhhukih fgge11u v444444 hhhhhhe hhhhha4 hhhllla hha4ahh hha4444 v1248gv e88888e gg84211 e22222e ' +
  '4ah 0000000v 84 00e1fhf gguhhhu 00egghe 11fhhhf 00ehvge 698s888 00fhhhf1e ggmphhh 40c444e 2062222ic ggikoki c44444e ' +
  '00qllll 00mphhh 00ehhhe 00uhhhugg 00fhhhf11 00mpggg 00fge1u 88s8896 00hhhjd 00hhha4 00hhlla 00ha4ah 00hhhhf1e 00v248v ' +
  '3448443 444444444 o44244o 008l2'
).split(' ');

/** `text` in the font's characters: code points outside printable ASCII become '?'; longer than `maxChars` ends in "...". */
function printable(text: string, maxChars: number): string {
  const chars = Array.from(text, (ch) => (/^[\x20-\x7e]$/.test(ch) ? ch : '?'));
  if (chars.length <= maxChars) return chars.join('');
  return maxChars > 3 ? `${chars.slice(0, maxChars - 3).join('')}...` : chars.slice(0, maxChars).join('');
}

/** Draws printable-ASCII `text` with its top-left corner at (x, y), each font pixel `scale`×`scale`, clipped to the canvas. */
function drawText(canvas: RgbImage, x: number, y: number, text: string, colour: Rgb, scale: number): void {
  for (let i = 0; i < text.length; i++) {
    const glyph = FONT[text.charCodeAt(i) - 32];
    for (let row = 0; row < glyph.length; row++) {
      const bits = parseInt(glyph[row], 32);
      for (let col = 0; col < GLYPH_W; col++) {
        if (bits & (16 >> col)) fillRect(canvas, x + (i * ADVANCE + col) * scale, y + row * scale, scale, scale, colour);
      }
    }
  }
}

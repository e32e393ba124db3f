import * as tf from '@tensorflow/tfjs-core';
import { resize, setBackend } from '@png/core';
import { expectNoLeak } from '@png/core/testing';
import { maskIoU } from '@png/png-metrics';
import { imageTensor, letterbox, letterboxTransform, masksToTarget, unletterbox } from './transforms';

beforeAll(async () => {
  await setBackend('cpu');
});

/** A disc and an overlapping rectangle on an H×W image (two phrases). */
function shapes(height: number, width: number): Uint8Array[] {
  const disc = new Uint8Array(height * width);
  const rect = new Uint8Array(height * width);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if ((y - 0.4 * height) ** 2 + (x - 0.35 * width) ** 2 <= (0.25 * height) ** 2) disc[y * width + x] = 1;
      if (y >= 0.3 * height && y < 0.9 * height && x >= 0.45 * width && x < 0.95 * width) rect[y * width + x] = 1;
    }
  }
  return [disc, rect];
}

describe('letterboxTransform', () => {
  it('scales the longer side to the target and centres the image', () => {
    expect(letterboxTransform(20, 30, 32)).toEqual({
      target: 32,
      scale: 32 / 30,
      contentHeight: 21,
      contentWidth: 32,
      padTop: 5,
      padLeft: 0,
      height: 20,
      width: 30,
    });
    expect(letterboxTransform(480, 360, 64)).toEqual({
      target: 64,
      scale: 64 / 480,
      contentHeight: 64,
      contentWidth: 48,
      padTop: 0,
      padLeft: 8,
      height: 480,
      width: 360,
    });
    expect(letterboxTransform(1, 1000, 8).contentHeight).toBe(1);
  });

  it('rejects a target that is not a multiple of 8 and a bad size', () => {
    expect(() => letterboxTransform(10, 10, 30)).toThrow('target must be a positive multiple of 8');
    expect(() => letterboxTransform(0, 10, 32)).toThrow('image size must be positive integers');
  });
});

describe('letterbox', () => {
  it('maps pixels to [-1, 1] and pads with 0 at scale 1', async () => {
    const height = 24;
    const width = 32;
    const data = Uint8Array.from({ length: height * width * 3 }, (_, k) => (k * 7) % 256);
    const { tensor, transform } = letterbox({ data, height, width }, 32);
    expect(tensor.shape).toEqual([1, 32, 32, 3]);
    expect(transform.padTop).toBe(4);
    const values = await tensor.data();
    tensor.dispose();
    for (let y = 0; y < 32; y++) {
      for (let x = 0; x < 32; x++) {
        for (let c = 0; c < 3; c++) {
          const inside = y >= 4 && y < 28;
          const expected = inside ? data[((y - 4) * width + x) * 3 + c] / 127.5 - 1 : 0;
          expect(values[(y * 32 + x) * 3 + c]).toBeCloseTo(expected, 6);
        }
      }
    }
  });

  it('resizes with torch-exact bilinear and leaks no tensors', async () => {
    const data = Uint8Array.from({ length: 40 * 20 * 3 }, (_, k) => (k * 13) % 256);
    const { tensor } = letterbox({ data, height: 40, width: 20 }, 16);
    const reference = tf.tidy(() => resize(tf.sub(tf.div(tf.tensor4d(Float32Array.from(data), [1, 40, 20, 3]), 127.5), 1) as tf.Tensor4D, [16, 8], 'bilinear'));
    const content = tf.slice(tensor, [0, 0, 4, 0], [1, 16, 8, 3]);
    expect(Array.from(await content.data())).toEqual(Array.from(await reference.data()));
    tf.dispose([tensor, reference, content]);
    await expectNoLeak(() => letterbox({ data, height: 40, width: 20 }, 16).tensor, 'letterbox');
    expect(() => letterbox({ data, height: 41, width: 20 }, 16)).toThrow('image data has 2400 bytes, expected 41×20×3');
  });
});

describe('masksToTarget and unletterbox', () => {
  it('recover masks exactly at scale 1', async () => {
    const masks = shapes(24, 32);
    const transform = letterboxTransform(24, 32, 32);
    const canvas = masksToTarget(masks, transform);
    expect(canvas.shape).toEqual([1, 32, 32, 2]);
    const back = await unletterbox(canvas, transform, { threshold: 0.5 });
    canvas.dispose();
    expect(back).toEqual(masks);
  });

  it.each([
    [96, 0.95],
    [64, 0.95],
  ])('recover masks nearly through a downscale of 96×128 to %i', async (target, minIoU) => {
    const masks = shapes(96, 128);
    const transform = letterboxTransform(96, 128, target);
    const canvas = masksToTarget(masks, transform);
    const back = await unletterbox(canvas, transform, { threshold: 0.5 });
    canvas.dispose();
    for (const [j, mask] of back.entries()) expect(maskIoU(mask, masks[j])).toBeGreaterThan(minIoU);
  });

  it('bring logits at a lower resolution back to the original size (threshold 0)', async () => {
    const masks = shapes(60, 80);
    const transform = letterboxTransform(60, 80, 64);
    const logits = tf.tidy(() => resize(tf.sub(tf.mul(masksToTarget(masks, transform), 8), 4) as tf.Tensor4D, [32, 32], 'bilinear'));
    const back = await unletterbox(logits, transform);
    logits.dispose();
    for (const [j, mask] of back.entries()) expect(maskIoU(mask, masks[j])).toBeGreaterThan(0.9);
    await expectNoLeak(async () => {
      const t = masksToTarget(masks, transform);
      await unletterbox(t, transform);
      t.dispose();
    }, 'masksToTarget + unletterbox');
  });

  it('check shapes', async () => {
    const transform = letterboxTransform(24, 32, 32);
    expect(() => masksToTarget([new Uint8Array(10)], transform)).toThrow('mask 0 has 10 pixels, expected 24×32 = 768');
    const wrong = tf.zeros([1, 32, 16, 2]) as tf.Tensor4D;
    await expect(unletterbox(wrong, transform)).rejects.toThrow("expected maps [1, S', S', P] (square canvas), got [1, 32, 16, 2]");
    wrong.dispose();
  });
});

describe('imageTensor', () => {
  it('maps pixels to [-1, 1] at the stored size, without leaking', async () => {
    const image = { height: 1, width: 2, data: Uint8Array.from([0, 255, 51, 102, 153, 204]) };
    const t = imageTensor(image);
    expect(t.shape).toEqual([1, 1, 2, 3]);
    expect([...(await t.data())]).toEqual([...Float32Array.from(image.data, (p) => Math.fround(Math.fround(p / 127.5) - 1))]);
    t.dispose();
    await expectNoLeak(() => imageTensor(image), 'imageTensor');
    expect(() => imageTensor({ height: 2, width: 2, data: new Uint8Array(3) })).toThrow('imageTensor: image data has 3 bytes, expected 2×2×3 = 12 (RGB)');
  });
});

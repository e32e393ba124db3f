import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { resize, setBackend } from '@png/core';
import { expectClose, expectNoLeak, sharedFixturesDir } from '@png/core/testing';
import { AttnProcessor, DDPMScheduler, DiffusionBackbone, type AttentionProcessor } from '@png/diffusion-backbone';
import { generateSyntheticBenchmark, letterboxTransform, masksToTarget } from '@png/png-data';
import { readGroundedSamples } from './benchmark_samples';
import { crossAttentionIoU, phraseAttentionMaps, phraseMapIoUs, recordCrossAttention } from './cross_attention_maps';

const TINY = path.join(sharedFixturesDir(), 'tiny-sd');

const captions = ['two red squares on the grass', 'a circle above a blue square and the sky'];
const spans: Array<Array<[number, number]>> = [
  [
    [0, 15],
    [19, 28],
  ],
  [
    [0, 8],
    [15, 28],
    [33, 40],
  ],
];

/** Per map of `maps` [P, H, W], its smallest and largest value. */
async function ranges(maps: tf.Tensor3D): Promise<Array<[number, number]>> {
  const [p, h, w] = maps.shape;
  const values = await maps.data();
  return Array.from({ length: p }, (_, j) => {
    const map = values.subarray(j * h * w, (j + 1) * h * w);
    return [Math.min(...map), Math.max(...map)];
  });
}

// wasm: here the tiny UNet's forward takes ~0.1 s on wasm and ~15 s on cpu
describe('cross-attention maps of the tiny SD backbone (wasm)', () => {
  let backbone: DiffusionBackbone;
  let dir: string;
  beforeAll(async () => {
    await setBackend('wasm');
    backbone = await DiffusionBackbone.fromPretrained(TINY);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'png-xattn-'));
  });
  afterAll(() => {
    backbone.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  describe('recordCrossAttention', () => {
    it('records head-averaged probabilities of every cross-attention, leaving the UNet output bit-identical', async () => {
      const unet = backbone.unet;
      const latents = tf.randomNormal([2, 16, 16, 4], 0, 1, 'float32', 1) as tf.Tensor4D;
      const context = tf.randomNormal([2, 77, 32], 0, 1, 'float32', 2) as tf.Tensor3D;
      const processors = unet.attnProcessors();
      const plain = unet.forward(latents, 200, context);
      const recorded = recordCrossAttention(unet, latents, 200, context);

      expect(await recorded.sample.data()).toEqual(await plain.sample.data());
      expect(Object.entries(unet.attnProcessors()).every(([key, p]) => p === processors[key])).toBe(true);
      const blocks = unet.transformerBlocks();
      expect(Object.keys(recorded.crossAttention).sort()).toEqual(blocks.map((b) => `${b.path}.attn2`).sort());
      for (const { path: block, stride } of blocks) {
        const probs = recorded.crossAttention[`${block}.attn2`];
        expect(probs.shape).toEqual([2, 16 / stride, 16 / stride, 77]);
        const sums = await tf.sum(probs, -1).data();
        expect(Math.max(...sums.map((s) => Math.abs(s - 1)))).toBeLessThan(1e-5);
      }
      tf.dispose([plain, recorded]);
      await expectNoLeak(() => recordCrossAttention(unet, latents, 200, context), 'recordCrossAttention');
      tf.dispose([latents, context]);
    });

    it("refuses an adapter's processor mid-forward, then restores the processors without leaking", () => {
      const unet = backbone.unet;
      const latents = tf.randomNormal([1, 16, 16, 4], 0, 1, 'float32', 1) as tf.Tensor4D;
      const context = tf.randomNormal([1, 77, 32], 0, 1, 'float32', 2) as tf.Tensor3D;
      // the last cross-attention to run: the ones before it have been recorded when it throws
      const key = Object.keys(unet.attnProcessors())
        .filter((k) => k.startsWith('up_blocks') && k.endsWith('.attn2.processor'))
        .pop();
      if (key === undefined) throw new Error('the UNet has no up-block cross-attention processor');
      const adapter: AttentionProcessor = (attn, hidden, args) => AttnProcessor(attn, hidden, args);
      unet.setAttnProcessor({ ...unet.attnProcessors(), [key]: adapter });
      try {
        const live = tf.memory().numTensors;
        expect(() => recordCrossAttention(unet, latents, 200, context)).toThrow(`recordCrossAttention: ${key} is not the default AttnProcessor`);
        expect(tf.memory().numTensors).toBe(live);
        expect(unet.attnProcessors()[key]).toBe(adapter);
        expect(Object.values(unet.attnProcessors()).filter((p) => p !== AttnProcessor)).toHaveLength(1);
      } finally {
        unet.setAttnProcessor(AttnProcessor);
        tf.dispose([latents, context]);
      }
    });
  });

  describe('phraseAttentionMaps', () => {
    it('gives every phrase a [H, W] map in [0, 1] with max 1, reproducibly and without leaking', async () => {
      const images = tf.randomUniform([2, 32, 32, 3], -1, 1, 'float32', 5) as tf.Tensor4D;
      const { maps, truncated } = phraseAttentionMaps(backbone, images, captions, spans);
      expect(maps.map((m) => m.shape)).toEqual([
        [2, 32, 32],
        [3, 32, 32],
      ]);
      expect(truncated).toEqual([[], []]);
      for (const m of maps) for (const [min, max] of await ranges(m)) expect([min >= 0, max]).toEqual([true, 1]);
      const again = phraseAttentionMaps(backbone, images, captions, spans, { seed: 0, timestep: 200 });
      expect(await again.maps[1].data()).toEqual(await maps[1].data());
      tf.dispose([maps, again.maps]);
      await expectNoLeak(() => phraseAttentionMaps(backbone, images, captions, spans, { timestep: 900, seed: 3 }).maps, 'phraseAttentionMaps');
      images.dispose();
    });

    it("is the mean of the phrase's token probabilities, resized from each layer, averaged over layers, rescaled to [0, 1]", async () => {
      const images = tf.randomUniform([1, 32, 32, 3], -1, 1, 'float32', 5) as tf.Tensor4D;
      const [caption, span] = [captions[1], spans[1][1]]; // "a blue square"
      const { maps } = phraseAttentionMaps(backbone, images, [caption], [[span]], { timestep: 500, seed: 7 });
      const positions = backbone.tokenizer
        .chunk(caption)
        .tokenOfChar(...span)
        .map((t) => t.position);
      expect(positions.length).toBeGreaterThan(1);
      const recorded: tf.Tensor[] = [];
      const expected = tf.tidy(() => {
        const latents = backbone.encodeImages(images);
        const noisy = new DDPMScheduler(backbone.schedulerConfig).addNoise(latents, tf.randomNormal(latents.shape, 0, 1, 'float32', 7) as tf.Tensor4D, [500]);
        const layers = Object.values(recordCrossAttention(backbone.unet, noisy, 500, backbone.encodeText([caption]).hiddenStates).crossAttention);
        recorded.push(...layers);
        const perLayer = layers.map((probs) => resize(tf.mean(tf.gather(probs, positions, 3), 3, true) as tf.Tensor4D, [32, 32], 'bilinear')); // [1, 32, 32, 1]
        const mean = tf.div(tf.addN(perLayer), perLayer.length);
        return tf.div(tf.sub(mean, tf.min(mean)), tf.sub(tf.max(mean), tf.min(mean)));
      });
      await expectClose(maps[0], await expected.data(), 1e-5, 'phrase map'); // min–max rescaling of a nearly flat map amplifies float32 rounding
      tf.dispose([images, maps, expected, recorded]);
    });

    it('leaves out a phrase whose tokens fall beyond the 77-token truncation', async () => {
      const caption = `${'a dog on the grass, '.repeat(20)}and a cat`;
      const images = tf.randomUniform([1, 32, 32, 3], -1, 1, 'float32', 5) as tf.Tensor4D;
      const { maps, truncated } = phraseAttentionMaps(
        backbone,
        images,
        [caption],
        [
          [
            [0, 5],
            [caption.length - 5, caption.length],
          ],
        ],
      );
      expect(truncated).toEqual([[1]]);
      expect(await ranges(maps[0])).toEqual([
        [expect.any(Number), 1],
        [0, 0],
      ]);
      tf.dispose([images, maps]);
    });

    it('rejects bad input with errors that name it', () => {
      const images = tf.zeros([2, 32, 32, 3]) as tf.Tensor4D;
      const odd = tf.zeros([2, 36, 32, 3]) as tf.Tensor4D;
      expect(() => phraseAttentionMaps(backbone, images, [], [])).toThrow('phraseAttentionMaps: no captions');
      expect(() => phraseAttentionMaps(backbone, images, captions.slice(0, 1), spans.slice(0, 1))).toThrow(
        'phraseAttentionMaps: 2 images, 1 captions and 1 phrase-span lists',
      );
      expect(() => phraseAttentionMaps(backbone, images, captions, spans.slice(0, 1))).toThrow('2 images, 2 captions and 1 phrase-span lists');
      expect(() => phraseAttentionMaps(backbone, images, captions, [spans[0], [[33, 41]]])).toThrow(
        'narrative 1, phrase 0: span [33, 41) is not a non-empty range inside the 40-character caption',
      );
      expect(() => phraseAttentionMaps(backbone, odd, captions, spans)).toThrow('images are 36×32 (H×W); both sides must be multiples of 8');
      expect(() => phraseAttentionMaps(backbone, images, captions, spans, { timestep: 1000 })).toThrow('timestep 1000 is not an integer in [0, 1000)');
      tf.dispose([images, odd]);
    });
  });

  describe('phraseMapIoUs', () => {
    // an 8×4 image: phrase 0 is its left half, phrase 1 its right half
    const [h, w] = [8, 4];
    const left = Uint8Array.from({ length: h * w }, (_, k) => (k % w < 2 ? 1 : 0));
    const right = left.map((v) => 1 - v);

    it("scores a map equal to the mask 1, a disjoint one 0, half of it 0.5, with the threshold relative to each map's range", async () => {
      const firstColumn = left.map((v, k) => (k % w === 0 ? v : 0));
      const maps = tf.tensor3d([...left, ...left, ...firstColumn], [3, h, w]);
      const dim = tf.mul(maps, 0.3) as tf.Tensor3D;
      expect(await phraseMapIoUs(maps, [left, right, left])).toEqual([1, 0, 0.5]);
      expect(await phraseMapIoUs(dim, [left, right, left])).toEqual([1, 0, 0.5]);
      const graded = tf.tensor3d(
        Float32Array.from(left, (v, k) => (v ? 1 : k % w === 2 ? 0.4 : 0)),
        [1, h, w],
      ); // columns 1, 1, 0.4, 0
      expect(await phraseMapIoUs(graded, [left])).toEqual([1]);
      expect((await phraseMapIoUs(graded, [left], { threshold: 0.3 }))[0]).toBeCloseTo(2 / 3, 6); // maskIoU is float32
      expect(await phraseMapIoUs(tf.add(graded, 5) as tf.Tensor3D, [left])).toEqual([1]); // an offset does not matter
      await expectNoLeak(() => phraseMapIoUs(maps, [left, right, left]), 'phraseMapIoUs');
      await expect(phraseMapIoUs(maps, [left, right])).rejects.toThrow('phraseMapIoUs: 3 maps but 2 ground-truth masks');
      await expect(phraseMapIoUs(maps, [left, right, left.subarray(1)])).rejects.toThrow("mask 2 has 31 pixels, expected 32 (the image's 8×4)");
      tf.dispose([maps, dim, graded]);
    });

    it('scores maps on a letterbox canvas at the original size', async () => {
      const transform = letterboxTransform(h, w, 8); // scale 1, two padding columns each side
      const canvas = tf.tidy(() => tf.transpose(tf.squeeze(masksToTarget([left, right], transform), [0]), [2, 0, 1]) as tf.Tensor3D); // [2, 8, 8]
      expect(await phraseMapIoUs(canvas, [left, right], { transform })).toEqual([1, 1]);
      expect(await phraseMapIoUs(canvas, [right, left], { transform })).toEqual([0, 0]);
      await expectNoLeak(() => phraseMapIoUs(canvas, [left, right], { transform }), 'phraseMapIoUs on a canvas');
      canvas.dispose();
    });
  });

  it('crossAttentionIoU scores every grounded phrase of a split, images at their stored size or letterboxed', async () => {
    for (const size of [
      [64, 64],
      [60, 44],
    ] as const) {
      const data = path.join(dir, `${size[0]}x${size[1]}`);
      await generateSyntheticBenchmark(data, { seed: 3, train: 0, val: 2, size, longCaptionRate: 0.5 });
      const { samples } = await readGroundedSamples(data, 'val2017');
      const live = tf.memory().numTensors;
      const result = await crossAttentionIoU(backbone, data, { imageSize: 32, batchSize: 2 });
      expect(tf.memory().numTensors).toBe(live);
      expect(result.skipped).toBeGreaterThan(0); // long captions (longCaptionRate) put phrases past 77 tokens
      expect(result.phrases.overall + result.skipped).toBe(samples.reduce((n, s) => n + s.phrases.length, 0));
      expect(result.phrases.things + result.phrases.stuff).toBe(result.phrases.overall);
      for (const iou of Object.values(result.meanIoU)) expect(iou >= 0 && iou <= 1).toBe(true);
      expect(result.skippedRecords).toEqual([]);
    }
    // the generated train split is empty (train: 0)
    await expect(crossAttentionIoU(backbone, path.join(dir, '64x64'), { split: 'train2017', imageSize: 32 })).rejects.toThrow(
      /64x64: split train2017 has no record with a grounded phrase/,
    );
  });
});

// Quickstart: a frozen Stable Diffusion reads an image and a narrative; EIPA threads the phrase
// state through the UNet; the up-path feature pyramid and per-level phrase states come out, and
// the PNG metric scores masks. Runs on the wasm backend with no download.
//   npm run quickstart   [-- --model <diffusers pipeline folder>]
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { setBackend } from '@png/core';
import { DiffusionBackbone, FeatureTaps, encodePhrases } from '@png/diffusion-backbone';
import { PhraseAdapter, attachEipa } from '@png/eipa';
import { PngEvaluator, summarizeMetrics } from '@png/png-metrics';

const here = path.dirname(new URL(import.meta.url).pathname);
const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: path.join(here, '..', 'packages', 'diffusion-backbone', 'models', 'png-tiny-sd') },
    backend: { type: 'string', default: 'wasm' },
  },
});

await setBackend(args.backend);
const backbone = await DiffusionBackbone.fromPretrained(args.model);
console.log(`backend ${tf.getBackend()}; UNet ${backbone.unet.numParameters().toLocaleString()} parameters from ${args.model}`);

// A narrative and the character spans of its noun phrases.
const caption = 'In this picture we can see two dogs on the grass and a person.';
const phrases = ['two dogs', 'the grass', 'a person'].map((p) => [caption.indexOf(p), caption.indexOf(p) + p.length]);

// Phrase features: the mean CLIP feature of each phrase's tokens ([1, P, D]) and the phrase mask ([1, P]).
const phraseFeatures = encodePhrases(backbone.tokenizer, backbone.textEncoder, [{ caption, phrases }], { maxPhrases: phrases.length });

// The image: a smooth synthetic pattern in [-1, 1], NHWC.
const size = 8 * backbone.imageMultiple;
const image = tf.tidy(() => tf.sin(tf.mul(tf.reshape(tf.range(0, size * size * 3), [1, size, size, 3]), 0.01)));

const adapter = PhraseAdapter.create(backbone.unet, { gate_init: 0.1 }, { seed: 0 });
const taps = new FeatureTaps(backbone.unet, { imageStride: backbone.vae.downsampleFactor });
const eipa = attachEipa(backbone.unet, adapter, { levels: taps.levels });
const latents = backbone.encodeImages(image);
const { outputs } = backbone.unet.forward(latents, 1, phraseFeatures.tensor, {
  encoderAttentionMask: phraseFeatures.mask,
  context: eipa.context(phraseFeatures),
});
console.log(`EIPA: ${adapter.blocks.length} adapted blocks, ${adapter.numParameters().toLocaleString()} trainable parameters`);
const states = eipa.phraseStates(outputs, phraseFeatures); // aligned with the tapped levels: MLMA's {images, phrases}
taps.pyramid(outputs).forEach((level, i) => {
  console.log(`  ${level.name}: image features [${level.tensor.shape}] at stride ${level.stride}, phrase state [${states[i].tensor.shape}]`);
});

// The PNG metric on two toy masks.
const evaluator = new PngEvaluator();
evaluator.process({ label: 'toy', height: 2, width: 2, phrases: [{ label: 'two dogs', isThing: true, isPlural: true, mask: Uint8Array.from([1, 1, 0, 0]) }] }, [
  Uint8Array.from([1, 0, 0, 0]),
]);
console.log('AR of a half-right mask:', summarizeMetrics(evaluator.evaluate()).overall);

tf.dispose([phraseFeatures, image, latents, outputs]);
taps.remove();
eipa.detach();
adapter.dispose();
backbone.dispose();

// tfjs-core's Node (CommonJS) bundle gives tensors no chained ops (`x.slice(…)`, `x.reshape(…)`):
// their registrations ship only as ES modules under dist/, as the gradients' do (gradients.ts).
// Bundled into @png/core's build (jest maps the path to a CommonJS bundle made by
// scripts/jest_global_setup.cjs), they patch tfjs' global Tensor class, so every tensor, whoever
// made it, has them in Node as in browsers. tfjs-core itself loads first (see gradients.ts).
import '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops';

// tfjs-core's Node (CommonJS) bundle registers no gradients: they ship only as ES modules under
// dist/. Importing them here puts them into @png/core's own build (tsup bundles this path; jest maps
// it to a CommonJS bundle made by scripts/jest_global_setup.cjs), so tf.grads works in Node,
// browsers and tests alike. The registry lives on tfjs' global namespace, shared by every copy.
// tfjs-core itself loads first: the first copy to load makes the global engine, and only the real
// one gives its tensors chained ops (CommonJS, as in jest, loads in import order).
import '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-core/dist/register_all_gradients';

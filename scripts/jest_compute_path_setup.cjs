// A jest project on another compute path of the wasm backend (jest.config.cjs, `computePathProject`):
// its environment variables, set before the suite imports @png/core.
Object.assign(process.env, globalThis.PNG_COMPUTE_PATH.env);

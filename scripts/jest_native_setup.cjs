// The jest project 'native kernels' (jest.config.cjs): setBackend('wasm') takes the native compute path.
process.env.PNG_NATIVE = '1';

import './gradients';
import './chained_ops';
export type { ShapeSpec, FeatureMap, FeaturePyramid, TextEncoding, PhraseFeatures, CaptionTokens, MaskLogits, Disposable } from './types';
export { ConfigError, check, parseJsonObject, resolveConfig, isPositiveInt, isNonNegativeInt, isFiniteNumber } from './config';
export {
  SafetensorsBytes,
  SafetensorsFile,
  SafetensorsError,
  serializeSafetensors,
  writeSafetensorsFile,
  parseHeader,
  decodeTensor,
  numElements,
  type SafetensorsDtype,
  type TensorInfo,
  type TensorData,
  type WeightSource,
  withLoadProgress,
  type LoadProgress,
} from './safetensors';
export { checkInputFile, readInputFile } from './input_file';
export { nodeOnly, type NodeOnlyModules } from './node_only';
export {
  saveModule,
  openModule,
  openModuleFiles,
  fetchFile,
  fetchModuleFiles,
  joinUrl,
  CONFIG_FILE,
  WEIGHTS_FILE,
  type ModuleFiles,
  type FetchFunction,
} from './checkpoint';
export { WeightScope, Parameters, type Init } from './weights';
export { seededNormal, tfSeed } from './random';
export { ParameterModule } from './module';
export { Linear } from './nn/linear';
export { matMul2d, batchMatMul } from './backends/matmul';
export { resize, interpolationMatrix, type ResizeMode } from './nn/resize';
export { Conv2d, type Conv2dPadding } from './nn/conv2d';
export { GroupNorm } from './nn/group_norm';
export { LayerNorm } from './nn/layer_norm';
export { Embedding } from './nn/embedding';
export { scaledDotProductAttention, attentionWithProbs, splitHeads, mergeHeads, keyMaskBias, causalBias, MASKED_LOGIT } from './nn/attention';
export { silu, gelu, geluTanh, quickGelu, activation, isActivationName, type ActivationName } from './nn/activations';
export { ForwardContext, contextKey, matchesPath, type BlockHook, type ContextKey, type PathMatch } from './hooks/hooks';
export { HookRegistry, HookedModule, ModelRuntime, hookedLeaf } from './hooks/hooked_module';
export { HostOffload, applyGroupOffloading } from './hooks/group_offloading';
export { applyGradientCheckpointing, type GradientCheckpointingOptions } from './hooks/gradient_checkpointing';
export { setBackend, backendStrategy, gpuEmulator, BACKENDS, type BackendName, type BackendOptions } from './backends/backend';
export { portableStrategy, type BackendStrategy, type Conv2dArgs } from './backends/backend_strategy';
export { registerWasmTrainingKernels, WASM_TRAINING_KERNELS, wasmKernelOptions } from './backends/wasm/wasm_kernels';
export { positionEmbeddingSine, positionEmbeddingSineTable } from './nn/position_encoding';
export { wasmComputePath } from './backends/wasm/native_kernels';
export { recompute, type RecomputeOptions } from './nn/recompute';

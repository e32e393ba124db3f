export { MultiLevelMutualAggregation, type MlmaInputs, type MlmaOutput } from './mlma';
export { DEFAULT_MLMA_CONFIG, SD15_MLMA_CONFIG, resolveMlmaConfig, levelStrides, skipStrides, type MlmaConfig, type PhraseFusion } from './config';
export { MlmaLevel, MlmaSkipLevel, CrossAttention } from './fusion_block';

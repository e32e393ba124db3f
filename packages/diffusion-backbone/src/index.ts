export { UNet2DConditionModel, SD15_UNET_CONFIG, resolveUNetConfig, type UNet2DConditionConfig, type UNet2DConditionOutput, type UNetForwardOptions } from './models/unet_2d_condition';
export { Attention, AttnProcessor, type AttentionProcessor, type AttentionProcessorArgs } from './models/attention_processor';
export { FeatureTaps, featureKey } from './feature_taps';
export * from './clip/index';
export { readConfigJson, openWeights, weightsFromBytes, saveComponent, type ComponentOptions } from './component_files';

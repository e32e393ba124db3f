/** Training machinery of the @png models: AdamW, learning-rate schedules, the trainer, checkpoint folders and the one resumable loop. */
export { AdamW, DEFAULT_ADAMW_CONFIG, type AdamWConfig, type AdamWOptions, type AdamWState } from './adamw';
export { warmupPoly, DEFAULT_WARMUP_POLY_CONFIG, type LrSchedule, type WarmupPolyConfig } from './lr_schedule';
export {
  Trainer,
  TrainingDivergedError,
  trainableVariables,
  DEFAULT_TRAINER_CONFIG,
  type TrainerConfig,
  type TrainerOptions,
  type StepResult,
} from './trainer';
export {
  saveTrainingCheckpoint,
  loadTrainingCheckpoint,
  readTrainingCheckpointState,
  type TrainingCheckpoint,
  type TrainingCheckpointState,
} from './checkpoint_dir';
export { BatchOrder } from './batch_order';
export { guardRun, type RunGuard } from './run_guard';
export {
  runTrainingLoop,
  latestCheckpoint,
  type LoopCheckpoint,
  type TrainingLoopOptions,
  type TrainingLoopProgress,
  type TrainingLoopResult,
} from './training_loop';

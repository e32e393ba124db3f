/** The training infrastructure of @png/pipeline: optimizer, schedule, trainer and resumable checkpoints. */
export { AdamW, ADAMW_DEFAULTS, type AdamWConfig, type AdamWOptions, type AdamWState } from './adamw';
export { warmupPoly, WARMUP_POLY_DEFAULTS, type LrSchedule, type WarmupPolyConfig } from './lr_schedule';
export { Trainer, TrainingDivergedError, trainableVariables, TRAINER_DEFAULTS, type TrainerConfig, type TrainerOptions, type StepResult } from './trainer';
export {
  saveTrainingCheckpoint,
  loadTrainingCheckpoint,
  TRAINABLE_FILE,
  OPTIMIZER_FILE,
  TRAINER_STATE_FILE,
  CHECKPOINT_FORMAT_VERSION,
  type TrainingCheckpoint,
  type TrainingCheckpointState,
} from './checkpoint_dir';

export { SeahorseError, StartupError, UsageError } from './errors.ts';
export {
  type FlagKind,
  type FlagName,
  type FlagResult,
  type FlagSpec,
  formatHelp,
  ParsedFlags,
  parseDuration,
  parseFlags,
} from './flags.ts';
export { createLogger, type Logger, type LoggerOptions, type LogLevel, logLevels } from './log.ts';
export { describeFatal, exitCodes, runMain } from './main.ts';
export {
  delay,
  formatAddress,
  Lifecycle,
  type LifecycleOptions,
  type ListenAddress,
  listen,
} from './serve.ts';

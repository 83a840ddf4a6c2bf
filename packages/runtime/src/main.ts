// The outermost frame of every bin: user mistakes end in one line and a usage exit code,
// never a stack trace.
import { SeahorseError, StartupError, UsageError } from './errors.ts';

export const exitCodes = { ok: 0, runtime: 1, usage: 2 } as const;

/** Formats an error for a person; returns the exit code it deserves. */
export function describeFatal(program: string, error: unknown): { line: string; code: number } {
  if (error instanceof UsageError) {
    return {
      line: `${program}: ${error.message}\nRun '${program} --help' for usage.`,
      code: exitCodes.usage,
    };
  }
  if (error instanceof StartupError || error instanceof SeahorseError) {
    return { line: `${program}: ${error.message}`, code: exitCodes.runtime };
  }
  const detail = error instanceof Error ? (error.stack ?? error.message) : String(error);
  return { line: `${program}: unexpected error: ${detail}`, code: exitCodes.runtime };
}

/** Runs a bin's main function, turning thrown errors into a message and an exit code. */
export function runMain(program: string, main: () => Promise<void>): void {
  main().catch((error: unknown) => {
    const { line, code } = describeFatal(program, error);
    process.stderr.write(`${line}\n`);
    process.exitCode = code;
    // Servers may already hold the event loop open; leave now that the reason is printed.
    setImmediate(() => process.exit(code));
  });
}

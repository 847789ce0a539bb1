/**
 * Errors meant for the operator. An `AgentError` carries the exit code and an
 * optional hint; main prints its message without a stack. Any other error is
 * a bug and is printed with its stack.
 *
 * Exit codes: 0 done, 1 some orders failed or a runtime error, 2 bad usage or
 * config, 3 another run holds the lock.
 */

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
export const EXIT_LOCKED = 3;

export interface AgentErrorOptions {
  hint?: string;
  cause?: unknown;
}

export class AgentError extends Error {
  readonly exitCode: number;
  readonly hint?: string;
  constructor(
    message: string,
    exitCode = EXIT_FAILED,
    options?: AgentErrorOptions,
  ) {
    super(message, { cause: options?.cause });
    this.name = "AgentError";
    this.exitCode = exitCode;
    this.hint = options?.hint;
  }
}

/** A command line that cannot be understood. */
export class UsageError extends AgentError {
  constructor(message: string, options?: AgentErrorOptions) {
    super(message, EXIT_USAGE, options);
    this.name = "UsageError";
  }
}

/** A config file that is missing, malformed or names something absent. */
export class ConfigError extends AgentError {
  /** The dotted config key at fault, when there is one. */
  readonly key?: string;
  constructor(message: string, key?: string, options?: AgentErrorOptions) {
    super(message, EXIT_USAGE, options);
    this.name = "ConfigError";
    this.key = key;
  }
}

/** Another process holds the run lock. */
export class LockHeldError extends AgentError {
  constructor(message: string, options?: AgentErrorOptions) {
    super(message, EXIT_LOCKED, options);
    this.name = "LockHeldError";
  }
}

/**
 * The operator asked the agent to stop (SIGTERM, Ctrl-C): the reason of the
 * aborted signal, so work cut short by it is told from a failure.
 */
export class InterruptedError extends AgentError {
  constructor() {
    super("Stopped on request (SIGTERM or Ctrl-C)", EXIT_FAILED, {
      hint: "run the command again to continue",
    });
    this.name = "InterruptedError";
  }
}

/** A database stayed locked by another writer for longer than we wait. */
export class DatabaseBusyError extends AgentError {
  constructor(message: string, options?: AgentErrorOptions) {
    super(message, EXIT_FAILED, options);
    this.name = "DatabaseBusyError";
  }
}

/**
 * How the engine must react to a storage failure:
 * - `retry`: transient; the storage already retried, the order is `failed`
 *   and is tried again on the next run;
 * - `skip`: this order can never go to this target as it is (name
 *   rejected, file too large); the order is `skipped` with the reason;
 * - `stop`: the whole run must stop and delete nothing more (quota full,
 *   login needed).
 */
export type StorageFailure = "retry" | "skip" | "stop";

export class StorageError extends AgentError {
  readonly failure: StorageFailure;
  /** HTTP status or API error number, when the target is remote. */
  readonly code?: number | string;
  constructor(
    message: string,
    failure: StorageFailure,
    options?: AgentErrorOptions & { code?: number | string },
  ) {
    super(message, EXIT_FAILED, options);
    this.name = "StorageError";
    this.failure = failure;
    this.code = options?.code;
  }
}

/** The cloud needs a (new) login before anything can be done. */
export class AuthRequiredError extends StorageError {
  constructor(message: string, options?: AgentErrorOptions) {
    super(message, "stop", {
      hint: "run 'image-agent baidu login --device' (or --code CODE)",
      ...options,
    });
    this.name = "AuthRequiredError";
  }
}

/** Returns the message of any thrown value. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

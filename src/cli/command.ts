/**
 * What every command shares: its shape, the dependencies main hands it, and
 * argument parsing that turns a bad flag into a usage error (exit 2) naming
 * the flag.
 */

import { parseArgs, type ParseArgsConfig } from "node:util";
import type { Clock } from "../clock.ts";
import type { Logger, Progress } from "../log.ts";
import { UsageError } from "../errors.ts";

/** Everything a command may touch, built once by main. */
export interface Deps {
  clock: Clock;
  log: Logger & { progress: Progress };
  /** Results: the only output under --json. */
  stdout: (text: string) => void;
  env: (name: string) => string | undefined;
  /** True when a person is at the terminal (stdin and stderr are TTYs). */
  interactive: boolean;
  /** Reads one line typed by the operator (for prompts). */
  prompt: (question: string) => string | null;
  /** Aborted on SIGTERM / Ctrl-C: finish the order in hand, then stop. */
  signal: AbortSignal;
  /** How the command was started: "manual", "daemon", "timer". */
  trigger: string;
  /** Path of the running program, for scheduler entries. */
  execPath: string;
  fetch: typeof fetch;
}

export interface Command {
  name: string;
  /** One line for the command list. */
  summary: string;
  /** Full `--help` text, wrapped at about 78 columns. */
  help: string;
  /**
   * Logged on the first SIGTERM or Ctrl-C; by default it says the order in
   * hand is finished first.
   */
  stopNotice?: string;
  run(deps: Deps, argv: string[]): Promise<number>;
}

/** Options every command accepts. */
export const COMMON_OPTIONS = {
  config: { type: "string", short: "c" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  verbose: { type: "boolean", short: "v" },
  quiet: { type: "boolean", short: "q" },
} as const;

export const COMMON_HELP = `Common options:
  -c, --config PATH   config file (default: $IMAGE_AGENT_CONFIG,
                      ./image-agent.json, /etc/image-agent/config.json)
      --json          print one JSON object on stdout
  -v, --verbose       more detail in the log (debug level)
  -q, --quiet         only warnings and errors in the log
  -h, --help          this help`;

export const EXIT_CODES_HELP =
  `Exit codes: 0 done; 1 some orders failed or a runtime error;
  2 bad usage or config; 3 another run holds the lock.`;

export function parseCommandArgs<
  T extends NonNullable<ParseArgsConfig["options"]>,
>(
  command: string,
  argv: string[],
  options: T,
  allowPositionals = false,
) {
  try {
    return parseArgs({
      args: argv,
      options: { ...COMMON_OPTIONS, ...options },
      allowPositionals,
      strict: true,
    });
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    throw new UsageError(
      `Cannot read the arguments of '${command}': ${
        msg.replace(/\. To specify a positional argument.*$/s, "")
      }`,
      { hint: `see 'image-agent ${command} --help'` },
    );
  }
}

/** Prints an object as the command's JSON result. */
export function printJson(deps: Deps, value: unknown): void {
  deps.stdout(JSON.stringify(value, null, 2) + "\n");
}

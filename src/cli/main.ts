/**
 * The command line: picks the command, builds its dependencies, turns any
 * error into a message and an exit code. Only `main.ts` exits.
 */

import { createLogger, type Level } from "../log.ts";
import { systemClock } from "../clock.ts";
import {
  AgentError,
  errorMessage,
  EXIT_FAILED,
  EXIT_USAGE,
  InterruptedError,
  UsageError,
} from "../errors.ts";
import type { Command, Deps } from "./command.ts";
import { COMMANDS } from "./commands.ts";
import { BUILD, VERSION } from "../version.ts";

export function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  const lines = COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return `image-agent ${VERSION}: back up, verify and clean up the HD images of shipped orders

Usage: image-agent COMMAND [OPTIONS]

Commands:
${lines.join("\n")}

Run 'image-agent COMMAND --help' for the options of a command.
Exit codes: 0 done; 1 some orders failed or a runtime error;
  2 bad usage or config; 3 another run holds the lock.
`;
}

export interface MainOptions {
  /** Overrides for tests; defaults are the real process. */
  deps?: Partial<Deps>;
}

export async function main(
  args: string[],
  options: MainOptions = {},
): Promise<number> {
  const json = args.includes("--json");
  const level: Level = args.includes("--verbose") || args.includes("-v")
    ? "debug"
    : args.includes("--quiet") || args.includes("-q")
    ? "warn"
    : "info";
  const log = createLogger({ level });
  const controller = new AbortController();
  const stdoutWrite = (text: string) => {
    const bytes = new TextEncoder().encode(text);
    let off = 0;
    while (off < bytes.length) {
      off += Deno.stdout.writeSync(bytes.subarray(off));
    }
  };
  const deps: Deps = {
    clock: systemClock,
    log,
    stdout: stdoutWrite,
    env: (n) => Deno.env.get(n),
    interactive: Deno.stdin.isTerminal() && Deno.stderr.isTerminal(),
    prompt: (q) => prompt(q),
    signal: controller.signal,
    trigger: Deno.env.get("IMAGE_AGENT_TRIGGER") ?? "manual",
    execPath: Deno.execPath(),
    fetch: globalThis.fetch,
    ...options.deps,
  };

  const [name, ...rest] = args;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    const topic = name === "help" ? rest[0] : undefined;
    const cmd = topic ? COMMANDS.find((c) => c.name === topic) : undefined;
    deps.stdout(cmd ? cmd.help : usage());
    return name ? 0 : EXIT_USAGE;
  }
  if (name === "--version" || name === "version") {
    deps.stdout(`image-agent ${VERSION} (${BUILD})\n`);
    return 0;
  }
  const command: Command | undefined = COMMANDS.find((c) => c.name === name);
  if (!command) {
    return report(
      deps,
      json,
      new UsageError(`Unknown command "${name}"`, {
        hint: "run 'image-agent --help' for the list",
      }),
    );
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    deps.stdout(command.help);
    return 0;
  }

  const onSignal = () => {
    if (!controller.signal.aborted) {
      deps.log.warn(
        command.stopNotice ??
          "Stopping: finishing the order in hand (press Ctrl-C again to abort at once)",
      );
      controller.abort(new InterruptedError());
    } else {
      Deno.exit(130);
    }
  };
  const signals: Deno.Signal[] = Deno.build.os === "windows"
    ? ["SIGINT"]
    : ["SIGINT", "SIGTERM"];
  if (!options.deps?.signal) {
    for (const s of signals) Deno.addSignalListener(s, onSignal);
  }
  try {
    return await command.run(deps, rest);
  } catch (err) {
    return report(deps, json, err);
  } finally {
    if (!options.deps?.signal) {
      for (const s of signals) Deno.removeSignalListener(s, onSignal);
    }
  }
}

function report(deps: Deps, json: boolean, err: unknown): number {
  if (err instanceof AgentError) {
    deps.log.error(err.message);
    if (err.hint) deps.log.info(`hint: ${err.hint}`);
    if (json) {
      deps.stdout(
        JSON.stringify({
          error: {
            message: err.message,
            kind: err.name,
            exitCode: err.exitCode,
            ...(err.hint ? { hint: err.hint } : {}),
          },
        }) + "\n",
      );
    }
    return err.exitCode;
  }
  deps.log.error(
    `Unexpected internal error: ${errorMessage(err)}\n${
      err instanceof Error ? err.stack ?? "" : ""
    }`,
  );
  if (json) {
    deps.stdout(
      JSON.stringify({
        error: {
          message: errorMessage(err),
          kind: "InternalError",
          exitCode: 1,
        },
      }) + "\n",
    );
  }
  return EXIT_FAILED;
}

/** `image-agent schedule`, `install`, `uninstall`, `daemon`. */

import type { Command } from "./command.ts";
import { UsageError } from "../errors.ts";

// TODO: placeholders until the scheduler work lands; they only say so.
function notYet(name: string, summary: string): Command {
  return {
    name,
    summary,
    help: `Usage: image-agent ${name}\n`,
    run() {
      return Promise.reject(
        new UsageError(`'${name}' is not available in this build`),
      );
    },
  };
}

export const scheduleCommand = notYet(
  "schedule",
  "write OS scheduler files: schedule export --format F --out DIR",
);
export const installCommand = notYet(
  "install",
  "register the nightly run with systemd, cron, Task Scheduler or launchd",
);
export const uninstallCommand = notYet(
  "uninstall",
  "remove what 'install' registered",
);
export const daemonCommand = notYet(
  "daemon",
  "stay up and run on schedule.cron (Deno.cron)",
);

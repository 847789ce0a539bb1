/** The command table: one line per command, in the order `--help` lists them. */

import type { Command } from "./command.ts";
import { baiduCommand } from "./baidu.ts";
import { daemonCommand } from "./daemon.ts";
import {
  installCommand,
  scheduleCommand,
  uninstallCommand,
} from "./schedule.ts";
import { initCommand } from "./init.ts";
import { migrateCommand } from "./migrate.ts";
import { backupCommand, cleanupCommand, runCommand } from "./run.ts";
import { restoreCommand } from "./restore.ts";
import { logCommand, runsCommand, statusCommand } from "./status.ts";
import { pruneCommand } from "./prune.ts";

export const COMMANDS: Command[] = [
  initCommand,
  migrateCommand,
  runCommand,
  backupCommand,
  cleanupCommand,
  restoreCommand,
  statusCommand,
  logCommand,
  runsCommand,
  pruneCommand,
  baiduCommand,
  scheduleCommand,
  installCommand,
  uninstallCommand,
  daemonCommand,
];

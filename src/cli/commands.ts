/** The command table: one line per command, in the order `--help` lists them. */

import type { Command } from "./command.ts";
import { baiduCommand } from "./baidu.ts";
import {
  daemonCommand,
  installCommand,
  scheduleCommand,
  uninstallCommand,
} from "./schedule.ts";

export const COMMANDS: Command[] = [
  baiduCommand,
  scheduleCommand,
  installCommand,
  uninstallCommand,
  daemonCommand,
];

/** The command table: one line per command, in the order `--help` lists them. */

import type { Command } from "./command.ts";

export const COMMANDS: Command[] = [];

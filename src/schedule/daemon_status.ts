/**
 * What a running daemon tells `status`: `state.dir/daemon.json` (its
 * schedule and next run), beside the lock `daemon.lock` that it holds while
 * it runs. The lock is the proof of life: the operating system drops it
 * when the daemon dies, so a file left by a killed daemon is not believed.
 */

import { join } from "node:path";
import { lockHolder } from "../ledger/lock.ts";

/** The name of the daemon's lock in state.dir (`daemon.lock`). */
export const DAEMON_LOCK = "daemon";

export interface DaemonStatus {
  pid: number;
  host: string;
  /** `YYYY-MM-DD HH:MM:SS` UTC. */
  since: string;
  cron: string;
  timezone: string;
  /** ISO-8601; null until the daemon has worked it out. */
  nextRun: string | null;
}

const FILE = "daemon.json";

/** Writes the status in one rename, so a reader never sees half of it. */
export function writeDaemonStatus(stateDir: string, status: DaemonStatus) {
  const file = join(stateDir, FILE);
  Deno.writeTextFileSync(`${file}.new`, JSON.stringify(status) + "\n", {
    mode: 0o600,
  });
  Deno.renameSync(`${file}.new`, file);
}

export function removeDaemonStatus(stateDir: string): void {
  try {
    Deno.removeSync(join(stateDir, FILE));
  } catch { /* not there */ }
}

/** The daemon running on this state folder, or null when there is none. */
export function runningDaemon(stateDir: string): DaemonStatus | null {
  const holder = lockHolder(stateDir, DAEMON_LOCK);
  if (!holder) return null;
  try {
    const status = JSON.parse(
      Deno.readTextFileSync(join(stateDir, FILE)),
    ) as DaemonStatus;
    if (status.pid === holder.pid) return status;
  } catch { /* starting, or the file is gone */ }
  return {
    pid: holder.pid,
    host: holder.host,
    since: holder.since,
    cron: "",
    timezone: "",
    nextRun: null,
  };
}

/**
 * `image-agent daemon`: argument parsing, the daemon's lock and status file,
 * and the run command it starts on each slot; the timing is in
 * src/schedule/daemon.ts.
 */

import { hostname } from "node:os";
import {
  type Command,
  COMMON_HELP,
  EXIT_CODES_HELP,
  parseCommandArgs,
} from "./command.ts";
import { runCommand } from "./run.ts";
import { readScheduleConfig } from "./schedule.ts";
import { sqlTime } from "../clock.ts";
import { AgentError } from "../errors.ts";
import { acquireRunLock } from "../ledger/lock.ts";
import { runDaemon, type RunOnce } from "../schedule/daemon.ts";
import {
  DAEMON_LOCK,
  type DaemonStatus,
  removeDaemonStatus,
  writeDaemonStatus,
} from "../schedule/daemon_status.ts";
import { denoCronTicks, type TickSource } from "../schedule/ticks.ts";

const DAEMON_HELP = `Usage: image-agent daemon [OPTIONS]

Stay up and run the full pass on schedule.cron in schedule.timezone, for
use under any supervisor (systemd, Docker, NSSM, supervisord...). Runs are
recorded with trigger "daemon"; 'image-agent status' shows the daemon and
its next run. One daemon per state folder.

The timer is Deno.cron, ticking every UTC minute; on each tick the daemon
works out in the configured zone whether a run is due, so runs happen at
the configured local time across daylight-saving changes: a local time
that does not exist that night (spring) is skipped, one that occurs twice
(autumn) runs once. Runs never overlap; a run due while another is going
on is skipped, and a run missed while the daemon was down is not made up
(use the systemd timer for that).

SIGTERM or Ctrl-C: an idle daemon exits at once; a running one finishes
the order in hand, records the run, then exits with code 0.

Options:
${COMMON_HELP}

${EXIT_CODES_HELP}
`;

/** `daemon`, with its timer (tests pass ticks driven by a manual clock). */
export function makeDaemonCommand(ticks: () => TickSource): Command {
  return {
    name: "daemon",
    summary: "stay up and run on schedule.cron in schedule.timezone",
    help: DAEMON_HELP,
    stopNotice: "Stopping the daemon (press Ctrl-C again to abort at once)",
    async run(deps, argv) {
      const { values } = parseCommandArgs("daemon", argv, {});
      const config = readScheduleConfig(deps, values.config, true);
      const stateDir = config.state.dir;
      const lock = await acquireRunLock(stateDir, {
        command: "daemon",
        name: DAEMON_LOCK,
      });
      const status: DaemonStatus = {
        pid: Deno.pid,
        host: hostname(),
        since: sqlTime(deps.clock.now()),
        cron: config.schedule.cron,
        timezone: config.schedule.timezone,
        nextRun: null,
      };
      const runOnce: RunOnce = async (signal) => {
        try {
          return await runCommand.run(
            { ...deps, trigger: "daemon", signal },
            ["--config", config.file],
          );
        } catch (err) {
          // As main would report it; the daemon itself keeps going.
          if (!(err instanceof AgentError)) throw err;
          deps.log.error(err.message);
          if (err.hint) deps.log.info(`hint: ${err.hint}`);
          return err.exitCode;
        }
      };
      try {
        const result = await runDaemon({
          cron: config.schedule.cron,
          timeZone: config.schedule.timezone,
          clock: deps.clock,
          ticks: ticks(),
          runOnce,
          signal: deps.signal,
          log: deps.log,
          onNext: (next) =>
            writeDaemonStatus(stateDir, {
              ...status,
              nextRun: next.toISOString(),
            }),
        });
        return result.exitCode;
      } finally {
        removeDaemonStatus(stateDir);
        lock.release();
      }
    },
  };
}

export const daemonCommand = makeDaemonCommand(denoCronTicks);
